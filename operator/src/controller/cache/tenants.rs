//! Indexes of the TenantIdentity cache, so no step scans every tenant: by namespace (the watch
//! mappers of ServiceAccounts, HelmReleases, identities and namespaces; host annotations wanted
//! by the namespace's other tenants) and by clientId (the claim rule).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use kube::{ResourceExt, runtime::watcher};
use tenant_identity_crd::TenantIdentity;

use crate::controller::Guarded;

type Name = (String, String);

#[derive(Default)]
struct Inner {
    by_namespace: HashMap<String, BTreeSet<String>>,
    by_client_id: HashMap<String, BTreeSet<Name>>,
    /// (namespace, name) → the clientId it was indexed under.
    client_of: HashMap<Name, String>,
    relisting: Option<BTreeSet<Name>>,
}

#[derive(Default)]
pub struct TenantIndex {
    inner: Mutex<Inner>,
}

impl TenantIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn observe(&self, event: &watcher::Event<Guarded>) {
        let mut inner = self.lock();
        match event {
            watcher::Event::Init => {
                inner.relisting = Some(inner.client_of.keys().cloned().collect());
            }
            watcher::Event::InitApply(guard) | watcher::Event::Apply(guard) => {
                if let Ok(ti) = &guard.0 {
                    let name = name_of(ti);
                    if let Some(pending) = inner.relisting.as_mut() {
                        pending.remove(&name);
                    }
                    inner.insert(name, ti);
                }
            }
            watcher::Event::InitDone => {
                for name in inner.relisting.take().unwrap_or_default() {
                    inner.remove(&name);
                }
            }
            watcher::Event::Delete(guard) => {
                if let Ok(ti) = &guard.0 {
                    inner.remove(&name_of(ti));
                }
            }
        }
    }

    /// Names of the TenantIdentities of namespace `ns`.
    pub fn in_namespace(&self, ns: &str) -> Vec<String> {
        self.lock()
            .by_namespace
            .get(ns)
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// (namespace, name) of the TenantIdentities naming `client_id` (case-insensitive).
    pub fn with_client_id(&self, client_id: &str) -> Vec<(String, String)> {
        self.lock()
            .by_client_id
            .get(&client_id.to_ascii_lowercase())
            .map(|names| names.iter().cloned().collect())
            .unwrap_or_default()
    }
}

impl Inner {
    fn insert(&mut self, name: Name, ti: &TenantIdentity) {
        self.remove(&name);
        let client_id = ti.spec.azure.client_id.to_ascii_lowercase();
        self.by_namespace
            .entry(name.0.clone())
            .or_default()
            .insert(name.1.clone());
        self.by_client_id
            .entry(client_id.clone())
            .or_default()
            .insert(name.clone());
        self.client_of.insert(name, client_id);
    }

    fn remove(&mut self, name: &Name) {
        let Some(client_id) = self.client_of.remove(name) else {
            return;
        };
        if let Some(names) = self.by_namespace.get_mut(&name.0) {
            names.remove(&name.1);
            if names.is_empty() {
                self.by_namespace.remove(&name.0);
            }
        }
        if let Some(names) = self.by_client_id.get_mut(&client_id) {
            names.remove(name);
            if names.is_empty() {
                self.by_client_id.remove(&client_id);
            }
        }
    }
}

fn name_of(ti: &TenantIdentity) -> Name {
    (ti.namespace().unwrap_or_default(), ti.name_any())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::DeserializeGuard;
    use serde_json::json;

    fn tenant(ns: &str, name: &str, client_id: &str) -> Guarded {
        let ti: TenantIdentity = serde_json::from_value(json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"azure": {"clientId": client_id,
                "identity": {"azureServiceOperator": {"name": "id"}}}}
        }))
        .expect("tenant");
        DeserializeGuard(Ok(ti))
    }

    #[test]
    fn follows_changes_deletes_and_relists() {
        let index = TenantIndex::default();
        index.observe(&watcher::Event::Apply(tenant("a", "t1", "C-1")));
        index.observe(&watcher::Event::Apply(tenant("a", "t2", "c-2")));
        index.observe(&watcher::Event::Apply(tenant("b", "t3", "c-1")));
        assert_eq!(index.in_namespace("a"), vec!["t1", "t2"]);
        assert_eq!(
            index.with_client_id("c-1"),
            vec![
                ("a".to_string(), "t1".to_string()),
                ("b".to_string(), "t3".to_string())
            ]
        );
        // A changed clientId moves.
        index.observe(&watcher::Event::Apply(tenant("a", "t1", "c-9")));
        assert_eq!(
            index.with_client_id("C-1"),
            vec![("b".to_string(), "t3".to_string())]
        );
        index.observe(&watcher::Event::Delete(tenant("a", "t2", "c-2")));
        assert_eq!(index.in_namespace("a"), vec!["t1"]);
        index.observe(&watcher::Event::Init);
        index.observe(&watcher::Event::InitApply(tenant("b", "t3", "c-1")));
        index.observe(&watcher::Event::InitDone);
        assert!(index.in_namespace("a").is_empty());
        assert!(index.with_client_id("c-9").is_empty());
        assert_eq!(index.in_namespace("b"), vec!["t3"]);
    }
}
