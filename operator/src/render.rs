//! `render -f FILE`: every child the operator would create for the TenantIdentities in FILE,
//! offline, as multi-document YAML (like `helm template`), for review in pull requests.
//!
//! A document render accepts is one the API server accepts, and the other way round: before the
//! operator's own validation ([`plan::validate`]: the CRD's schema and CEL rules, and what only
//! the operator judges) it does what the API server does first ([`admission`]: strict decoding,
//! null pruning, ObjectMeta rules, size limits). Every error is one line, with invisible and
//! bidi characters escaped ([`escape`]).

use std::fmt::Write as _;

use kube::ResourceExt;
use serde::Deserialize;
use tenant_identity_crd::TenantIdentity;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;

use crate::{
    children::{self, deploy_service_account, host_service_account},
    plan::{self, Backend, Settings},
};

#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// Issuer for TenantIdentities that do not set `spec.azure.issuer`.
    pub issuer: Option<String>,
    /// Tenant for TenantIdentities that do not set `spec.azure.tenantId`.
    pub tenant_id: Option<String>,
    /// Namespace for TenantIdentities without `metadata.namespace`.
    pub namespace: String,
}

pub use admission::escape;

/// One line saying which document and which field is wrong. Shown, it escapes control, bidi and
/// other invisible characters ([`escape`]), so what the input holds is what a reader sees.
#[derive(Debug)]
pub struct RenderError {
    pub document: usize,
    pub name: String,
    pub message: String,
}

impl std::fmt::Display for RenderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "document {}{}: {}",
            self.document,
            escape(&self.name),
            escape(&self.message)
        )
    }
}

impl std::error::Error for RenderError {}

pub fn render(input: &str, options: &RenderOptions) -> Result<String, RenderError> {
    let mut out = String::new();
    let mut count = 0;
    for (index, document) in serde_yaml::Deserializer::from_str(input).enumerate() {
        let number = index + 1;
        let fail = |name: String, message: String| RenderError {
            document: number,
            name,
            message,
        };
        // Through YAML's own value first, which refuses a key given twice (so does kubectl).
        let yaml = serde_yaml::Value::deserialize(document)
            .map_err(|e| fail(String::new(), format!("not valid YAML: {e}")))?;
        if yaml.is_null() {
            continue;
        }
        let mut value = serde_json::to_value(&yaml)
            .map_err(|e| fail(String::new(), format!("not a JSON document: {e}")))?;
        let kind = value
            .get("kind")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        let api_version = value
            .get("apiVersion")
            .and_then(|k| k.as_str())
            .unwrap_or_default();
        if kind != "TenantIdentity" || api_version != "identity.tenancy.dev/v1alpha1" {
            return Err(fail(
                String::new(),
                format!(
                    "\"{api_version}\" \"{kind}\" is not an identity.tenancy.dev/v1alpha1 TenantIdentity"
                ),
            ));
        }
        admission::admit(&mut value).map_err(|e| fail(String::new(), e))?;
        let mut ti: TenantIdentity = serde_path_to_error::deserialize(&value)
            .map_err(|e| fail(String::new(), format!("{}: {}", e.path(), e.inner())))?;
        if ti.metadata.namespace.is_none() {
            admission::check_namespace(&options.namespace, "--namespace")
                .map_err(|e| fail(String::new(), e))?;
            ti.metadata.namespace = Some(options.namespace.clone());
        }
        let label = format!(
            " ({}/{})",
            ti.namespace().unwrap_or_default(),
            ti.name_any()
        );
        let settings = Settings {
            default_tenant_id: options.tenant_id.clone(),
            require_namespace_grant: false,
        };
        let validated =
            plan::validate(&ti, &settings).map_err(|e| fail(label.clone(), e.to_string()))?;
        let issuer = validated
            .spec_issuer()
            .map(str::to_string)
            .or_else(|| options.issuer.clone())
            .ok_or_else(|| {
                fail(
                    label.clone(),
                    "spec.azure.issuer is empty: pass --issuer (the operator discovers it from the API server)".into(),
                )
            })?;
        let plan = validated.with_issuer(issuer);
        let owner = owner_reference(&ti);

        count += 1;
        let _ = writeln!(
            out,
            "# TenantIdentity {}/{}: mode {}, {} subject(s)",
            plan.namespace,
            plan.name,
            plan.mode.as_str(),
            plan.subjects.len()
        );
        for mut child in children::owned(&plan, &owner) {
            // Offline the object has no uid yet, and an owner reference without one is not a
            // reference: show none rather than an invalid one.
            if owner.uid.is_empty() {
                child.object.metadata.owner_references = None;
            }
            push_doc(&mut out, &child.object, None)?;
        }
        // Offline the Kustomization has no uid: shown without its owner reference.
        if let Some(sa) = deploy_service_account::build(&plan, None) {
            push_doc(
                &mut out,
                &sa,
                Some(
                    "Created on the host when missing (never applied; one of that name that exists is left as it is), owned by the Kustomization: its finalizer prunes only if this account exists",
                ),
            )?;
        }
        for sa in host_service_account::annotations(&plan) {
            let name = sa.metadata.name.clone().unwrap_or_default();
            let comment = match host_service_account::virtual_of(&plan, &name) {
                Some((ns, virtual_name)) => format!(
                    "Applied to the host ServiceAccount vcluster syncs from {ns}/{virtual_name} once it exists (server-side apply of these two annotations only; never created)"
                ),
                None => "Applied to the vcluster's existing host ServiceAccount (server-side apply of these two annotations only; never created)".to_string(),
            };
            push_doc(&mut out, &sa, Some(&comment))?;
        }
        if let Backend::AzureResourceManager(mi) = &plan.backend {
            let _ = writeln!(
                out,
                "---\n# Azure federated identity credentials on {} (managed through ARM):",
                mi.arm_id()
            );
            for s in &plan.subjects {
                let _ = writeln!(
                    out,
                    "#   {}: issuer={} subject={} audiences=[{}]",
                    s.credential_name, plan.issuer, s.subject, s.audience
                );
            }
        }
    }
    if count == 0 {
        return Err(RenderError {
            document: 0,
            name: String::new(),
            message: "no TenantIdentity in the input".into(),
        });
    }
    Ok(out)
}

/// The controller owner reference the operator sets; `uid` is empty for an object read offline.
fn owner_reference(ti: &TenantIdentity) -> OwnerReference {
    ti.controller_owner_ref(&())
        .unwrap_or_else(|| OwnerReference {
            api_version: TenantIdentity::api_version(&()).into_owned(),
            kind: TenantIdentity::kind(&()).into_owned(),
            name: ti.name_any(),
            uid: String::new(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        })
}

fn push_doc(
    out: &mut String,
    object: &impl serde::Serialize,
    comment: Option<&str>,
) -> Result<(), RenderError> {
    let yaml = serde_yaml::to_string(object).map_err(|e| RenderError {
        document: 0,
        name: String::new(),
        message: format!("cannot serialize a child: {e}"),
    })?;
    out.push_str("---\n");
    if let Some(c) = comment {
        let _ = writeln!(out, "# {c}");
    }
    out.push_str(&yaml);
    Ok(())
}

mod admission;

#[cfg(test)]
mod tests;
