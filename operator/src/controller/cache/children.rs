//! The owned children as the label-selected watches see them, slimmed to what the reconcile
//! reads: identity (uid, resourceVersion, generation), whose they are (tenant label, controller
//! uid), the upstream `status` of the kinds whose status is mirrored, and what our last
//! server-side apply left (its resourceVersion and a digest of what was applied).
//!
//! With that, a reconcile applies a child only when it must: when the desired object differs
//! from what we last applied, or the object changed since (another writer, a status update by
//! ASO or Flux, a re-creation). A resync of a converged tenant then writes nothing. Entries go
//! with their objects (a delete event, or absence from a re-list), so nothing outlives them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::{
    ResourceExt,
    api::{ApiResource, DynamicObject, ObjectMeta, TypeMeta},
    core::PartialObjectMeta,
    runtime::watcher,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tenant_identity_crd::kinds::{ChildKind, FIELD_MANAGER, MANAGED_BY_LABEL};

use crate::names;

/// (kind, namespace, name).
type Key = (String, String, String);

/// What our last apply of a child left.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Applied {
    resource_version: String,
    /// For kinds with a status written by another controller: the generation and metadata our
    /// apply left, so their status updates alone do not make the child stale.
    generation: Option<i64>,
    metadata: u64,
    digest: [u8; 32],
}

#[derive(Clone, Debug)]
struct Slim {
    uid: String,
    resource_version: String,
    generation: Option<i64>,
    tenant: Option<String>,
    controller_uid: Option<String>,
    status: Option<Value>,
    applied: Option<Applied>,
    /// Our field manager still has an `Update` entry (from the create) on the object itself.
    handover_pending: bool,
    /// A digest of the labels, annotations and owner references.
    metadata: u64,
}

#[derive(Default)]
struct Inner {
    objects: HashMap<Key, Slim>,
    /// (namespace, tenant label) → the children carrying it.
    by_tenant: HashMap<(String, String), BTreeSet<(String, String)>>,
    /// Kinds whose watch has listed everything at least once.
    synced: BTreeSet<String>,
    /// During a re-list: keys not seen yet (removed at `InitDone`).
    relisting: HashMap<String, BTreeSet<Key>>,
}

/// What the cache says about one desired child.
#[derive(Clone, Debug, PartialEq)]
pub enum Cached {
    /// The kind's watch has not listed yet: ask the API server.
    Unknown,
    /// No object of that name carries our labels.
    Absent,
    /// Ours (controlled by the tenant), as last applied: nothing to write. The object as the
    /// watch saw it (metadata and mirrored status).
    Current(Box<DynamicObject>),
    /// Ours, but changed since our last apply, or never applied by this process: apply it (no
    /// read needed), unless fields of our create still wait to be handed to our apply entry.
    Stale { handover_pending: bool },
    /// Labelled like ours but controlled by another object (or none): judge it on a fresh read.
    NotOurs,
}

#[derive(Default)]
pub struct ChildCache {
    inner: Mutex<Inner>,
}

/// The digest of a desired child: what an apply would send.
pub fn digest(object: &DynamicObject) -> [u8; 32] {
    let bytes = serde_json::to_vec(object).unwrap_or_default();
    Sha256::digest(bytes).into()
}

/// Kinds whose upstream status the reconcile mirrors: the cache keeps their `status`.
fn keeps_status(kind: &str) -> bool {
    ChildKind::all().any(|k| k.reports_upstream_status() && k.kind_name() == kind)
}

