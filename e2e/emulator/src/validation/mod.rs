//! Custom resource admission like the apiextensions server: pruning of unknown fields, dropping
//! `null`s of non-nullable fields, structural defaulting ([`pruning`]), OpenAPI v3 schema
//! validation ([`openapi`], through the `jsonschema` crate on a translated schema), and CEL
//! `x-kubernetes-validations` ([`cel`], through `kube-cel`); plus the ObjectMeta checks every
//! kind gets ([`metadata`]). Errors carry the field path and the message format of
//! apimachinery's `field.Error`, because clients and tests match on them.

mod cel;
mod field_error;
mod metadata;
mod openapi;
mod pruning;

use serde_json::Value;

use crate::error::Cause;

pub use metadata::validate_metadata;
pub use pruning::{apply_defaults, prune, unknown_fields};

/// A custom resource version's schema, compiled once when its CRD is written.
pub struct CompiledSchema {
    pub raw: Value,
    structural: Option<jsonschema::Validator>,
}

impl std::fmt::Debug for CompiledSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledSchema").finish_non_exhaustive()
    }
}

/// Compiles a version schema. CEL rules that do not compile reject the CRD, like the real
/// apiextensions validation does.
pub fn compile(raw: &Value, field: &str) -> Result<CompiledSchema, Vec<Cause>> {
    let causes = cel::compile_errors(raw, field);
    let structural = openapi::compile(raw, field);
    if causes.is_empty() {
        Ok(CompiledSchema {
            raw: raw.clone(),
            structural,
        })
    } else {
        Err(causes)
    }
}

/// Schema errors that stop CEL evaluation, as `hasBlockingErr` of the apiextensions server's
/// custom resource strategy: wrong type, required, enum, too long, too many.
/// Other schema errors (pattern, format, minimum, ...) leave the types intact, so the rules run.
const BLOCKING_REASONS: &[&str] = &[
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTooLong",
    "FieldValueTooMany",
    "FieldValueTypeInvalid",
];

/// Validates a pruned and defaulted custom resource: schema first, then CEL rules, unless a
/// schema error means the object does not have the shape the rules were written for; then the
/// rules are skipped and one more error says so, exactly like the apiextensions server.
pub fn validate(schema: &CompiledSchema, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    // `null`s that survived pruning are nullable fields; JSON Schema would reject them by type.
    let mut view = obj.clone();
    crate::object::strip_nulls(&mut view);
    if let Some(m) = view.as_object_mut() {
        // ObjectMeta is validated by the server itself, not by the CRD schema's types.
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            meta.remove("managedFields");
        }
    }
    let mut causes = match &schema.structural {
        Some(v) => openapi::causes(v, &view),
        None => Vec::new(),
    };
    if causes
        .iter()
        .any(|c| BLOCKING_REASONS.contains(&c.reason.as_str()))
    {
        // `field.Invalid(nil, nil, ...)`: a nil path prints as `<nil>`, a nil value as "null".
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: "Invalid value: \"null\": some validation rules were not checked because \
                      the object was invalid; correct the existing errors to complete validation"
                .into(),
            field: "<nil>".into(),
        });
    } else {
        causes.extend(cel::causes(&schema.raw, obj, old));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["clientId"],
                    "x-kubernetes-validations": [{"rule": "self.replicas <= 5", "message": "too many replicas"}],
                    "properties": {
                        "clientId": {"type": "string", "pattern": "^[0-9a-f-]{36}$"},
                        "replicas": {"type": "integer", "default": 1},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "port": {"x-kubernetes-int-or-string": true},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_defaults_and_validates() {
        let raw = schema();
        let c = compile(&raw, "spec.versions[0].schema.openAPIV3Schema").expect("compiles");
        let mut obj = json!({
            "apiVersion": "x/v1", "kind": "X", "metadata": {"name": "a"},
            "spec": {"clientId": "nope", "unknown": 1, "port": "http", "free": {"any": {"thing": 1}}}
        });
        prune(&raw, &mut obj, true);
        assert!(obj["spec"].get("unknown").is_none());
        assert_eq!(obj["spec"]["free"]["any"]["thing"], 1);
        let obj = apply_defaults(&raw, &obj);
        assert_eq!(obj["spec"]["replicas"], 1);
        let causes = validate(&c, &obj, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.clientId");
        assert!(causes[0].message.contains("should match"), "{causes:?}");
    }

    #[test]
    fn cel_rule_names_field() {
        let raw = schema();
        let c = compile(&raw, "s").expect("compiles");
        let obj = json!({"metadata": {"name": "a"}, "spec": {"clientId": "00000000-0000-0000-0000-000000000000", "replicas": 9}});
        let causes = validate(&c, &obj, None);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec");
        assert_eq!(
            causes[0].message,
            "Invalid value: \"object\": too many replicas"
        );
    }

    fn tenant_like_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "x-kubernetes-validations": [{
                        "rule": "!has(self.git) || self.git.url.startsWith('https://dev.azure.com/')",
                        "fieldPath": ".git.url",
                        "message": "needs an Azure DevOps URL"
                    }],
                    "properties": {
                        "clientId": {"type": "string", "pattern": "^[0-9a-f-]{36}$"},
                        "mode": {"type": "string", "enum": ["A", "B"]},
                        "items": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                        "git": {"type": "object", "properties": {"url": {"type": "string"}}}
                    }
                }
            }
        })
    }

    #[test]
    fn pattern_errors_do_not_stop_cel_rules() {
        let c = compile(&tenant_like_schema(), "s").expect("compiles");
        let obj = json!({"metadata": {"name": "a"}, "spec": {
            "clientId": "nope", "git": {"url": "https://github.com/x"}}});
        let causes = validate(&c, &obj, None);
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, ["spec.clientId", "spec.git.url"], "{causes:?}");
        // The value printed is the type of the node holding the rule (spec: an object), not of
        // the field `fieldPath` names.
        assert_eq!(
            causes[1].message,
            "Invalid value: \"object\": needs an Azure DevOps URL"
        );
    }

    #[test]
    fn blocking_schema_errors_skip_cel_rules_and_say_so() {
        let c = compile(&tenant_like_schema(), "s").expect("compiles");
        for spec in [
            json!({"items": ["a", "b", "c"], "git": {"url": "https://github.com/x"}}),
            json!({"mode": "C", "git": {"url": "https://github.com/x"}}),
        ] {
            let obj = json!({"metadata": {"name": "a"}, "spec": spec});
            let causes = validate(&c, &obj, None);
            assert_eq!(causes.len(), 2, "{causes:?}");
            assert!(
                !causes.iter().any(|c| c.field == "spec.git.url"),
                "{causes:?}"
            );
            assert_eq!(causes[1].field, "<nil>");
            assert!(
                causes[1]
                    .message
                    .contains("some validation rules were not checked"),
                "{causes:?}"
            );
        }
    }
}
