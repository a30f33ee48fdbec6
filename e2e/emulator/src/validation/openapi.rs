//! OpenAPI v3 schema validation of custom resources through the `jsonschema` crate: the CRD's
//! structural schema is translated into a draft-4 JSON Schema once, and each error is turned
//! into the `Cause` the apiextensions server would report.

use serde_json::{Map, Value, json};

use super::field_error::{type_name, value_str};
use crate::error::Cause;

/// Formats that the API server checks and that mean the same in JSON Schema; others (`int32`,
/// `byte`, Go-style `duration`, ...) are not checked.
const CHECKED_FORMATS: &[&str] = &[
    "date-time",
    "date",
    "uuid",
    "email",
    "ipv4",
    "ipv6",
    "hostname",
];

/// Translates an OpenAPI v3 (Kubernetes structural) schema into a draft-4 JSON Schema.
fn to_json_schema(s: &Value) -> Value {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut out = Map::new();
    for (k, v) in obj {
        match k.as_str() {
            "properties" | "patternProperties" => {
                let props = v
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(pk, pv)| (pk.clone(), to_json_schema(pv)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" | "not" => {
                let t = match v {
                    Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
                    other => to_json_schema(other),
                };
                out.insert(k.clone(), t);
            }
            "allOf" | "anyOf" | "oneOf" => {
                let t = v
                    .as_array()
                    .map(|a| a.iter().map(to_json_schema).collect())
                    .unwrap_or_default();
                out.insert(k.clone(), Value::Array(t));
            }
            "format" => {
                if v.as_str().is_some_and(|f| CHECKED_FORMATS.contains(&f)) {
                    out.insert(k.clone(), v.clone());
                }
            }
            "nullable" | "default" | "description" | "example" | "externalDocs" | "title" => {}
            _ if k.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    if obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        out.remove("type");
        out.entry("anyOf")
            .or_insert_with(|| json!([{"type": "integer"}, {"type": "string"}]));
    }
    Value::Object(out)
}

/// Compiles the translated schema, or `None` when `jsonschema` cannot: the real server accepts
/// any schema Go can compile, so rather than reject a CRD it would take, structural checks of
/// this version are skipped (and a warning says so).
pub(super) fn compile(raw: &Value, field: &str) -> Option<jsonschema::Validator> {
    // Patterns are Go RE2 expressions (inline flags like `(?i)`, no look-around): the `regex`
    // crate has the same syntax, unlike the default ECMA-flavoured engine.
    let built = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&to_json_schema(raw));
    match built {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!(field, error = %e, "schema not checkable by the emulator; structural validation skipped");
            None
        }
    }
}

/// An instance location as a Kubernetes field path: `spec.items[0].name`.
fn json_field_path(loc: &jsonschema::paths::Location) -> String {
    let mut s = String::new();
    for seg in loc.iter() {
        match seg {
            jsonschema::paths::LocationSegment::Property(p) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(&p);
            }
            jsonschema::paths::LocationSegment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// Every schema error of `obj`, with the reason, field and message the apiextensions server
/// (go-openapi's validator) would give it.
pub(super) fn causes(validator: &jsonschema::Validator, obj: &Value) -> Vec<Cause> {
    use jsonschema::error::ValidationErrorKind as K;
    let mut causes = Vec::new();
    for err in validator.iter_errors(obj) {
        let path = json_field_path(err.instance_path());
        let value = err.instance().as_ref().clone();
        let bad = value_str(&value);
        let (reason, field, message) = match err.kind() {
            K::Required { property } => {
                let prop = property
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| property.to_string());
                let field = if path.is_empty() {
                    prop
                } else {
                    format!("{path}.{prop}")
                };
                ("FieldValueRequired", field, "Required value".to_string())
            }
            K::Enum { options } => {
                let supported: Vec<String> = options
                    .as_array()
                    .map(|a| a.iter().map(value_str).collect())
                    .unwrap_or_default();
                (
                    "FieldValueNotSupported",
                    path.clone(),
                    format!(
                        "Unsupported value: {bad}: supported values: {}",
                        supported.join(", ")
                    ),
                )
            }
            K::Type { kind } => {
                let expected = match kind {
                    jsonschema::error::TypeKind::Single(t) => t.to_string(),
                    jsonschema::error::TypeKind::Multiple(ts) => format!("{ts:?}"),
                };
                (
                    "FieldValueTypeInvalid",
                    path.clone(),
                    format!(
                        "Invalid value: {bad}: {path} in body must be of type {expected}: \"{}\"",
                        type_name(&value)
                    ),
                )
            }
            K::Pattern { pattern } => (
                "FieldValueInvalid",
                path.clone(),
                format!("Invalid value: {bad}: {path} in body should match '{pattern}'"),
            ),
            K::Format { format } => (
                "FieldValueInvalid",
                path.clone(),
                format!("Invalid value: {bad}: {path} in body must be of type {format}: {bad}"),
            ),
            K::MaxLength { limit } => (
                "FieldValueTooLong",
                path.clone(),
                format!("Too long: may not be more than {limit} bytes"),
            ),
            K::MinLength { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!(
                    "Invalid value: {bad}: {path} in body should be at least {limit} chars long"
                ),
            ),
            K::MaxItems { limit } => (
                "FieldValueTooMany",
                path.clone(),
                format!(
                    "Too many: {}: must have at most {limit} items",
                    value.as_array().map(Vec::len).unwrap_or(0)
                ),
            ),
            K::MinItems { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!(
                    "Invalid value: {}: {path} in body should have at least {limit} items",
                    value.as_array().map(Vec::len).unwrap_or(0)
                ),
            ),
            K::MaxProperties { limit } => (
                "FieldValueTooMany",
                path.clone(),
                format!(
                    "Too many: {}: must have at most {limit} items",
                    value.as_object().map(Map::len).unwrap_or(0)
                ),
            ),
            K::MinProperties { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!(
                    "Invalid value: {bad}: {path} in body should have at least {limit} properties"
                ),
            ),
            K::Maximum { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!(
                    "Invalid value: {bad}: {path} in body should be less than or equal to {limit}"
                ),
            ),
            K::Minimum { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!(
                    "Invalid value: {bad}: {path} in body should be greater than or equal to {limit}"
                ),
            ),
            K::ExclusiveMaximum { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!("Invalid value: {bad}: {path} in body should be less than {limit}"),
            ),
            K::ExclusiveMinimum { limit } => (
                "FieldValueInvalid",
                path.clone(),
                format!("Invalid value: {bad}: {path} in body should be greater than {limit}"),
            ),
            _ => (
                "FieldValueInvalid",
                path.clone(),
                format!("Invalid value: {bad}: {err}"),
            ),
        };
        causes.push(Cause {
            reason: reason.into(),
            message,
            field,
        });
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_keeps_checks_and_drops_kubernetes_extensions() {
        let schema = json!({
            "type": "object",
            "description": "d",
            "x-kubernetes-preserve-unknown-fields": true,
            "properties": {
                "port": {"x-kubernetes-int-or-string": true},
                "when": {"type": "string", "format": "date-time", "nullable": true},
                "size": {"type": "string", "format": "int32", "default": "1"}
            }
        });
        assert_eq!(
            to_json_schema(&schema),
            json!({
                "type": "object",
                "properties": {
                    "port": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
                    "when": {"type": "string", "format": "date-time"},
                    "size": {"type": "string"}
                }
            })
        );
    }
}