impl ChildCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feed one event of the watch of `kind`.
    pub fn observe(&self, kind: &str, event: &watcher::Event<DynamicObject>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Init => {
                let keys = inner
                    .objects
                    .keys()
                    .filter(|k| k.0 == kind)
                    .cloned()
                    .collect();
                inner.relisting.insert(kind.to_string(), keys);
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let key = key(kind, obj);
                if let Some(pending) = inner.relisting.get_mut(kind) {
                    pending.remove(&key);
                }
                inner.upsert(key, obj);
            }
            watcher::Event::InitDone => {
                if let Some(gone) = inner.relisting.remove(kind) {
                    for key in gone {
                        inner.remove(&key);
                    }
                }
                inner.synced.insert(kind.to_string());
            }
            watcher::Event::Delete(obj) => inner.remove(&key(kind, obj)),
        }
    }

    /// Feed one event of a metadata watch of `kind` that is not label-selected (ServiceAccounts:
    /// the host ones are the vcluster's): only objects carrying our managed-by label are
    /// children; one that lost it is gone as a child.
    pub fn observe_metadata<K>(&self, kind: &str, event: &watcher::Event<PartialObjectMeta<K>>) {
        let child = |meta: &PartialObjectMeta<K>| {
            let ours = meta
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(MANAGED_BY_LABEL))
                .is_some_and(|v| v == FIELD_MANAGER);
            let object = DynamicObject {
                types: None,
                metadata: ObjectMeta {
                    annotations: None,
                    ..meta.metadata.clone()
                },
                data: json!({}),
            };
            (ours, object)
        };
        let event = match event {
            watcher::Event::Init => watcher::Event::Init,
            watcher::Event::InitDone => watcher::Event::InitDone,
            watcher::Event::InitApply(meta) => match child(meta) {
                (true, object) => watcher::Event::InitApply(object),
                (false, _) => return,
            },
            watcher::Event::Apply(meta) => match child(meta) {
                (true, object) => watcher::Event::Apply(object),
                (false, object) => watcher::Event::Delete(object),
            },
            watcher::Event::Delete(meta) => watcher::Event::Delete(child(meta).1),
        };
        self.observe(kind, &event);
    }

    /// What the cache knows of the desired child `object` of `resource`, owned by `owner_uid`.
    pub fn lookup(
        &self,
        resource: &ApiResource,
        object: &DynamicObject,
        owner_uid: &str,
    ) -> Cached {
        let inner = self.lock();
        if !inner.synced.contains(&resource.kind) {
            return Cached::Unknown;
        }
        let key = key(&resource.kind, object);
        let Some(slim) = inner.objects.get(&key) else {
            return Cached::Absent;
        };
        if slim.controller_uid.as_deref() != Some(owner_uid) {
            return Cached::NotOurs;
        }
        // Unchanged since our apply: the same resourceVersion; or, for a kind whose status
        // another controller writes (ASO, Flux), the same generation (its spec) and metadata.
        let unchanged = |applied: &Applied| {
            applied.resource_version == slim.resource_version
                || (keeps_status(&resource.kind)
                    && applied.generation.is_some()
                    && applied.generation == slim.generation
                    && applied.metadata == slim.metadata)
        };
        match &slim.applied {
            Some(applied) if applied.digest == digest(object) && unchanged(applied) => {
                Cached::Current(Box::new(slim.to_object(resource, &key)))
            }
            _ => Cached::Stale {
                handover_pending: slim.handover_pending,
            },
        }
    }

    /// Record our apply of `desired`, answered with `written`.
    pub fn applied(
        &self,
        resource: &ApiResource,
        desired: &DynamicObject,
        written: &DynamicObject,
    ) {
        let mut inner = self.lock();
        let key = key(&resource.kind, written);
        inner.upsert(key.clone(), written);
        if let (Some(slim), Some(rv)) = (inner.objects.get_mut(&key), written.resource_version()) {
            slim.applied = Some(Applied {
                resource_version: rv,
                generation: written.metadata.generation,
                metadata: metadata_digest(written),
                digest: digest(desired),
            });
        }
    }

    /// Whether `obj` (just observed) is exactly what our last apply of it wrote: the watch
    /// echoing our own write, which needs no reconcile.
    pub fn is_own_echo(&self, kind: &str, obj: &DynamicObject) -> bool {
        let Some(rv) = obj.resource_version() else {
            return false;
        };
        self.lock()
            .objects
            .get(&key(kind, obj))
            .and_then(|slim| slim.applied.as_ref())
            .is_some_and(|applied| applied.resource_version == rv)
    }

    /// The children of `kind` labelled for tenant `tenant` of `ns` and controlled by
    /// `owner_uid`, by name; None while the kind's watch has not listed yet.
    pub fn owned_by(
        &self,
        kind: &str,
        ns: &str,
        tenant: &str,
        owner_uid: &str,
    ) -> Option<Vec<(String, String)>> {
        let inner = self.lock();
        if !inner.synced.contains(kind) {
            return None;
        }
        let names = inner
            .by_tenant
            .get(&(ns.to_string(), tenant.to_string()))
            .into_iter()
            .flatten()
            .filter(|(k, _)| k == kind)
            .filter_map(|(k, name)| {
                let slim = inner
                    .objects
                    .get(&(k.clone(), ns.to_string(), name.clone()))?;
                (slim.controller_uid.as_deref() == Some(owner_uid))
                    .then(|| (name.clone(), slim.uid.clone()))
            })
            .collect();
        Some(names)
    }

    /// How many objects are cached (for tests and the memory bench).
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Inner {
    fn upsert(&mut self, key: Key, obj: &DynamicObject) {
        let mut slim = Slim::of(&key.0, obj);
        if let Some(old) = self.objects.remove(&key) {
            if let Some(tenant) = &old.tenant {
                self.unindex(&key, tenant);
            }
            // Our apply record survives updates of the same object.
            if old.uid == slim.uid {
                slim.applied = old.applied;
            }
        }
        if let Some(tenant) = &slim.tenant {
            self.by_tenant
                .entry((key.1.clone(), tenant.clone()))
                .or_default()
                .insert((key.0.clone(), key.2.clone()));
        }
        self.objects.insert(key, slim);
    }

    fn remove(&mut self, key: &Key) {
        if let Some(old) = self.objects.remove(key)
            && let Some(tenant) = &old.tenant
        {
            self.unindex(key, tenant);
        }
    }

    fn unindex(&mut self, key: &Key, tenant: &str) {
        let index = (key.1.clone(), tenant.to_string());
        if let Some(set) = self.by_tenant.get_mut(&index) {
            set.remove(&(key.0.clone(), key.2.clone()));
            if set.is_empty() {
                self.by_tenant.remove(&index);
            }
        }
    }
}

