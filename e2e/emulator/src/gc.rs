//! The controllers a cluster runs that API semantics depend on: the garbage collector
//! (background deletion of dependents whose owners are all gone), the namespace controller
//! (empties a terminating namespace, then removes it) and the CRD cleanup controller (deletes a
//! terminating CRD's custom resources, then the CRD). They run asynchronously after writes, like
//! kube-controller-manager and the apiextensions server, but promptly.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::crd::CLEANUP_FINALIZER;
use crate::object;
use crate::ops::{self, DeleteOptions};
use crate::resources::ResKey;
use crate::store::{self, Store};

/// Runs passes whenever notified, until `shutdown` flips to true.
pub async fn run(shared: Arc<Mutex<Store>>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let notify = store::lock(&shared).controllers.clone();
    loop {
        tokio::select! {
            _ = notify.notified() => {}
            _ = shutdown.changed() => return,
        }
        run_passes(&mut store::lock(&shared));
    }
}

/// Repeats passes until nothing changes (cascading deletions), bounded.
pub fn run_passes(store: &mut Store) {
    for _ in 0..64 {
        if !pass(store) {
            break;
        }
    }
}

fn delete(store: &mut Store, key: &ResKey, ns: &str, name: &str) -> bool {
    let Some(res) = store.registry.by_key(key) else {
        return false;
    };
    match ops::delete_object(store, &res, ns, name, &DeleteOptions::default()) {
        Ok(_) => true,
        Err(e) => {
            tracing::debug!(error = %e, "controller delete failed");
            false
        }
    }
}

/// One pass of all controllers; returns whether anything changed.
fn pass(store: &mut Store) -> bool {
    let mut changed = false;
    changed |= namespaces(store);
    changed |= crds(store);
    changed |= garbage_collect(store);
    changed
}

fn namespaces(store: &mut Store) -> bool {
    let ns_key: ResKey = (String::new(), "namespaces".into());
    let terminating: Vec<Value> = store
        .list(&ns_key, None)
        .into_iter()
        .filter(|n| object::is_terminating(n))
        .cloned()
        .collect();
    let mut changed = false;
    for ns_obj in terminating {
        let ns = object::name(&ns_obj).to_string();
        let mut remaining = 0;
        for key in store.keys() {
            let Some(res) = store.registry.by_key(&key) else {
                continue;
            };
            if !res.namespaced {
                continue;
            }
            let content: Vec<(String, bool)> = store
                .list(&key, Some(&ns))
                .into_iter()
                .map(|o| (object::name(o).to_string(), object::is_terminating(o)))
                .collect();
            remaining += content.len();
            for (name, terminating) in content {
                if !terminating {
                    changed |= delete(store, &key, &ns, &name);
                }
            }
        }
        if remaining > 0 {
            continue;
        }
        // Empty: the namespace controller drops its `kubernetes` finalizer; then the namespace
        // goes once no other finalizers hold it.
        let mut obj = ns_obj.clone();
        if let Some(m) = obj.as_object_mut() {
            m.insert("spec".into(), json!({}));
        }
        if object::finalizers(&obj).is_empty() {
            if let Some(res) = store.registry.by_key(&ns_key) {
                ops::remove_object(store, &res, "", &ns, Some(obj));
                changed = true;
            }
        } else if obj != ns_obj {
            store.put(&ns_key, obj, Some(ns_obj));
            changed = true;
        }
    }
    changed
}

fn crds(store: &mut Store) -> bool {
    let crd_key: ResKey = (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    );
    let terminating: Vec<Value> = store
        .list(&crd_key, None)
        .into_iter()
        .filter(|c| object::is_terminating(c))
        .cloned()
        .collect();
    let mut changed = false;
    for crd in terminating {
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = crd
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key: ResKey = (group.to_string(), plural.to_string());
        let content: Vec<(String, String, bool)> = store
            .list(&key, None)
            .into_iter()
            .map(|o| {
                (
                    object::namespace(o).to_string(),
                    object::name(o).to_string(),
                    object::is_terminating(o),
                )
            })
            .collect();
        if !content.is_empty() {
            for (ns, name, terminating) in content {
                if !terminating {
                    changed |= delete(store, &key, &ns, &name);
                }
            }
            continue;
        }
        let mut obj = crd.clone();
        let meta = object::metadata_mut(&mut obj);
        if let Some(Value::Array(f)) = meta.get_mut("finalizers") {
            f.retain(|x| x.as_str() != Some(CLEANUP_FINALIZER));
            if f.is_empty() {
                meta.remove("finalizers");
            }
        }
        let name = object::name(&crd).to_string();
        let Some(res) = store.registry.by_key(&crd_key) else {
            continue;
        };
        if object::finalizers(&obj).is_empty() {
            ops::remove_object(store, &res, "", &name, Some(obj));
            changed = true;
        } else if obj != crd {
            store.put(&crd_key, obj, Some(crd));
            changed = true;
        }
    }
    changed
}

/// Background garbage collection: an object whose owner references all point at objects that
/// no longer exist is deleted (finalizers still apply).
fn garbage_collect(store: &mut Store) -> bool {
    let live: HashSet<String> = store
        .all_objects()
        .map(|(_, o)| object::uid(o).to_string())
        .collect();
    let orphans: Vec<(ResKey, String, String)> = store
        .all_objects()
        .filter(|(_, o)| !object::is_terminating(o))
        .filter(|(_, o)| {
            let owners = object::owner_uids(o);
            !owners.is_empty() && owners.iter().all(|u| !live.contains(u))
        })
        .map(|(k, o)| {
            (
                k.clone(),
                object::namespace(o).to_string(),
                object::name(o).to_string(),
            )
        })
        .collect();
    let mut changed = false;
    for (key, ns, name) in orphans {
        changed |= delete(store, &key, &ns, &name);
    }
    changed
}
