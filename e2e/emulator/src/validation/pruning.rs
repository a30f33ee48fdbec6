//! What the apiextensions server does to a custom resource before validating it: pruning of
//! fields the schema does not know, dropping `null`s of non-nullable fields, and structural
//! defaulting.

use serde_json::Value;

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// Removes fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`) and
/// `null`s of non-nullable fields, as the API server does before defaulting and validation.
pub fn prune(schema: &Value, v: &mut Value, root: bool) {
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = root || is_true(schema, "x-kubernetes-embedded-resource");
            map.retain(|k, child| {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    // ObjectMeta and TypeMeta are the server's to check, not the CRD's.
                    if k == "metadata"
                        && !root
                        && let Some(ms) = props.and_then(|p| p.get(k))
                    {
                        prune(ms, child, false);
                    }
                    return true;
                }
                let child_schema = props
                    .and_then(|p| p.get(k))
                    .or_else(|| additional.filter(|a| a.is_object()));
                match child_schema {
                    Some(cs) => {
                        if child.is_null() && !is_true(cs, "nullable") {
                            return false;
                        }
                        prune(cs, child, false);
                        true
                    }
                    None => preserve || additional == Some(&Value::Bool(true)),
                }
            });
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for it in items.iter_mut() {
                    prune(is, it, false);
                }
            }
        }
        _ => {}
    }
}

/// Paths of the fields [`prune`] would remove as unknown (for `fieldValidation=Strict`).
pub fn unknown_fields(schema: &Value, v: &Value, root: bool, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = is_true(schema, "x-kubernetes-preserve-unknown-fields");
            let embedded = root || is_true(schema, "x-kubernetes-embedded-resource");
            for (k, child) in map {
                if embedded && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                match props
                    .and_then(|p| p.get(k))
                    .or_else(|| additional.filter(|a| a.is_object()))
                {
                    Some(cs) => unknown_fields(cs, child, false, &join(k), out),
                    None if preserve || additional == Some(&Value::Bool(true)) => {}
                    None => out.push(join(k)),
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = schema.get("items") {
                for (i, it) in items.iter().enumerate() {
                    unknown_fields(is, it, false, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// Structural defaulting: `default` of absent fields, recursively.
pub fn apply_defaults(schema: &Value, v: &Value) -> Value {
    kube_cel::apply_defaults(schema, v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strict_names_every_unknown_field() {
        let schema = json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string"}}}},
                    "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                }}
            }
        });
        let obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"items": [{"a": "1", "b": 2}], "free": {"c": 3}, "labels": {"d": "4"}, "e": 5},
            "status": {}
        });
        let mut unknown = Vec::new();
        unknown_fields(&schema, &obj, true, "", &mut unknown);
        assert_eq!(unknown, ["spec.e", "spec.items[0].b", "status"]);
    }

    #[test]
    fn prune_drops_nulls_unless_nullable() {
        let schema = json!({"type": "object", "properties": {
            "a": {"type": "string"},
            "b": {"type": "string", "nullable": true}
        }});
        let mut obj = json!({"a": null, "b": null});
        prune(&schema, &mut obj, false);
        assert_eq!(obj, json!({"b": null}));
    }
}
