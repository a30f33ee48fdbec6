//! Server-side apply: the applied configuration is merged into the live object (or an empty
//! one, to create it) by `managed::apply`, then stored like any other create or update.

use serde_json::{Map, Value, json};

use super::admission;
use super::create::finish_create;
use super::ownership::Ownership;
use super::target::{Target, WriteOptions};
use super::update::{check_uid, finish_update};
use crate::error::ApiError;
use crate::fieldpath::{self, Shape};
use crate::managed;
use crate::object;
use crate::store::Store;

/// Returns the object and whether the apply created it.
pub(super) fn apply(
    store: &mut Store,
    t: &Target,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    if !opts.manager_explicit || opts.manager.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let config = decode_configuration(t, body)?;
    let old = store.get(&t.res.key(), t.ns(), t.name()).cloned();
    check_uid_exists(t, &config, old.as_ref())?;
    check_resource_version(t, &config, old.as_ref())?;
    if let Some(o) = &old {
        // The merge below keeps the stored uid (it is server metadata, not an applied field),
        // so the configuration's is compared here.
        check_uid(t, o, object::uid(&config))?;
    }
    let view = applied_fields(t, &config);
    if old.is_none() && t.is_status() {
        return Err(t.not_found());
    }
    let live = match &old {
        Some(o) => o.clone(),
        None => empty_object(t),
    };
    let mut entries = managed::parse(&live);
    let shape = Shape::new(t.schema());
    let me = t.manager(opts, "Apply");
    let merged = managed::apply(&mut entries, &live, &view, shape, &me, opts.force)
        .map_err(|c| conflict_error(t, &c))?;
    match old {
        None => finish_create(store, t, merged, Ownership::Apply(entries), opts).map(|v| (v, true)),
        Some(old) => finish_update(store, t, old, merged, Ownership::Apply(entries), opts)
            .map(|v| (v, false)),
    }
}

/// The apply configuration: a YAML (or JSON) object with apiVersion and kind, for the object on
/// the URL. `null`s mean "not set" and are dropped.
fn decode_configuration(t: &Target, body: &[u8]) -> Result<Value, ApiError> {
    let mut config: Value = serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    for field in ["apiVersion", "kind"] {
        if config
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "invalid object: Object '{}' is missing in '{}'",
                if field == "kind" { "Kind" } else { field },
                String::from_utf8_lossy(body)
            )));
        }
    }
    admission::normalize_type_meta(&mut config, t)?;
    object::strip_nulls(&mut config);
    let cfg_name = object::name(&config);
    if !cfg_name.is_empty() && cfg_name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({cfg_name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    Ok(config)
}

/// A configuration that names a uid never creates: it is meant for that object, which is gone.
/// k8s.io/apiserver `pkg/endpoints/handlers/patch.go`, `patcher.applyPatch`: a patched object
/// with a uid and no current object is `NewConflict(.., "uid mismatch: ..")`. Every patch type
/// shares that check, but only apply creates; the others answer 404 first
/// (`jsonPatcher.createNewObject`, `smpPatcher.createNewObject`).
fn check_uid_exists(t: &Target, config: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let uid = object::uid(config);
    if uid.is_empty() || old.is_some() {
        return Ok(());
    }
    Err(ApiError::precondition_failed(
        &t.res.group,
        &t.res.plural,
        t.name(),
        &format!(
            "uid mismatch: the provided object specified uid {uid}, and no existing object was found"
        ),
    ))
}

/// A configuration that names a resourceVersion applies to exactly that version.
fn check_resource_version(t: &Target, config: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let cfg_rv = object::resource_version(config);
    if cfg_rv.is_empty() {
        return Ok(());
    }
    match old {
        Some(o) if object::resource_version(o) == cfg_rv => Ok(()),
        Some(_) => Err(ApiError::conflict(&t.res.group, &t.res.plural, t.name())),
        None => Err(t.not_found()),
    }
}

/// The part of the configuration this apply owns: only status through the status
/// subresource, everything but status through the main resource of a kind that has one.
fn applied_fields(t: &Target, config: &Value) -> Value {
    let mut view = managed::managed_view(config);
    if let Some(m) = view.as_object_mut() {
        if t.is_status() {
            let status = m.remove("status");
            m.clear();
            if let Some(s) = status {
                m.insert("status".into(), s);
            }
        } else if t.res.status_subresource {
            m.remove("status");
        }
    }
    view
}

/// What an apply that creates merges into: an object with only its identity.
fn empty_object(t: &Target) -> Value {
    let mut meta = Map::new();
    meta.insert("name".into(), json!(t.name()));
    if t.res.namespaced {
        meta.insert("namespace".into(), json!(t.ns()));
    }
    json!({"apiVersion": t.res.storage_api_version(), "kind": t.res.kind, "metadata": meta})
}

/// 409 naming each conflicting field and its manager, as structured-merge-diff reports them.
fn conflict_error(t: &Target, conflicts: &[managed::Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": fieldpath::path_string(&c.path),
            })
        })
        .collect();
    let mut details = json!({"name": t.name(), "kind": t.res.plural, "causes": causes});
    if !t.res.group.is_empty() {
        details["group"] = json!(t.res.group);
    }
    ApiError::new(409, "Conflict", managed::conflict_message(conflicts)).with_details(details)
}
