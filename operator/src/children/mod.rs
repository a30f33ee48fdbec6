//! Desired children, one module per kind. Every builder here is pure: TenantIdentity + Plan in,
//! objects out. The controller applies them with server-side apply.

pub mod federated_credential;
pub mod git_repository;
pub mod git_service_account;
pub mod host_service_account;
pub mod kustomization;
pub mod sync_rules;

use std::collections::BTreeMap;

use kube::{
    Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ObjectMeta},
};
use tenant_identity_crd::TenantIdentity;

use crate::{names, plan::Plan};

/// A desired object and the API it lives in.
#[derive(Clone, Debug)]
pub struct Child {
    pub resource: ApiResource,
    pub object: DynamicObject,
}

impl Child {
    pub fn name(&self) -> String {
        self.object.name_any()
    }
}

/// Every kind the operator owns (creates with a controller owner reference). The order is the
/// apply order: things referenced come before things referencing them.
pub fn owned_kinds() -> Vec<ApiResource> {
    vec![
        sync_rules::resource(),
        git_service_account::resource(),
        federated_credential::resource(),
        git_repository::resource(),
        kustomization::resource(),
    ]
}

/// All owned children the TenantIdentity asks for, in apply order.
pub fn owned(ti: &TenantIdentity, plan: &Plan) -> Vec<Child> {
    let mut out = vec![sync_rules::build(ti, plan)];
    out.extend(git_service_account::build(ti, plan));
    out.extend(federated_credential::build(ti, plan));
    out.extend(git_repository::build(ti, plan));
    out.extend(kustomization::build(ti, plan));
    out
}

/// Metadata shared by every owned child: name, namespace, tenant label, controller owner ref.
pub(crate) fn owned_meta(ti: &TenantIdentity, plan: &Plan, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(tenant_labels(&plan.name)),
        owner_references: ti.controller_owner_ref(&()).map(|r| vec![r]),
        ..ObjectMeta::default()
    }
}

pub fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (names::TENANT_LABEL.to_string(), tenant.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            names::FIELD_MANAGER.to_string(),
        ),
    ])
}

/// The client-id / tenant-id annotation pair the AKS webhook and Flux read.
pub(crate) fn identity_annotations(plan: &Plan) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            names::CLIENT_ID_ANNOTATION.to_string(),
            plan.client_id.clone(),
        ),
        (
            names::TENANT_ID_ANNOTATION.to_string(),
            plan.tenant_id.clone(),
        ),
    ])
}

pub(crate) fn dynamic(
    resource: &ApiResource,
    metadata: ObjectMeta,
    data: serde_json::Value,
) -> DynamicObject {
    let mut obj =
        DynamicObject::new(metadata.name.as_deref().unwrap_or_default(), resource).data(data);
    obj.metadata = metadata;
    obj
}

// Reading the status other controllers (ASO, Flux) write on our children.

pub(crate) fn upstream_condition(obj: &DynamicObject, type_: &str) -> Option<serde_json::Value> {
    obj.data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))
                .cloned()
        })
}

pub(crate) fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or_default()
}

/// The condition is about the current spec (not an older generation).
pub(crate) fn is_current(obj: &DynamicObject, condition: &serde_json::Value) -> bool {
    let generation = obj.metadata.generation.unwrap_or(0);
    condition
        .get("observedGeneration")
        .and_then(|g| g.as_i64())
        .or_else(|| {
            obj.data
                .pointer("/status/observedGeneration")
                .and_then(|g| g.as_i64())
        })
        .is_none_or(|g| g >= generation)
}

#[cfg(test)]
mod tests;