impl Slim {
    fn of(kind: &str, obj: &DynamicObject) -> Slim {
        Slim {
            uid: obj.uid().unwrap_or_default(),
            resource_version: obj.resource_version().unwrap_or_default(),
            generation: obj.metadata.generation,
            tenant: obj.labels().get(names::TENANT_LABEL).cloned(),
            controller_uid: obj
                .owner_references()
                .iter()
                .find(|o| o.controller == Some(true))
                .map(|o| o.uid.clone()),
            status: keeps_status(kind)
                .then(|| obj.data.get("status").cloned())
                .flatten(),
            applied: None,
            metadata: metadata_digest(obj),
            handover_pending: obj.managed_fields().iter().any(|m| {
                m.manager.as_deref() == Some(FIELD_MANAGER)
                    && m.operation.as_deref() == Some("Update")
                    && m.subresource.as_deref().unwrap_or_default().is_empty()
            }),
        }
    }

    /// The object as far as the cache knows it: enough for the status mirrors.
    fn to_object(&self, resource: &ApiResource, key: &Key) -> DynamicObject {
        DynamicObject {
            types: Some(TypeMeta {
                api_version: resource.api_version.clone(),
                kind: resource.kind.clone(),
            }),
            metadata: ObjectMeta {
                name: Some(key.2.clone()),
                namespace: Some(key.1.clone()),
                uid: Some(self.uid.clone()),
                resource_version: Some(self.resource_version.clone()),
                generation: self.generation,
                ..ObjectMeta::default()
            },
            data: match &self.status {
                Some(status) => json!({ "status": status }),
                None => json!({}),
            },
        }
    }
}

fn metadata_digest(obj: &DynamicObject) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    obj.metadata.labels.hash(&mut hasher);
    obj.metadata.annotations.hash(&mut hasher);
    for o in obj.owner_references() {
        (&o.uid, o.controller).hash(&mut hasher);
    }
    hasher.finish()
}

