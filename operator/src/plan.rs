//! Pure step: validate a TenantIdentity and resolve everything the children are built from.
//!
//! Defaults (vcluster name, workload ServiceAccount, tenant id, issuer) are resolved here once,
//! so every child module and the status agree on the same values.

use std::{fmt, sync::OnceLock};

use kube::ResourceExt;
use tenant_identity_crd::{
    GitAuth, MAX_SUBJECTS, Mode, TenantIdentity, VirtualServiceAccount, reasons,
};

use crate::names;

/// Operator-wide settings that fill in what a TenantIdentity leaves out.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub default_tenant_id: Option<String>,
    pub require_namespace_grant: bool,
}

/// Who a federated credential is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SubjectKind {
    /// A host ServiceAccount vcluster workloads run as.
    Workload,
    /// The Flux source ServiceAccount `<name>-git`.
    FluxSource,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    pub kind: SubjectKind,
    /// `system:serviceaccount:<ns>:<sa>`; case-sensitive.
    pub subject: String,
    pub credential_name: String,
    /// The host ServiceAccount behind the subject.
    pub service_account: String,
}

/// Everything resolved from one TenantIdentity; input of every child builder.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub vcluster: String,
    pub mode: Mode,
    pub client_id: String,
    pub tenant_id: String,
    /// Byte for byte as given (AKS issuers end in `/`).
    pub issuer: String,
    pub audience: String,
    /// Shared mode: the host SA whose annotations the operator owns.
    pub workload_service_account: Option<String>,
    /// PerServiceAccount mode: the listed virtual SAs, sorted.
    pub virtual_service_accounts: Vec<VirtualServiceAccount>,
    pub subjects: Vec<Subject>,
}

impl Plan {
    /// Host ServiceAccounts the tenant's workloads run as (for status).
    pub fn host_service_accounts(&self) -> Vec<String> {
        self.subjects
            .iter()
            .filter(|s| s.kind == SubjectKind::Workload)
            .map(|s| s.service_account.clone())
            .collect()
    }
}

/// A spec the operator refuses; `reason` is the condition reason, the message says what to fix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub reason: &'static str,
    pub message: String,
}

impl SpecError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            reason: reasons::INVALID_SPEC,
            message: message.into(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for SpecError {}

/// Re-check the rules the CRD schema enforces (defence in depth: the object may come from an
/// older CRD, `render` reads files nobody validated) and the ones only the operator can judge.
pub fn validate(ti: &TenantIdentity) -> Result<(), SpecError> {
    let schema = crd_schema()
        .as_ref()
        .map_err(|e| SpecError::invalid(format!("internal: CRD schema does not compile: {e}")))?;
    check_schema(schema, ti)?;
    check_cel(schema, ti)?;
    let spec = &ti.spec;
    let guid = |field: &str, value: &str| -> Result<(), SpecError> {
        if is_guid(value) {
            Ok(())
        } else {
            Err(SpecError::invalid(format!(
                "{field}: {value:?} is not a GUID"
            )))
        }
    };
    guid("spec.azure.clientId", &spec.azure.client_id)?;
    if let Some(t) = &spec.azure.tenant_id {
        guid("spec.azure.tenantId", t)?;
    }
    if let Some(mi) = &spec.azure.identity.managed_identity {
        guid(
            "spec.azure.identity.managedIdentity.subscriptionId",
            &mi.subscription_id,
        )?;
    }
    if let Some(issuer) = &spec.azure.issuer
        && !issuer.starts_with("https://")
    {
        return Err(SpecError::invalid(format!(
            "spec.azure.issuer: {issuer:?} must be an https URL"
        )));
    }
    if spec.azure.identity.managed_identity.is_some()
        == spec.azure.identity.azure_service_operator.is_some()
    {
        return Err(SpecError::invalid(
            "spec.azure.identity: exactly one of managedIdentity or azureServiceOperator must be set",
        ));
    }
    if let Some(aso) = &spec.azure.identity.azure_service_operator
        && aso.name.is_some() == aso.arm_id.is_some()
    {
        return Err(SpecError::invalid(
            "spec.azure.identity.azureServiceOperator: exactly one of name or armId must be set",
        ));
    }
    let vc = &spec.virtual_cluster;
    match vc.mode {
        Mode::Shared if !vc.service_accounts.is_empty() => {
            return Err(SpecError::invalid(
                "spec.virtualCluster.serviceAccounts: only used in PerServiceAccount mode",
            ));
        }
        Mode::PerServiceAccount if vc.service_accounts.is_empty() => {
            return Err(SpecError::invalid(
                "spec.virtualCluster.serviceAccounts: PerServiceAccount mode needs at least one entry",
            ));
        }
        _ => {}
    }
    let flux = usize::from(git_object_level(ti));
    let workloads = match vc.mode {
        Mode::Shared => 1,
        Mode::PerServiceAccount => vc.service_accounts.len(),
    };
    if workloads + flux > MAX_SUBJECTS {
        return Err(SpecError::invalid(format!(
            "spec.virtualCluster.serviceAccounts: {} subjects requested, an identity holds at most {MAX_SUBJECTS} federated credentials",
            workloads + flux
        )));
    }
    Ok(())
}

/// The CRD's own schema, compiled once: a JSON Schema validator for `spec` and the CEL rules.
struct CrdSchema {
    spec: jsonschema::Validator,
    cel: kube_cel::CompiledSchema,
}

fn crd_schema() -> &'static Result<CrdSchema, String> {
    static SCHEMA: OnceLock<Result<CrdSchema, String>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = <TenantIdentity as kube::CustomResourceExt>::crd();
        let schema = crd
            .spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| "the CRD has no openAPIV3Schema".to_string())
            .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string()))?;
        // Only spec is user input here; metadata is validated by the API server.
        let spec = schema
            .pointer("/properties/spec")
            .cloned()
            .ok_or_else(|| "the CRD schema has no spec".to_string())?;
        let cel = kube_cel::compile_schema(&schema);
        Ok(CrdSchema {
            spec: jsonschema::draft4::new(&spec).map_err(|e| e.to_string())?,
            cel,
        })
    })
}

