//! Pure step: validate a TenantIdentity once and resolve it into the model every later step reads.
//!
//! [`validate`] is the only validation: the CRD's own schema and CEL rules (defence in depth: the
//! object may come from an older CRD, `render` reads files nobody validated) plus the checks only
//! the operator can make (defaults from its flags, host names colliding after hashing). What it
//! returns, [`Validated`], lacks only the issuer, which may need the API server; [`Plan`] is
//! [`Validated`] plus the issuer. Builders, backends and status read the plan, never the spec.

use std::{fmt, sync::OnceLock};

use kube::ResourceExt;
use tenant_identity_crd::{
    DEFAULT_AUDIENCE, DeletionPolicy, DeploySpec, GitAuth, GitRef, Mode, TenantIdentity,
    VirtualServiceAccount, reasons,
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
    /// Deterministic from (namespace, name, subject); never depends on the issuer.
    pub credential_name: String,
    /// The credential's single audience: `spec.azure.audience` for workloads; always Entra's
    /// default for Flux, whose Azure provider asks the API server for tokens with that audience
    /// and no other: fluxcd/pkg `auth/azure/provider.go`, `Provider.GetAudiences`, returns
    /// `api://AzureADTokenExchange` whatever the ServiceAccount says, and `auth/service_account.go`
    /// (`getServiceAccountInfo`) takes it unless the caller passes audiences, for which the
    /// GitRepository API has no field (`../shared/upstream/flux`).
    pub audience: String,
    /// The host ServiceAccount behind the subject.
    pub service_account: String,
}

/// Where the federated credentials are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// ASO `FederatedIdentityCredential` objects owned by the tenant.
    AzureServiceOperator(AsoOwner),
    /// The operator writes the credentials through Azure Resource Manager itself.
    AzureResourceManager(ManagedIdentity),
}

/// Each backend asks only for its own variant, so adding a variant touches no other backend.
impl Backend {
    /// The identity the operator writes to through Azure Resource Manager, for an ARM plan.
    pub fn resource_manager(&self) -> Option<&ManagedIdentity> {
        match self {
            Backend::AzureResourceManager(identity) => Some(identity),
            _ => None,
        }
    }

    /// The owner of the ASO credential objects, for an Azure Service Operator plan.
    pub fn service_operator(&self) -> Option<&AsoOwner> {
        match self {
            Backend::AzureServiceOperator(owner) => Some(owner),
            _ => None,
        }
    }
}

/// The `owner` of the ASO credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AsoOwner {
    /// A UserAssignedIdentity object in the tenant's namespace.
    Name(String),
    /// The ARM id of an identity ASO does not manage.
    ArmId(String),
}

/// A user-assigned managed identity by its ARM coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ManagedIdentity {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl ManagedIdentity {
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        ManagedIdentity {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            name: name.into(),
        }
    }

    /// `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{n}`
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }
}

impl ManagedIdentity {
    /// Parse an ARM id as [`ManagedIdentity::arm_id`] writes it (case-insensitive keywords).
    pub fn from_arm_id(id: &str) -> Option<Self> {
        let parts: Vec<&str> = id.trim_start_matches('/').split('/').collect();
        match parts.as_slice() {
            [subs, s, groups, g, providers, ns, kind, n]
                if subs.eq_ignore_ascii_case("subscriptions")
                    && groups.eq_ignore_ascii_case("resourceGroups")
                    && providers.eq_ignore_ascii_case("providers")
                    && ns.eq_ignore_ascii_case("Microsoft.ManagedIdentity")
                    && kind.eq_ignore_ascii_case("userAssignedIdentities")
                    && ![s, g, n].iter().any(|v| v.is_empty()) =>
            {
                Some(ManagedIdentity::new(*s, *g, *n))
            }
            _ => None,
        }
    }

    /// Two ARM ids name the same identity when they agree ignoring case.
    pub fn same_as(&self, other: &ManagedIdentity) -> bool {
        self.arm_id().eq_ignore_ascii_case(&other.arm_id())
    }
}

impl From<&tenant_identity_crd::ManagedIdentityRef> for ManagedIdentity {
    fn from(mi: &tenant_identity_crd::ManagedIdentityRef) -> Self {
        ManagedIdentity::new(&mi.subscription_id, &mi.resource_group, &mi.name)
    }
}