fn key(kind: &str, obj: &DynamicObject) -> Key {
    (
        kind.to_string(),
        obj.namespace().unwrap_or_default(),
        obj.name_any(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> ApiResource {
        ChildKind::GitRepository.api_resource()
    }

    fn object(rv: &str, owner: &str, status: &str) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": resource().api_version, "kind": resource().kind,
            "metadata": {"name": "team-a", "namespace": "ns", "uid": "child-1",
                "resourceVersion": rv, "generation": 1,
                "labels": {names::TENANT_LABEL: "team-a"},
                "ownerReferences": [{"apiVersion": "identity.tenancy.dev/v1alpha1",
                    "kind": "TenantIdentity", "name": "team-a", "uid": owner, "controller": true}]},
            "spec": {"url": "https://example/repo"},
            "status": {"conditions": [{"type": "Ready", "status": status}]},
        }))
        .expect("object")
    }

    fn desired(url: &str) -> DynamicObject {
        let mut d = object("", "t-1", "");
        d.data = json!({"spec": {"url": url}});
        d
    }

    #[test]
    fn unknown_until_listed_then_current_only_as_last_applied() {
        let cache = ChildCache::default();
        let r = resource();
        assert_eq!(cache.lookup(&r, &desired("a"), "t-1"), Cached::Unknown);
        cache.observe(&r.kind, &watcher::Event::Init);
        cache.observe(&r.kind, &watcher::Event::InitDone);
        assert_eq!(cache.lookup(&r, &desired("a"), "t-1"), Cached::Absent);

        cache.applied(&r, &desired("a"), &object("5", "t-1", "False"));
        assert!(matches!(
            cache.lookup(&r, &desired("a"), "t-1"),
            Cached::Current(_)
        ));
        // The watch echoing that apply is our own write; Flux's status update is not.
        assert!(cache.is_own_echo(&r.kind, &object("5", "t-1", "False")));
        assert!(!cache.is_own_echo(&r.kind, &object("6", "t-1", "True")));
        // Another spec is stale.
        assert_eq!(
            cache.lookup(&r, &desired("b"), "t-1"),
            Cached::Stale {
                handover_pending: false
            }
        );
        // Flux's status update (same generation, same metadata) leaves it current, with the
        // new status for the mirror.
        cache.observe(&r.kind, &watcher::Event::Apply(object("6", "t-1", "True")));
        let Cached::Current(obj) = cache.lookup(&r, &desired("a"), "t-1") else {
            panic!("a status update alone needs no apply");
        };
        assert_eq!(obj.data["status"]["conditions"][0]["status"], "True");
        assert_eq!(obj.metadata.generation, Some(1));
        // Someone edits the spec (generation 2) or a label: stale.
        let mut edited = object("7", "t-1", "True");
        edited.metadata.generation = Some(2);
        cache.observe(&r.kind, &watcher::Event::Apply(edited));
        assert!(matches!(
            cache.lookup(&r, &desired("a"), "t-1"),
            Cached::Stale { .. }
        ));
        cache.applied(&r, &desired("a"), &object("8", "t-1", "True"));
        assert!(matches!(
            cache.lookup(&r, &desired("a"), "t-1"),
            Cached::Current(_)
        ));
        let mut relabelled = object("9", "t-1", "True");
        relabelled
            .labels_mut()
            .insert("app.kubernetes.io/managed-by".into(), "someone".into());
        cache.observe(&r.kind, &watcher::Event::Apply(relabelled));
        assert!(matches!(
            cache.lookup(&r, &desired("a"), "t-1"),
            Cached::Stale { .. }
        ));
    }

    #[test]
    fn another_owner_is_not_ours_and_entries_go_with_their_objects() {
        let cache = ChildCache::default();
        let r = resource();
        cache.observe(&r.kind, &watcher::Event::Init);
        cache.observe(
            &r.kind,
            &watcher::Event::InitApply(object("1", "someone", "True")),
        );
        cache.observe(&r.kind, &watcher::Event::InitDone);
        assert_eq!(cache.lookup(&r, &desired("a"), "t-1"), Cached::NotOurs);
        assert_eq!(cache.owned_by(&r.kind, "ns", "team-a", "t-1"), Some(vec![]));
        cache.observe(&r.kind, &watcher::Event::Apply(object("2", "t-1", "True")));
        assert_eq!(
            cache.owned_by(&r.kind, "ns", "team-a", "t-1"),
            Some(vec![("team-a".to_string(), "child-1".to_string())])
        );
        // Gone in a re-list: removed at InitDone.
        cache.observe(&r.kind, &watcher::Event::Init);
        cache.observe(&r.kind, &watcher::Event::InitDone);
        assert!(cache.is_empty());
        cache.observe(&r.kind, &watcher::Event::Apply(object("3", "t-1", "True")));
        cache.observe(&r.kind, &watcher::Event::Delete(object("3", "t-1", "True")));
        assert!(cache.is_empty());
        assert_eq!(cache.owned_by(&r.kind, "ns", "team-a", "t-1"), Some(vec![]));
    }

    #[test]
    fn a_metadata_watch_feeds_only_objects_with_our_label() {
        use k8s_openapi::api::core::v1::ServiceAccount;
        let cache = ChildCache::default();
        let meta = |labelled: bool| -> PartialObjectMeta<ServiceAccount> {
            let mut labels = std::collections::BTreeMap::new();
            labels.insert(names::TENANT_LABEL.to_string(), "team-a".to_string());
            if labelled {
                labels.insert(MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string());
            }
            PartialObjectMeta::<ServiceAccount> {
                metadata: ObjectMeta {
                    name: Some("team-a-git".into()),
                    namespace: Some("ns".into()),
                    uid: Some("sa-1".into()),
                    resource_version: Some("1".into()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                ..PartialObjectMeta::default()
            }
        };
        cache.observe_metadata::<ServiceAccount>("ServiceAccount", &watcher::Event::Init);
        cache.observe_metadata("ServiceAccount", &watcher::Event::InitApply(meta(false)));
        cache.observe_metadata::<ServiceAccount>("ServiceAccount", &watcher::Event::InitDone);
        assert!(
            cache.is_empty(),
            "the vcluster's ServiceAccounts are not children"
        );
        cache.observe_metadata("ServiceAccount", &watcher::Event::Apply(meta(true)));
        assert_eq!(cache.len(), 1);
        // The label taken off: no longer a child.
        cache.observe_metadata("ServiceAccount", &watcher::Event::Apply(meta(false)));
        assert!(cache.is_empty());
    }
}