/// OpenAPI structure, patterns, lengths and enums.
fn check_schema(schema: &CrdSchema, ti: &TenantIdentity) -> Result<(), SpecError> {
    let value = serde_json::to_value(&ti.spec)
        .map_err(|e| SpecError::invalid(format!("spec does not serialize: {e}")))?;
    if let Some(error) = schema.spec.iter_errors(&value).next() {
        let mut path = String::from("spec");
        for segment in error.instance_path().as_str().split('/').skip(1) {
            if segment.chars().all(|c| c.is_ascii_digit()) {
                path.push_str(&format!("[{segment}]"));
            } else {
                path.push('.');
                path.push_str(segment);
            }
        }
        return Err(SpecError::invalid(format!("{path}: {error}")));
    }
    Ok(())
}

/// The CRD's CEL `x-kubernetes-validations`, evaluated as the API server does.
fn check_cel(schema: &CrdSchema, ti: &TenantIdentity) -> Result<(), SpecError> {
    let value = serde_json::to_value(ti)
        .map_err(|e| SpecError::invalid(format!("object does not serialize: {e}")))?;
    if let Err(errors) = kube_cel::Validator::new().validate_compiled(&schema.cel, &value, None) {
        let first = errors
            .into_vec()
            .into_iter()
            .next()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "CEL validation failed".to_string());
        return Err(SpecError::invalid(first));
    }
    Ok(())
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// True when Flux authenticates as the tenant's own `<name>-git` ServiceAccount.
pub fn git_object_level(ti: &TenantIdentity) -> bool {
    ti.spec
        .git
        .as_ref()
        .is_some_and(|g| g.auth == GitAuth::ObjectLevel)
}

/// Resolve defaults and compute subjects. `issuer` is the already-resolved issuer (spec, flag or
/// discovery); see `crate::issuer`.
pub fn resolve(ti: &TenantIdentity, settings: &Settings, issuer: &str) -> Result<Plan, SpecError> {
    validate(ti)?;
    let name = ti.name_any();
    let namespace = ti
        .namespace()
        .ok_or_else(|| SpecError::invalid("metadata.namespace: TenantIdentity is namespaced"))?;
    let spec = &ti.spec;
    let vcluster = spec
        .virtual_cluster
        .name
        .clone()
        .unwrap_or_else(|| name.clone());
    let tenant_id = spec
        .azure
        .tenant_id
        .clone()
        .or_else(|| settings.default_tenant_id.clone())
        .ok_or_else(|| SpecError {
            reason: reasons::TENANT_ID_MISSING,
            message: "spec.azure.tenantId is empty and the operator has no --azure-tenant-id: set one of them".into(),
        })?;

    let mut subjects = Vec::new();
    let mut workload_service_account = None;
    let mut virtual_service_accounts = Vec::new();
    match spec.virtual_cluster.mode {
        Mode::Shared => {
            let sa = self::workload_service_account(ti).unwrap_or_default();
            subjects.push(subject(&namespace, &name, SubjectKind::Workload, &sa));
            workload_service_account = Some(sa);
        }
        Mode::PerServiceAccount => {
            virtual_service_accounts = spec.virtual_cluster.service_accounts.clone();
            virtual_service_accounts.sort();
            for vsa in &virtual_service_accounts {
                let host = names::synced_service_account_name(&vsa.name, &vsa.namespace, &vcluster);
                subjects.push(subject(&namespace, &name, SubjectKind::Workload, &host));
            }
        }
    }
    if git_object_level(ti) {
        let sa = names::git_service_account(&name);
        subjects.push(subject(&namespace, &name, SubjectKind::FluxSource, &sa));
    }
    // Two virtual SAs can only collide on the host after hashing; refuse rather than merge.
    let mut seen = std::collections::BTreeSet::new();
    for s in &subjects {
        if !seen.insert(s.subject.as_str()) {
            return Err(SpecError::invalid(format!(
                "spec.virtualCluster.serviceAccounts: two entries map to the same host subject {}",
                s.subject
            )));
        }
    }

    Ok(Plan {
        name,
        namespace,
        vcluster,
        mode: spec.virtual_cluster.mode,
        client_id: spec.azure.client_id.clone(),
        tenant_id,
        issuer: issuer.to_string(),
        audience: spec.azure.audience.clone(),
        workload_service_account,
        virtual_service_accounts,
        subjects,
    })
}

/// Shared mode: the host ServiceAccount every vcluster pod runs as (`workloadServiceAccount`,
/// else vcluster's default `vc-workload-<vcluster>`). Needs neither issuer nor tenant, so the
/// controller can also ask it of other TenantIdentities.
pub fn workload_service_account(ti: &TenantIdentity) -> Option<String> {
    let vc = &ti.spec.virtual_cluster;
    (vc.mode == Mode::Shared).then(|| {
        vc.workload_service_account
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                names::default_workload_service_account(
                    vc.name.as_deref().unwrap_or(&ti.name_any()),
                )
            })
    })
}

fn subject(namespace: &str, name: &str, kind: SubjectKind, service_account: &str) -> Subject {
    let subject = names::service_account_subject(namespace, service_account);
    Subject {
        kind,
        credential_name: names::credential_name(namespace, name, &subject),
        subject,
        service_account: service_account.to_string(),
    }
}

#[cfg(test)]
mod tests;
