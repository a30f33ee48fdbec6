//! Per-kind behaviour of built-in resources that the generic write path does not cover.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::crd;
use crate::object;
use crate::resources::ResourceDef;

/// Adjusts an object about to be written (created when `old` is `None`).
pub fn on_write(res: &ResourceDef, old: Option<&Value>, obj: &mut Value) {
    match (res.group.as_str(), res.plural.as_str()) {
        ("", "secrets") => secret(obj),
        ("", "namespaces") => namespace(old, obj),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let status = crd::status(obj, old);
            if let Some(m) = obj.as_object_mut() {
                m.insert("status".into(), status);
            }
        }
        _ => {}
    }
}

/// `stringData` is write-only: merged into `data`, base64-encoded.
fn secret(obj: &mut Value) {
    let Some(m) = obj.as_object_mut() else { return };
    if let Some(Value::Object(string_data)) = m.remove("stringData") {
        let data = m.entry("data").or_insert_with(|| Value::Object(Map::new()));
        if !data.is_object() {
            *data = Value::Object(Map::new());
        }
        if let Value::Object(data) = data {
            for (k, v) in string_data {
                let s = v.as_str().unwrap_or_default().to_string();
                data.insert(
                    k,
                    json!(base64::engine::general_purpose::STANDARD.encode(s)),
                );
            }
        }
    }
    m.entry("type").or_insert_with(|| json!("Opaque"));
}

/// Namespaces carry the `kubernetes` finalizer the namespace controller removes, phase Active
/// until deleted, and the immutable `kubernetes.io/metadata.name` label.
fn namespace(old: Option<&Value>, obj: &mut Value) {
    let name = object::name(obj).to_string();
    let labels = object::metadata_mut(obj)
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(l) = labels {
        l.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    let Some(m) = obj.as_object_mut() else { return };
    match old {
        None => {
            m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            m.insert("status".into(), json!({"phase": "Active"}));
        }
        Some(old) => {
            // spec.finalizers belongs to the namespace controller (the /finalize subresource).
            if let Some(spec) = old.get("spec") {
                m.insert("spec".into(), spec.clone());
            }
        }
    }
}

/// Discovery verbs of every emulated resource.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// Update rules of built-in kinds: ConfigMaps and Secrets marked `immutable` keep their data.
pub fn validate_update(res: &ResourceDef, old: &Value, new: &Value) -> Vec<crate::error::Cause> {
    let mut causes = Vec::new();
    if !(res.group.is_empty() && matches!(res.plural.as_str(), "configmaps" | "secrets")) {
        return causes;
    }
    if old.get("immutable") != Some(&Value::Bool(true)) {
        return causes;
    }
    for field in ["data", "binaryData"] {
        if old.get(field) != new.get(field) {
            causes.push(crate::error::Cause {
                reason: "FieldValueForbidden".into(),
                message: "Forbidden: field is immutable when `immutable` is set".into(),
                field: field.into(),
            });
        }
    }
    if new.get("immutable") != Some(&Value::Bool(true)) {
        causes.push(crate::error::Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: field is immutable when `immutable` is set".into(),
            field: "immutable".into(),
        });
    }
    causes
}
