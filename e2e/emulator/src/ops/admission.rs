//! What every write does to a body before it is stored, in the API server's order: check and
//! set its type meta, run the per-kind hooks, prune and default custom resources, normalise
//! ObjectMeta, validate, and check the namespace it lands in.

use serde_json::{Value, json};

use super::target::Target;
use crate::builtin;
use crate::crd;
use crate::error::{ApiError, Cause};
use crate::object;
use crate::resources::ResourceDef;
use crate::store::Store;
use crate::validation;

/// Checks `apiVersion`/`kind` of a request body against the endpoint and sets the stored ones.
pub(super) fn normalize_type_meta(obj: &mut Value, t: &Target) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    if let Some(kind) = m.get("kind").and_then(Value::as_str)
        && kind != t.res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the endpoint ({})",
            t.res.kind
        )));
    }
    if let Some(av) = m.get("apiVersion").and_then(Value::as_str) {
        let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != t.res.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.res.api_version(&t.version)
            )));
        }
    }
    m.insert("apiVersion".into(), json!(t.res.storage_api_version()));
    m.insert("kind".into(), json!(t.res.kind));
    Ok(())
}

/// `Kind.group "name" is invalid: ...` for the target's kind.
pub(super) fn invalid(t: &Target, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&t.res.kind, &t.res.group, name, causes)
}

/// The mutating half of admission: per-kind hooks, then (custom resources) pruning and
/// defaulting, then ObjectMeta normalisation. `old` is `None` on create.
pub(super) fn mutate(
    t: &Target,
    old: Option<&Value>,
    obj: &mut Value,
    strict: bool,
) -> Result<(), ApiError> {
    builtin::on_write(&t.res, old, obj);
    if t.res.custom {
        prune_and_default(t, obj, strict)?;
    }
    normalize_metadata(obj);
    Ok(())
}

/// Structural pruning and defaulting of custom resources; with `fieldValidation=Strict`,
/// unknown fields are a 400 instead of being pruned.
fn prune_and_default(t: &Target, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    let Some(schema) = t.schema() else {
        return Ok(());
    };
    if strict {
        let mut unknown = Vec::new();
        validation::unknown_fields(schema, obj, true, "", &mut unknown);
        if !unknown.is_empty() {
            let list: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
    }
    validation::prune(schema, obj, true);
    *obj = validation::apply_defaults(schema, obj);
    Ok(())
}

/// ObjectMeta round-trips through a Go struct with `omitempty` fields in the real server:
/// empty finalizers, owner references, labels and annotations are not stored.
fn normalize_metadata(obj: &mut Value) {
    let meta = object::metadata_mut(obj);
    meta.retain(|_, v| !v.is_null());
    for f in [
        "finalizers",
        "ownerReferences",
        "labels",
        "annotations",
        "managedFields",
    ] {
        let empty = match meta.get(f) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(f);
        }
    }
}

/// The validating half of admission. For a CRD also returns the resource it defines, to be
/// served once the CRD is stored.
pub(super) fn validate_object(
    t: &Target,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Option<ResourceDef>, ApiError> {
    let mut causes = validation::validate_metadata(obj, t.res.is_namespace());
    if let Some(old) = old {
        causes.extend(builtin::validate_update(&t.res, old, obj));
    }
    causes.extend(builtin::validate_event(&t.res, obj, old.is_none()));
    if t.res.custom
        && let Some(schema) = t.res.schema(&t.version)
    {
        causes.extend(validation::validate(schema, obj, old));
    }
    let mut defined = None;
    if t.res.is_crd() {
        match crd::resource_from_crd(obj) {
            Ok(def) => defined = Some(def),
            Err(c) => causes.extend(c),
        }
    }
    if causes.is_empty() {
        Ok(defined)
    } else {
        Err(invalid(t, object::name(obj), causes))
    }
}

/// New content needs a namespace that exists and is not being deleted.
pub(super) fn check_namespace(store: &Store, t: &Target) -> Result<(), ApiError> {
    if !t.res.namespaced {
        return Ok(());
    }
    let key = (String::new(), "namespaces".to_string());
    match store.get(&key, "", t.ns()) {
        None => Err(ApiError::not_found("", "namespaces", t.ns())),
        Some(ns) if object::is_terminating(ns) => Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
            crate::error::qualified_resource(&t.res.group, &t.res.plural),
            t.name(),
            t.ns()
        ))
        .with_details(json!({"name": t.name(), "kind": t.res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {} is being terminated", t.ns()), "field": "metadata.namespace"}]}))),
        Some(_) => Ok(()),
    }
}
