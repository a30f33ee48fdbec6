//! How apimachinery's `field.Error` prints values, shared by every validator so that messages
//! match the real server's character for character (clients and tests match on them).

use serde_json::Value;

/// Renders a bad value like apimachinery's field errors do.
pub(super) fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

/// The JSON Schema type name of a value, as type errors print it.
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::Null => "null",
    }
}
