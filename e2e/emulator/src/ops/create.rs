//! Create (POST), and the create half of server-side apply.

use serde_json::{Map, Value, json};

use super::admission::{self, invalid};
use super::ownership::{self, Ownership};
use super::target::{Target, WriteOptions};
use crate::error::{ApiError, Cause};
use crate::object;
use crate::store::Store;

pub fn create(
    store: &mut Store,
    t: &Target,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "create is not supported on a subresource",
        ));
    }
    admission::normalize_type_meta(&mut body, t)?;
    let t = Target {
        name: None,
        ..t.clone()
    };
    finish_create(store, &t, body, Ownership::Update, opts)
}

/// Stores a new object. `t.name` is the name on the URL, if any (apply creates by name).
pub(super) fn finish_create(
    store: &mut Store,
    t: &Target,
    mut obj: Value,
    own: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let res = t.res.clone();
    let name = assign_identity(t, object::metadata_mut(&mut obj))?;
    let t = &Target {
        name: Some(name.clone()),
        ..t.clone()
    };
    if res.custom
        && res.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        // Status is written through its subresource only, not on create.
        m.remove("status");
    }
    admission::mutate(t, None, &mut obj, opts.strict)?;
    let entries = ownership::after_create(t, opts, own, &obj);
    ownership::write_managed_fields(&mut obj, &entries);

    let defined = admission::validate_object(t, &obj, None)?;
    admission::check_namespace(store, t)?;
    let key = res.key();
    if store.get(&key, t.ns(), &name).is_some() {
        return Err(ApiError::already_exists(&res.group, &res.plural, &name));
    }
    let stored = store.put(&key, obj, None);
    if let Some(def) = defined {
        store.registry.register(def);
    }
    Ok(res.convert(stored, &t.version))
}

/// Names the new object and sets the metadata the server owns: namespace, uid,
/// creationTimestamp, generation. Returns the name.
fn assign_identity(t: &Target, meta: &mut Map<String, Value>) -> Result<String, ApiError> {
    let name = new_name(t, meta)?;
    meta.insert("name".into(), json!(name));
    if t.res.namespaced {
        if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
            && !ns.is_empty()
            && ns != t.ns()
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        meta.insert("namespace".into(), json!(t.ns()));
    } else {
        meta.remove("namespace");
    }
    for f in [
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "generation",
    ] {
        meta.remove(f);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(object::now()));
    if t.res.has_generation {
        meta.insert("generation".into(), json!(1));
    }
    Ok(name)
}

/// `metadata.name`, or `generateName` plus a random suffix; it must match the URL's name.
fn new_name(t: &Target, meta: &Map<String, Value>) -> Result<String, ApiError> {
    let str_field = |f: &str| meta.get(f).and_then(Value::as_str).unwrap_or("");
    let mut name = str_field("name").to_string();
    if name.is_empty() {
        let generate = str_field("generateName");
        if generate.is_empty() {
            return Err(invalid(
                t,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    message: "Required value: name or generateName is required".into(),
                    field: "metadata.name".into(),
                }],
            ));
        }
        name = format!("{generate}{}", random_suffix());
    }
    if t.name.is_some() && t.name() != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    Ok(name)
}

/// Five characters from the alphabet of apimachinery's `utilrand.String` (no vowels, no
/// look-alikes), as `generateName` gets.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}
