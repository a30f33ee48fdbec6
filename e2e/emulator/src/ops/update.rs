//! Update: a new version of a stored object, written by PUT, by a PATCH or by server-side
//! apply of an existing object.

use serde_json::{Value, json};

use super::admission::{self, invalid};
use super::delete::remove_object;
use super::ownership::{self, Ownership};
use super::target::{Target, WriteOptions};
use crate::error::{ApiError, Cause};
use crate::object;
use crate::resources::ResourceDef;
use crate::store::Store;

/// PUT of an existing object.
pub fn update(
    store: &mut Store,
    t: &Target,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    admission::normalize_type_meta(&mut body, t)?;
    let old = store
        .get(&t.res.key(), t.ns(), t.name())
        .cloned()
        .ok_or_else(|| t.not_found())?;
    finish_update(store, t, old, body, Ownership::Update, opts)
}

/// Replaces `old` with `obj`, the new version the request asks for.
pub(super) fn finish_update(
    store: &mut Store,
    t: &Target,
    old: Value,
    mut obj: Value,
    own: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    check_identity(t, &old, &obj)?;
    keep_server_metadata(&old, &mut obj, matches!(own, Ownership::Update));
    let mut obj = scope_to_subresource(t, &old, obj);
    admission::mutate(t, Some(&old), &mut obj, opts.strict)?;
    check_no_new_finalizers(t, &old, &obj)?;
    bump_generation(&t.res, &old, &mut obj);
    let entries = ownership::after_update(t, opts, own, &old, &obj);
    ownership::write_managed_fields(&mut obj, &entries);

    let defined = admission::validate_object(t, &obj, Some(&old))?;
    if changes_nothing(&old, &obj) {
        // A write that changes nothing is not a write: no new resourceVersion, no event.
        return Ok(t.res.convert(old, &t.version));
    }
    let res = t.res.clone();
    if object::is_terminating(&obj) {
        store.controllers.notify_one();
        // The last finalizer is gone: the deletion completes (namespaces wait for their
        // controller to empty them).
        if object::finalizers(&obj).is_empty() && !res.is_namespace() {
            let (ns, name) = (object::namespace(&old), object::name(&old));
            let gone =
                remove_object(store, &res, ns, name, Some(obj)).ok_or_else(|| t.not_found())?;
            return Ok(res.convert(gone, &t.version));
        }
    }
    let stored = store.put(&res.key(), obj, Some(old));
    if let Some(def) = defined {
        store.registry.register(def);
    }
    Ok(res.convert(stored, &t.version))
}

/// The body may repeat the object's name, namespace and resourceVersion but not change them; a
/// resourceVersion other than the stored one is the optimistic-concurrency conflict.
fn check_identity(t: &Target, old: &Value, obj: &Value) -> Result<(), ApiError> {
    let name = object::name(old);
    let body_name = object::name(obj);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = object::namespace(obj);
    if t.res.namespaced && !body_ns.is_empty() && body_ns != object::namespace(old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_rv = object::resource_version(obj);
    if !body_rv.is_empty() && body_rv != object::resource_version(old) {
        return Err(ApiError::conflict(&t.res.group, &t.res.plural, name));
    }
    check_uid(t, old, object::uid(obj))
}

/// A body naming a uid must name the stored object's: the uid is immutable, so a write meant
/// for an object that was deleted and re-created under the same name fails instead of changing
/// the new one. k8s.io/apiserver `pkg/registry/rest/update.go`, `BeforeUpdate`: only an empty
/// uid takes the stored one, then `validateCommonFields` (apimachinery
/// `ValidateObjectMetaUpdate`, `ValidateImmutableField`) refuses a different one; this runs
/// after the resourceVersion check, as in `genericregistry.Store.Update`.
pub(super) fn check_uid(t: &Target, old: &Value, body_uid: &str) -> Result<(), ApiError> {
    if body_uid.is_empty() || body_uid == object::uid(old) {
        return Ok(());
    }
    Err(invalid(
        t,
        object::name(old),
        vec![Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"{body_uid}\": field is immutable"),
            field: "metadata.uid".into(),
        }],
    ))
}

/// Metadata the server owns comes from the stored object, whatever the body says.
/// `keep_managed_fields`: a non-apply write that omits managedFields keeps them, like the real
/// server.
fn keep_server_metadata(old: &Value, obj: &mut Value, keep_managed_fields: bool) {
    let old_meta = object::metadata(old).cloned().unwrap_or_default();
    let meta = object::metadata_mut(obj);
    for f in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(f) {
            Some(v) => meta.insert(f.to_string(), v.clone()),
            None => meta.remove(f),
        };
    }
    meta.remove("resourceVersion");
    meta.remove("selfLink");
    if keep_managed_fields
        && meta.get("managedFields").is_none_or(Value::is_null)
        && let Some(mf) = old_meta.get("managedFields")
    {
        meta.insert("managedFields".into(), mf.clone());
    }
}

/// A write to the status subresource changes status only (and who manages it); a write to the
/// main resource of a kind with a status subresource keeps the stored status.
fn scope_to_subresource(t: &Target, old: &Value, mut obj: Value) -> Value {
    if t.is_status() {
        let status = obj.get("status").cloned();
        let mf = object::metadata(&obj)
            .and_then(|m| m.get("managedFields"))
            .cloned();
        let mut fresh = old.clone();
        if let Some(m) = fresh.as_object_mut() {
            match status {
                Some(s) => m.insert("status".into(), s),
                None => m.remove("status"),
            };
        }
        let meta = object::metadata_mut(&mut fresh);
        meta.remove("resourceVersion");
        match mf {
            Some(mf) => meta.insert("managedFields".into(), mf),
            None => meta.remove("managedFields"),
        };
        return fresh;
    }
    if t.res.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        match old.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    obj
}

/// A terminating object may lose finalizers but not gain any.
fn check_no_new_finalizers(t: &Target, old: &Value, obj: &Value) -> Result<(), ApiError> {
    if !object::is_terminating(old) {
        return Ok(());
    }
    let before = object::finalizers(old);
    let added: Vec<String> = object::finalizers(obj)
        .into_iter()
        .filter(|f| !before.contains(f))
        .collect();
    if added.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
    Err(invalid(
        t,
        object::name(old),
        vec![Cause {
            reason: "FieldValueForbidden".into(),
            message: format!(
                "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                list.join(", ")
            ),
            field: "metadata.finalizers".into(),
        }],
    ))
}

/// `metadata.generation` counts changes of anything but metadata (and status, when it is a
/// subresource).
fn bump_generation(res: &ResourceDef, old: &Value, obj: &mut Value) {
    if !res.has_generation {
        return;
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if res.status_subresource {
                m.remove("status");
            }
        }
        v
    };
    if strip(old) != strip(obj) {
        let g = object::generation(old) + 1;
        object::metadata_mut(obj).insert("generation".into(), json!(g));
    }
}

/// Whether `obj` (which has no resourceVersion yet) is the stored `old` again.
fn changes_nothing(old: &Value, obj: &Value) -> bool {
    let mut candidate = obj.clone();
    object::metadata_mut(&mut candidate).insert(
        "resourceVersion".into(),
        json!(object::resource_version(old)),
    );
    candidate == *old
}