/// The Flux source (and optional deployment into the vcluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitSource {
    pub url: String,
    pub reference: Option<GitRef>,
    pub interval: String,
    pub auth: GitAuth,
    pub deploy: Option<DeploySpec>,
}

impl GitSource {
    /// Flux authenticates as the tenant's own `<name>-git` ServiceAccount.
    pub fn object_level(&self) -> bool {
        self.auth == GitAuth::ObjectLevel
    }
}

/// Everything resolved from one accepted TenantIdentity; the input of every child builder, every
/// credential backend and the status summary.
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
    /// `spec.azure.audience`: the workload subjects' audience (each subject carries its own).
    pub audience: String,
    pub backend: Backend,
    pub deletion_policy: DeletionPolicy,
    /// Shared mode: the host SA whose annotations the operator owns.
    pub workload_service_account: Option<String>,
    /// PerServiceAccount mode: the listed virtual SAs, sorted.
    pub virtual_service_accounts: Vec<VirtualServiceAccount>,
    pub git: Option<GitSource>,
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

    /// Flux authenticates as `<name>-git`.
    pub fn git_object_level(&self) -> bool {
        self.git.as_ref().is_some_and(GitSource::object_level)
    }
}

/// A TenantIdentity that passed every check. All it lacks to be a [`Plan`] is the issuer, which
/// the pipeline resolves (spec, flag or API server discovery) only for accepted objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Validated {
    /// Complete but for `issuer`, which stays private until [`Validated::with_issuer`].
    plan: Plan,
    spec_issuer: Option<String>,
}

impl Validated {
    pub fn client_id(&self) -> &str {
        &self.plan.client_id
    }
    pub fn namespace(&self) -> &str {
        &self.plan.namespace
    }
    /// `spec.azure.issuer`, when the spec sets it.
    pub fn spec_issuer(&self) -> Option<&str> {
        self.spec_issuer.as_deref()
    }
    pub fn subjects(&self) -> &[Subject] {
        &self.plan.subjects
    }
    pub fn with_issuer(self, issuer: impl Into<String>) -> Plan {
        Plan {
            issuer: issuer.into(),
            ..self.plan
        }
    }
}

/// What removing (or revoking) a TenantIdentity must clean up outside Kubernetes. Built from
/// the raw object without validation: an object must stay deletable whatever its spec says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Teardown {
    pub namespace: String,
    pub name: String,
    /// The backend the spec names, if it names one.
    pub backend: Option<Backend>,
    /// Every identity the status records as written to (the spec's own is added by the
    /// backend): places to look; what is ours there is proven by each credential's name and
    /// subject.
    pub written_identities: Vec<ManagedIdentity>,
    /// Status reports credentials or identities written: the operator has touched Azure.
    pub ever_written: bool,
}

impl Teardown {
    pub fn of(ti: &TenantIdentity) -> Self {
        let status = ti.status.as_ref();
        let written_identities: Vec<ManagedIdentity> = status
            .map(|s| {
                s.written_identities
                    .iter()
                    .filter_map(|id| ManagedIdentity::from_arm_id(id))
                    .collect()
            })
            .unwrap_or_default();
        let ever_written =
            !written_identities.is_empty() || status.is_some_and(|s| !s.subjects.is_empty());
        Self {
            namespace: ti.namespace().unwrap_or_default(),
            name: ti.name_any(),
            backend: declared_backend(ti),
            written_identities,
            ever_written,
        }
    }

    /// Whether a credential (its name and its own subject) is one this TenantIdentity wrote.
    pub fn owns(&self, credential: &str, subject: &str) -> bool {
        names::is_own_credential(&self.namespace, &self.name, credential, subject)
    }
}

