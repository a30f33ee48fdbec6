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

/// events.k8s.io/v1 Event validation as the API server's core validation does it: every write
/// by the legacy rules (`legacyValidateEvent`), creates also strictly (`ValidateEventCreate`:
/// eventTime, type, no deprecated fields, series). Field paths are the internal (core) names the
/// server prints, e.g. `involvedObject.namespace` for `regarding.namespace` and `message` for
/// `note`.
pub fn validate_event(res: &ResourceDef, obj: &Value, creating: bool) -> Vec<crate::error::Cause> {
    let mut causes = Vec::new();
    if !(res.group == "events.k8s.io" && res.plural == "events") {
        return causes;
    }
    let s = |k: &str| obj.get(k).and_then(Value::as_str).unwrap_or_default();
    let (controller, message) = (s("reportingController"), s("note"));
    let involved_ns = obj
        .get("regarding")
        .and_then(|i| i.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ns = object::namespace(obj);
    let event_time = obj.get("eventTime").filter(|v| !v.is_null());
    let mut push = |reason: &str, field: &str, message: String| {
        causes.push(crate::error::Cause {
            reason: reason.into(),
            message,
            field: field.into(),
        })
    };
    let required = |push: &mut dyn FnMut(&str, &str, String), field: &str, value: &str| {
        if value.is_empty() {
            push("FieldValueRequired", field, "Required value".into());
        }
    };
    let too_long =
        |push: &mut dyn FnMut(&str, &str, String), field: &str, value: &str, max: usize| {
            if value.len() > max {
                push(
                    "FieldValueInvalid",
                    field,
                    format!("Invalid value: \"\": can have at most {max} characters"),
                );
            }
        };
    if event_time.is_none() {
        let mismatch = if involved_ns.is_empty() {
            !ns.is_empty() && ns != "default"
        } else {
            ns != involved_ns
        };
        if mismatch {
            push(
                "FieldValueInvalid",
                "involvedObject.namespace",
                format!("Invalid value: {involved_ns:?}: does not match event.namespace"),
            );
        }
    } else {
        if involved_ns.is_empty() && ns != "default" && ns != "kube-system" {
            push(
                "FieldValueInvalid",
                "involvedObject.namespace",
                format!("Invalid value: {involved_ns:?}: does not match event.namespace"),
            );
        }
        required(&mut push, "reportingController", controller);
        if !controller.is_empty() {
            let name = controller.rsplit('/').next().unwrap_or(controller);
            let ok = name.len() <= 63
                && regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
                    .is_ok_and(|r| r.is_match(name));
            if !ok {
                push(
                    "FieldValueInvalid",
                    "reportingController",
                    format!(
                        "Invalid value: {controller:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
                    ),
                );
            }
        }
        required(&mut push, "reportingInstance", s("reportingInstance"));
        too_long(&mut push, "reportingInstance", s("reportingInstance"), 128);
        required(&mut push, "action", s("action"));
        too_long(&mut push, "action", s("action"), 128);
        required(&mut push, "reason", s("reason"));
        too_long(&mut push, "reason", s("reason"), 128);
        too_long(&mut push, "message", message, 1024);
    }
    if creating {
        if event_time.is_none() {
            push("FieldValueRequired", "eventTime", "Required value".into());
        }
        let type_ = s("type");
        if type_ != "Normal" && type_ != "Warning" {
            push(
                "FieldValueInvalid",
                "type",
                format!("Invalid value: \"\": has invalid value: {type_}"),
            );
        }
        for (json_field, field) in [
            ("deprecatedFirstTimestamp", "firstTimestamp"),
            ("deprecatedLastTimestamp", "lastTimestamp"),
        ] {
            if obj.get(json_field).is_some_and(|v| !v.is_null()) {
                push(
                    "FieldValueInvalid",
                    field,
                    "Invalid value: \"\": needs to be unset".into(),
                );
            }
        }
        if obj
            .get("deprecatedCount")
            .and_then(Value::as_i64)
            .is_some_and(|c| c != 0)
        {
            push(
                "FieldValueInvalid",
                "count",
                "Invalid value: \"\": needs to be unset".into(),
            );
        }
        if let Some(series) = obj.get("series").filter(|v| !v.is_null()) {
            if series.get("count").and_then(Value::as_i64).unwrap_or(0) < 2 {
                push(
                    "FieldValueInvalid",
                    "series.count",
                    "Invalid value: \"\": should be at least 2".into(),
                );
            }
            if series.get("lastObservedTime").is_none_or(Value::is_null) {
                push(
                    "FieldValueRequired",
                    "series.lastObservedTime",
                    "Required value".into(),
                );
            }
        }
    }
    causes
}
