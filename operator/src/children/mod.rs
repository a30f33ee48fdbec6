//! Desired children, one module per kind, driven by one table ([`ChildKind`]): what each kind
//! is built from ([`build`]), how the controller hears about it ([`watch`]) and what its upstream
//! status says ([`observe`]). Every function here is pure: a [`Plan`] and the owner reference in,
//! objects out. The controller applies them with server-side apply.
//!
//! A new kind is a new [`ChildKind`] variant: the `match`es below stop compiling until it has a
//! builder, a watch and an observation.

pub mod deploy_service_account;
pub mod federated_credential;
pub mod git_repository;
pub mod git_service_account;
pub mod host_service_account;
pub mod kustomization;
pub mod sync_rules;
pub mod vcluster_release;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{
    ResourceExt,
    api::{ApiResource, DynamicObject, ObjectMeta},
};
pub use tenant_identity_crd::kinds::ChildKind;
use tenant_identity_crd::{
    TenantIdentity,
    kinds::{FIELD_MANAGER, MANAGED_BY_LABEL, TENANT_LABEL},
};

use crate::{
    names,
    plan::Plan,
    status::{CredentialsObserved, GitObserved},
};

/// A desired object, the kind it is and the API it lives in.
#[derive(Clone, Debug)]
pub struct Child {
    pub kind: ChildKind,
    pub resource: ApiResource,
    pub object: DynamicObject,
}

impl Child {
    pub fn name(&self) -> String {
        self.object.name_any()
    }
}

/// How the controller learns that a child changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// A watch of the kind, selected on our managed-by label, mapped through the owner reference.
    Owned,
    /// Through the ServiceAccount watch the controller keeps anyway for the vcluster's host
    /// ServiceAccounts (which are not ours, so they cannot be selected by our label).
    ServiceAccounts,
}

/// The children of `kind` the plan asks for.
pub fn build(kind: ChildKind, plan: &Plan, owner: &OwnerReference) -> Vec<Child> {
    match kind {
        ChildKind::SyncRules => vec![sync_rules::build(plan, owner)],
        ChildKind::GitServiceAccount => git_service_account::build(plan, owner)
            .into_iter()
            .collect(),
        ChildKind::FederatedCredential => federated_credential::build(plan, owner),
        ChildKind::GitRepository => git_repository::build(plan, owner).into_iter().collect(),
        ChildKind::Kustomization => kustomization::build(plan, owner).into_iter().collect(),
    }
}

pub fn watch(kind: ChildKind) -> Watch {
    match kind {
        ChildKind::GitServiceAccount => Watch::ServiceAccounts,
        ChildKind::SyncRules
        | ChildKind::FederatedCredential
        | ChildKind::GitRepository
        | ChildKind::Kustomization => Watch::Owned,
    }
}

/// What one kind's applied objects say about a part of the status.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation {
    /// `FederatedCredentialsReady`, mirrored from ASO.
    Credentials(CredentialsObserved),
    /// `GitSourceReady`, mirrored from Flux.
    GitSource(GitObserved),
}

/// Read the upstream status (ASO, Flux) other controllers write on our applied children.
/// Kinds nobody reports on say nothing.
pub fn observe(kind: ChildKind, plan: &Plan, applied: &[DynamicObject]) -> Option<Observation> {
    let of_kind: Vec<&DynamicObject> = applied
        .iter()
        .filter(|o| o.types.as_ref().is_some_and(|t| t.kind == kind.kind_name()))
        .collect();
    match kind {
        ChildKind::FederatedCredential => {
            federated_credential::observe(plan, &of_kind).map(Observation::Credentials)
        }
        ChildKind::GitRepository => {
            git_repository::observe(plan, &of_kind).map(Observation::GitSource)
        }
        ChildKind::SyncRules | ChildKind::GitServiceAccount | ChildKind::Kustomization => None,
    }
}

/// All owned children the plan asks for, in apply order.
pub fn owned(plan: &Plan, owner: &OwnerReference) -> Vec<Child> {
    ChildKind::all()
        .flat_map(|kind| build(kind, plan, owner))
        .collect()
}

/// Metadata shared by every owned child: name, namespace, tenant label, controller owner ref.
pub(crate) fn owned_meta(plan: &Plan, owner: &OwnerReference, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        labels: Some(tenant_labels(&plan.name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Whether an event of the ServiceAccount `name` in a tenant's namespace concerns that tenant:
/// a host ServiceAccount its pods run as, its `<name>-git` child, or the deploy account its
/// Kustomization names. Read leniently from the spec (the watch maps events before any
/// validation).
pub fn service_account_concerns(ti: &TenantIdentity, name: &str) -> bool {
    host_service_account::wanted(ti).iter().any(|n| n == name)
        || names::git_service_account(&ti.name_any()) == name
        || deploy_service_account::wanted(ti).as_deref() == Some(name)
}

pub fn tenant_labels(tenant: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (TENANT_LABEL.to_string(), tenant.to_string()),
        (MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string()),
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

/// An owned child of `kind` with `metadata` and the rest of its body in `data`.
pub(crate) fn child(kind: ChildKind, metadata: ObjectMeta, data: serde_json::Value) -> Child {
    let resource = kind.api_resource();
    Child {
        kind,
        object: dynamic(&resource, metadata, data),
        resource,
    }
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
