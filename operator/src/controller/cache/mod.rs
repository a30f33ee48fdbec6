//! What the watches see, kept so that a reconcile reads nothing from the API server and writes
//! only what changed (docs/architecture.md, "Caches").
//!
//! - [`TenantIndex`]: the TenantIdentity cache by namespace and by clientId.
//! - [`ChildCache`]: the owned children (label-selected watches), with our last apply of each.
//! - [`ServiceAccountCache`]: every ServiceAccount's metadata, slimmed (host ServiceAccounts
//!   are the vcluster's, so the watch cannot be label-selected).
//! - reflector stores for the vcluster HelmReleases, the namespaces (with
//!   `--require-namespace-grant`) and ASO's UserAssignedIdentities, each object slimmed by
//!   [`slim_release`], [`slim_namespace`] or [`slim_identity`] before it is stored.
//!
//! Every lookup says when its watch has not listed yet ([`Lookup::Unknown`]); the reconcile
//! then asks the API server, as it would without a cache.

mod children;
mod service_accounts;
mod tenants;

pub use children::{Cached, ChildCache, digest};
pub use service_accounts::{
    DeployAccount, ServiceAccountCache, SlimServiceAccount, slim as service_account_slim,
};
pub use tenants::TenantIndex;

use std::sync::Arc;

use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Resource, ResourceExt,
    api::{ApiResource, DynamicObject},
    core::PartialObjectMeta,
    runtime::reflector::{ObjectRef, Store},
};

use crate::names;

/// A cached object, or why there is none.
#[derive(Clone, Debug)]
pub enum Lookup<K> {
    /// The watch has not listed yet (or the kind is not watched): ask the API server.
    Unknown,
    Absent,
    Found(Arc<K>),
}

/// The caches of one controller run.
#[derive(Default)]
pub struct Caches {
    /// The TenantIdentity cache by namespace and by clientId.
    pub tenants: Arc<TenantIndex>,
    pub children: Arc<ChildCache>,
    pub service_accounts: Arc<ServiceAccountCache>,
    /// The vcluster HelmReleases (None: the kind is not served).
    pub releases: Option<(ApiResource, Store<DynamicObject>)>,
    /// Namespaces (with `--require-namespace-grant` only).
    pub namespaces: Option<Store<PartialObjectMeta<Namespace>>>,
    /// ASO UserAssignedIdentities (None: the kind is not served).
    pub identities: Option<(ApiResource, Store<DynamicObject>)>,
}

fn find<K>(store: &Store<K>, reference: &ObjectRef<K>) -> Lookup<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Clone + Eq + std::hash::Hash,
{
    if store.wait_until_ready().now_or_never().is_none() {
        return Lookup::Unknown;
    }
    match store.get(reference) {
        Some(obj) => Lookup::Found(obj),
        None => Lookup::Absent,
    }
}

impl Caches {
    pub fn release(&self, ns: &str, name: &str) -> Lookup<DynamicObject> {
        match &self.releases {
            Some((resource, store)) => find(
                store,
                &ObjectRef::new_with(name, resource.clone()).within(ns),
            ),
            None => Lookup::Unknown,
        }
    }

    pub fn namespace(&self, name: &str) -> Lookup<PartialObjectMeta<Namespace>> {
        match &self.namespaces {
            Some(store) => find(store, &ObjectRef::new(name)),
            None => Lookup::Unknown,
        }
    }

    pub fn identity(&self, ns: &str, name: &str) -> Lookup<DynamicObject> {
        match &self.identities {
            Some((resource, store)) => find(
                store,
                &ObjectRef::new_with(name, resource.clone()).within(ns),
            ),
            None => Lookup::Unknown,
        }
    }
}

/// A HelmRelease as the vcluster check reads it: no managedFields, only the latest history entry.
pub fn slim_release(hr: &mut DynamicObject) {
    hr.managed_fields_mut().clear();
    if let Some(history) = hr
        .data
        .pointer_mut("/status/history")
        .and_then(|h| h.as_array_mut())
    {
        history.truncate(1);
    }
}

/// A namespace as the grant check reads it: its name and the grant annotation.
pub fn slim_namespace(ns: &mut PartialObjectMeta<Namespace>) {
    ns.managed_fields_mut().clear();
    ns.labels_mut().clear();
    ns.annotations_mut()
        .retain(|k, _| k == names::GRANT_ANNOTATION);
}

/// A UserAssignedIdentity as the ASO binding reads it: `status.clientId`.
pub fn slim_identity(uai: &mut DynamicObject) {
    uai.managed_fields_mut().clear();
    uai.annotations_mut().clear();
    let client_id = uai.data.pointer("/status/clientId").cloned();
    uai.data = match client_id {
        Some(id) => serde_json::json!({"status": {"clientId": id}}),
        None => serde_json::json!({}),
    };
}
