//! Every ServiceAccount of the cluster as the metadata watch sees it, slimmed to what the host
//! ServiceAccount and deploy account steps read: that it exists and its uid, whether our field
//! manager applied to it, whether it is one of our children or one of our deploy accounts, and
//! the workload identity annotations. Most ServiceAccounts are unrelated to any tenant, so an
//! entry is a few short strings.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{ResourceExt, core::PartialObjectMeta, runtime::watcher};

use tenant_identity_crd::kinds::{ChildKind, MANAGED_BY_LABEL};

use crate::names::FIELD_MANAGER;

/// The annotations the workload identity webhook reads (the only ones kept).
const KEPT_PREFIX: &str = "azure.workload.identity/";

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SlimServiceAccount {
    /// The account's uid: our annotation applies name it, so that they never create an account
    /// deleted since the watch saw it, nor write to another one re-created under its name.
    pub uid: String,
    /// Our field manager has an Apply entry on it.
    pub applied_by_us: bool,
    /// Controlled by a TenantIdentity (our `<name>-git` child).
    pub is_child: bool,
    /// `azure.workload.identity/*` annotations.
    pub annotations: BTreeMap<String, String>,
    /// One of our deploy accounts (`controller::deploy_service_account`): our managed-by label
    /// and owned by a Flux Kustomization.
    pub deploy_account: Option<DeployAccount>,
}

/// A deploy account's uid and its Kustomization's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployAccount {
    pub uid: String,
    pub kustomization_uid: String,
}

type Key = (String, String);

#[derive(Default)]
struct Inner {
    /// ServiceAccounts our own annotation writes left at this resourceVersion: the watch's echo
    /// of those writes needs no reconcile.
    our_writes: HashMap<Key, String>,
    /// Namespace → name → account: a namespace's accounts without a scan of the others.
    accounts: HashMap<String, BTreeMap<String, SlimServiceAccount>>,
    synced: bool,
    relisting: Option<BTreeSet<Key>>,
}

impl Inner {
    fn keys(&self) -> BTreeSet<Key> {
        self.accounts
            .iter()
            .flat_map(|(ns, names)| names.keys().map(|n| (ns.clone(), n.clone())))
            .collect()
    }

    fn remove(&mut self, (ns, name): &Key) {
        if let Some(names) = self.accounts.get_mut(ns) {
            names.remove(name);
            if names.is_empty() {
                self.accounts.remove(ns);
            }
        }
    }
}

#[derive(Default)]
pub struct ServiceAccountCache {
    inner: Mutex<Inner>,
}

impl ServiceAccountCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn observe(&self, event: &watcher::Event<PartialObjectMeta<ServiceAccount>>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Init => {
                inner.relisting = Some(inner.keys());
            }
            watcher::Event::InitApply(sa) | watcher::Event::Apply(sa) => {
                let key = key(sa);
                if let Some(pending) = inner.relisting.as_mut() {
                    pending.remove(&key);
                }
                let (ns, name) = key;
                inner.accounts.entry(ns).or_default().insert(name, slim(sa));
            }
            watcher::Event::InitDone => {
                for key in inner.relisting.take().unwrap_or_default() {
                    inner.remove(&key);
                }
                inner.synced = true;
            }
            watcher::Event::Delete(sa) => {
                inner.our_writes.remove(&key(sa));
                inner.remove(&key(sa));
            }
        }
    }

    /// The ServiceAccounts of namespace `ns`; None until the watch has listed once.
    pub fn in_namespace(&self, ns: &str) -> Option<BTreeMap<String, SlimServiceAccount>> {
        let inner = self.lock();
        if !inner.synced {
            return None;
        }
        Some(inner.accounts.get(ns).cloned().unwrap_or_default())
    }

    /// The ServiceAccounts of namespace `ns` that `keep` selects (by name and entry); None until
    /// the watch has listed once.
    pub fn select(
        &self,
        ns: &str,
        keep: impl Fn(&str, &SlimServiceAccount) -> bool,
    ) -> Option<BTreeMap<String, SlimServiceAccount>> {
        let inner = self.lock();
        if !inner.synced {
            return None;
        }
        Some(
            inner
                .accounts
                .get(ns)
                .into_iter()
                .flatten()
                .filter(|(name, sa)| keep(name, sa))
                .map(|(name, sa)| (name.clone(), sa.clone()))
                .collect(),
        )
    }

    /// Record a ServiceAccount our create wrote (`sa`, the answer), before its watch event
    /// arrives, so that a reconcile meanwhile does not create it again; the watch's echo of it
    /// is no news.
    pub fn created(&self, sa: &PartialObjectMeta<ServiceAccount>) {
        let mut inner = self.lock();
        let (ns, name) = key(sa);
        if let Some(rv) = sa.resource_version() {
            inner.our_writes.insert((ns.clone(), name.clone()), rv);
        }
        inner.accounts.entry(ns).or_default().insert(name, slim(sa));
    }

    /// Record that our write left ServiceAccount `ns/name` at `resource_version`.
    pub fn wrote(&self, ns: &str, name: &str, resource_version: String) {
        self.lock()
            .our_writes
            .insert((ns.to_string(), name.to_string()), resource_version);
    }

    /// Whether `sa` is the echo of our own write (consumed: asked once per write).
    pub fn is_own_echo(&self, sa: &PartialObjectMeta<ServiceAccount>) -> bool {
        let mut inner = self.lock();
        let key = key(sa);
        match (inner.our_writes.get(&key), sa.resource_version()) {
            (Some(ours), Some(rv)) if *ours == rv => {
                inner.our_writes.remove(&key);
                true
            }
            _ => false,
        }
    }

    pub fn len(&self) -> usize {
        self.lock().accounts.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn key(sa: &PartialObjectMeta<ServiceAccount>) -> Key {
    (sa.namespace().unwrap_or_default(), sa.name_any())
}

/// What the reconcile reads of a ServiceAccount's metadata.
pub fn slim(sa: &PartialObjectMeta<ServiceAccount>) -> SlimServiceAccount {
    SlimServiceAccount {
        uid: sa.uid().unwrap_or_default(),
        applied_by_us: sa.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        }),
        is_child: sa
            .owner_references()
            .iter()
            .any(|o| o.kind == "TenantIdentity"),
        annotations: sa
            .annotations()
            .iter()
            .filter(|(k, _)| k.starts_with(KEPT_PREFIX))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        deploy_account: deploy_account(sa),
    }
}

