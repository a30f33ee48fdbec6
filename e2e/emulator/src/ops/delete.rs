//! Delete: immediate, or through the terminating state while finalizers (or the namespace and
//! CRD cleanup controllers) have work to finish; and `propagationPolicy: Orphan`.

use serde_json::{Value, json};

use super::target::Target;
use crate::crd::CLEANUP_FINALIZER;
use crate::error::ApiError;
use crate::object;
use crate::resources::{ResKey, ResourceDef};
use crate::store::Store;

/// Options of a DELETE.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
}

pub enum Deleted {
    /// The object is gone; its final state.
    Gone(Value),
    /// The object is terminating, waiting for finalizers.
    Pending(Value),
}

pub fn delete(store: &mut Store, t: &Target, d: &DeleteOptions) -> Result<Deleted, ApiError> {
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "delete is not supported on a subresource",
        ));
    }
    let out = delete_object(store, &t.res, t.ns(), t.name(), d)?;
    Ok(match out {
        Deleted::Gone(v) => Deleted::Gone(t.res.convert(v, &t.version)),
        Deleted::Pending(v) => Deleted::Pending(t.res.convert(v, &t.version)),
    })
}

/// Deletes one object: marks it terminating when something must finish first (finalizers,
/// namespace content, custom resources of a CRD), removes it otherwise.
pub fn delete_object(
    store: &mut Store,
    res: &ResourceDef,
    ns: &str,
    name: &str,
    d: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let key = res.key();
    let old = store
        .get(&key, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
    if let Some(uid) = &d.precondition_uid
        && uid != object::uid(&old)
    {
        return Err(ApiError::precondition_failed(
            &res.group,
            &res.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::uid(&old)
            ),
        ));
    }
    let must_wait = !object::finalizers(&old).is_empty() || res.is_namespace() || res.is_crd();
    if d.propagation.as_deref() == Some("Orphan") {
        orphan_dependents(store, object::uid(&old));
    }
    if !must_wait {
        let gone = remove_object(store, res, ns, name, None)
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
        return Ok(Deleted::Gone(gone));
    }
    if object::is_terminating(&old) {
        return Ok(Deleted::Pending(old));
    }
    let obj = terminating(res, &old);
    let stored = store.put(&key, obj, Some(old));
    store.controllers.notify_one();
    Ok(Deleted::Pending(stored))
}

/// The object marked for deletion: deletionTimestamp set (grace period 0: deletion is not
/// graceful here), generation bumped like `markAsDeleting` does, the CRD cleanup finalizer
/// added to a CRD, a namespace in phase Terminating.
fn terminating(res: &ResourceDef, old: &Value) -> Value {
    let mut obj = old.clone();
    let meta = object::metadata_mut(&mut obj);
    meta.insert("deletionTimestamp".into(), json!(object::now()));
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
    if res.has_generation {
        let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
        meta.insert("generation".into(), json!(g + 1));
    }
    if res.is_crd()
        && let Value::Array(list) = meta.entry("finalizers").or_insert_with(|| json!([]))
    {
        let cleanup = json!(CLEANUP_FINALIZER);
        if !list.contains(&cleanup) {
            list.push(cleanup);
        }
    }
    if res.is_namespace()
        && let Some(m) = obj.as_object_mut()
    {
        m.insert("status".into(), json!({"phase": "Terminating"}));
    }
    obj
}

/// Removes an object from the store for good (with the side effects of a CRD going away).
pub fn remove_object(
    store: &mut Store,
    res: &ResourceDef,
    ns: &str,
    name: &str,
    final_obj: Option<Value>,
) -> Option<Value> {
    let gone = store.remove(&res.key(), ns, name, final_obj)?;
    if res.is_crd() {
        let field = |p: &str| gone.pointer(p).and_then(Value::as_str).unwrap_or("");
        let key = (
            field("/spec/group").to_string(),
            field("/spec/names/plural").to_string(),
        );
        store.registry.unregister(&key);
        store.drop_resource(&key);
    }
    Some(gone)
}

/// `propagationPolicy: Orphan`: dependents lose their owner reference instead of being deleted.
fn orphan_dependents(store: &mut Store, uid: &str) {
    let dependents: Vec<(ResKey, Value)> = store
        .all_objects()
        .filter(|(_, o)| object::owner_uids(o).iter().any(|u| u == uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, old) in dependents {
        let mut obj = old.clone();
        let meta = object::metadata_mut(&mut obj);
        if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            if refs.is_empty() {
                meta.remove("ownerReferences");
            }
        }
        store.put(&key, obj, Some(old));
    }
}