/// The backend a spec names, leniently (for teardown and the finalizer decision).
pub fn declared_backend(ti: &TenantIdentity) -> Option<Backend> {
    let identity = &ti.spec.azure.identity;
    if let Some(mi) = &identity.managed_identity {
        return Some(Backend::AzureResourceManager(mi.into()));
    }
    let aso = identity.azure_service_operator.as_ref()?;
    aso.name
        .clone()
        .map(AsoOwner::Name)
        .or_else(|| aso.arm_id.clone().map(AsoOwner::ArmId))
        .map(Backend::AzureServiceOperator)
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

/// The one validation: the CRD's schema and CEL rules, then what only the operator can judge.
pub fn validate(ti: &TenantIdentity, settings: &Settings) -> Result<Validated, SpecError> {
    let schema = crd_schema()
        .as_ref()
        .map_err(|e| SpecError::invalid(format!("internal: CRD schema does not compile: {e}")))?;
    check_schema(schema, ti)?;
    check_cel(schema, ti)?;

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
    let backend = backend(ti)?;
    let git = spec.git.as_ref().map(|g| GitSource {
        url: g.url.clone(),
        reference: g.reference.clone(),
        interval: g.interval.clone(),
        auth: g.auth,
        deploy: g.deploy.clone(),
    });

    let audience = spec.azure.audience.as_str();
    let mut subjects = Vec::new();
    let mut workload_service_account = None;
    let mut virtual_service_accounts = Vec::new();
    match spec.virtual_cluster.mode {
        Mode::Shared => {
            let sa = self::workload_service_account(ti).unwrap_or_default();
            subjects.push(subject(
                &namespace,
                &name,
                SubjectKind::Workload,
                &sa,
                audience,
            ));
            workload_service_account = Some(sa);
        }
        Mode::PerServiceAccount => {
            virtual_service_accounts = spec.virtual_cluster.service_accounts.clone();
            virtual_service_accounts.sort();
            for vsa in &virtual_service_accounts {
                let host = names::synced_service_account_name(&vsa.name, &vsa.namespace, &vcluster);
                subjects.push(subject(
                    &namespace,
                    &name,
                    SubjectKind::Workload,
                    &host,
                    audience,
                ));
            }
        }
    }
    if git.as_ref().is_some_and(GitSource::object_level) {
        let sa = names::git_service_account(&name);
        subjects.push(subject(
            &namespace,
            &name,
            SubjectKind::FluxSource,
            &sa,
            DEFAULT_AUDIENCE,
        ));
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

    Ok(Validated {
        plan: Plan {
            name,
            namespace,
            vcluster,
            mode: spec.virtual_cluster.mode,
            client_id: spec.azure.client_id.clone(),
            tenant_id,
            issuer: String::new(),
            audience: spec.azure.audience.clone(),
            backend,
            deletion_policy: spec.deletion_policy,
            workload_service_account,
            virtual_service_accounts,
            git,
            subjects,
        },
        spec_issuer: spec.azure.issuer.clone().filter(|i| !i.is_empty()),
    })
}

/// Validate and attach an already-resolved issuer (for `render`, tests and benchmarks, which
/// have no API server to discover it from).
pub fn resolve(ti: &TenantIdentity, settings: &Settings, issuer: &str) -> Result<Plan, SpecError> {
    Ok(validate(ti, settings)?.with_issuer(issuer))
}

fn backend(ti: &TenantIdentity) -> Result<Backend, SpecError> {
    let identity = &ti.spec.azure.identity;
    // The CRD's CEL rules make these exactly-one choices; the schema check above enforced them,
    // so a miss here is an internal inconsistency worth a clear message, not a panic.
    match (&identity.managed_identity, &identity.azure_service_operator) {
        (Some(mi), None) => Ok(Backend::AzureResourceManager(mi.into())),
        (None, Some(aso)) => match (&aso.name, &aso.arm_id) {
            (Some(name), None) => Ok(Backend::AzureServiceOperator(AsoOwner::Name(name.clone()))),
            (None, Some(id)) => Ok(Backend::AzureServiceOperator(AsoOwner::ArmId(id.clone()))),
            _ => Err(SpecError::invalid(
                "spec.azure.identity.azureServiceOperator: exactly one of name or armId must be set",
            )),
        },
        _ => Err(SpecError::invalid(
            "spec.azure.identity: exactly one of managedIdentity or azureServiceOperator must be set",
        )),
    }
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

/// Shared mode: the host ServiceAccount every vcluster pod runs as (`workloadServiceAccount`,
/// else vcluster's default `vc-workload-<vcluster>`). Needs no validation, so the controller can
/// also ask it of other TenantIdentities in its cache.
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

fn subject(
    namespace: &str,
    name: &str,
    kind: SubjectKind,
    service_account: &str,
    audience: &str,
) -> Subject {
    let subject = names::service_account_subject(namespace, service_account);
    Subject {
        kind,
        audience: audience.to_string(),
        credential_name: names::credential_name(namespace, name, &subject),
        subject,
        service_account: service_account.to_string(),
    }
}

#[cfg(test)]
mod tests;