fn deploy_account(sa: &PartialObjectMeta<ServiceAccount>) -> Option<DeployAccount> {
    if sa.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(FIELD_MANAGER) {
        return None;
    }
    let kustomization = ChildKind::Kustomization.api_resource();
    sa.owner_references()
        .iter()
        .find(|o| {
            o.kind == kustomization.kind
                && o.api_version.split('/').next() == Some(&kustomization.group)
        })
        .map(|o| DeployAccount {
            uid: sa.uid().unwrap_or_default(),
            kustomization_uid: o.uid.clone(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::ObjectMeta;

    fn sa(name: &str, labelled: bool, owner_kind: &str) -> PartialObjectMeta<ServiceAccount> {
        PartialObjectMeta {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                uid: Some(format!("uid-{name}")),
                resource_version: Some("7".into()),
                labels: labelled
                    .then(|| [(MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string())].into()),
                owner_references: Some(vec![OwnerReference {
                    api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
                    kind: owner_kind.into(),
                    name: "team-a".into(),
                    uid: "ks-1".into(),
                    ..OwnerReference::default()
                }]),
                ..ObjectMeta::default()
            },
            ..PartialObjectMeta::default()
        }
    }

    #[test]
    fn deploy_accounts_are_ours_and_owned_by_a_kustomization() {
        assert_eq!(
            slim(&sa("team-a-deploy", true, "Kustomization")).deploy_account,
            Some(DeployAccount {
                uid: "uid-team-a-deploy".into(),
                kustomization_uid: "ks-1".into(),
            })
        );
        // Someone else's account that a Kustomization owns, or ours owned by something else.
        assert_eq!(slim(&sa("x", false, "Kustomization")).deploy_account, None);
        assert_eq!(slim(&sa("x", true, "HelmRelease")).deploy_account, None);
    }

    #[test]
    fn select_waits_for_the_list_and_a_create_is_known_at_once() {
        let cache = ServiceAccountCache::default();
        assert_eq!(cache.select("ns", |_, _| true), None);
        cache.observe(&watcher::Event::Init);
        cache.observe(&watcher::Event::InitApply(sa("other", false, "Job")));
        cache.observe(&watcher::Event::InitDone);
        let ours = |_: &str, s: &SlimServiceAccount| s.deploy_account.is_some();
        assert_eq!(cache.select("ns", ours).map(|m| m.len()), Some(0));
        let created = sa("team-a-deploy", true, "Kustomization");
        cache.created(&created);
        assert_eq!(
            cache
                .select("ns", ours)
                .map(|m| m.keys().cloned().collect::<Vec<_>>()),
            Some(vec!["team-a-deploy".to_string()])
        );
        // The watch's echo of that create is no news.
        assert!(cache.is_own_echo(&created));
    }
}
