//! Custom resource admission like the apiextensions server: pruning of unknown fields, dropping
//! `null`s of non-nullable fields, structural defaulting, OpenAPI v3 schema validation (through
//! the `jsonschema` crate, on a translated schema), and CEL `x-kubernetes-validations` (through
//! `kube-cel`). Errors carry the field path and the message format of apimachinery's
//! `field.Error`, because clients and tests match on them.

use serde_json::{Map, Value, json};

use crate::error::Cause;

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

/// Compiles a version schema. CEL rules that do not compile reject the CRD, like the real
/// apiextensions validation does.
pub fn compile(raw: &Value, field: &str) -> Result<CompiledSchema, Vec<Cause>> {
    let mut causes = Vec::new();
    let compiled_cel = kube_cel::compile_schema(raw);
    let mut cel_errors = Vec::new();
    collect_cel_errors(&compiled_cel, &mut cel_errors);
    for err in cel_errors {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"object\": compilation failed: {err}"),
            field: format!("{field}.x-kubernetes-validations"),
        });
    }
    // Patterns are Go RE2 expressions (inline flags like `(?i)`, no look-around): the `regex`
    // crate has the same syntax, unlike the default ECMA-flavoured engine.
    let structural = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft4)
        .should_validate_formats(true)
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&to_json_schema(raw));
    let structural = match structural {
        Ok(v) => Some(v),
        Err(e) => {
            // The real server accepts any schema Go can compile; rather than reject a CRD it
            // would take, skip structural checks for this version and say so.
            tracing::warn!(field, error = %e, "schema not checkable by the emulator; structural validation skipped");
            None
        }
    };
    if causes.is_empty() {
        Ok(CompiledSchema {
            raw: raw.clone(),
            structural,
        })
    } else {
        Err(causes)
    }
}

fn collect_cel_errors(c: &kube_cel::CompiledSchema, out: &mut Vec<String>) {
    out.extend(c.compilation_errors().iter().map(|e| e.to_string()));
    let children = c
        .properties
        .values()
        .chain(c.items.as_deref())
        .chain(c.additional_properties.as_deref())
        .chain(c.all_of.iter())
        .chain(c.one_of.iter())
        .chain(c.any_of.iter());
    for child in children {
        collect_cel_errors(child, out);
    }
}

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

/// Renders a bad value like apimachinery's field errors do.
fn value_str(v: &Value) -> String {
    match v {
        Value::String(s) => serde_json::to_string(s).unwrap_or_default(),
        Value::Object(_) => "\"object\"".into(),
        Value::Array(_) => "\"array\"".into(),
        Value::Null => "\"null\"".into(),
        other => other.to_string(),
    }
}

fn type_name(v: &Value) -> &'static str {
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

fn structural_causes(validator: &jsonschema::Validator, obj: &Value) -> Vec<Cause> {
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

fn value_at<'a>(obj: &'a Value, field: &str) -> Option<&'a Value> {
    let re = regex::Regex::new(r"([^.\[\]]+)|\[(\d+)\]").ok()?;
    let mut cur = obj;
    for c in re.captures_iter(field) {
        cur = if let Some(k) = c.get(1) {
            cur.get(k.as_str())?
        } else {
            let i: usize = c.get(2)?.as_str().parse().ok()?;
            cur.get(i)?
        };
    }
    Some(cur)
}

fn cel_causes(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let Err(errors) = kube_cel::validate(schema, obj, old) else {
        return Vec::new();
    };
    errors
        .into_iter()
        .map(|e| {
            let field = e.field_path.trim_start_matches('.').to_string();
            let reason = e
                .reason
                .clone()
                .unwrap_or_else(|| "FieldValueInvalid".into());
            let message = match reason.as_str() {
                "FieldValueForbidden" => format!("Forbidden: {}", e.message),
                "FieldValueRequired" => format!("Required value: {}", e.message),
                "FieldValueDuplicate" => format!("Duplicate value: {}", e.message),
                _ => {
                    // The bad value printed is the type of the schema node the rule sits on
                    // (`sts.Type` in apiextensions' cel/validation.go), also when `fieldPath`
                    // points the error at a field below it.
                    let t = rule_node_type(schema, &e.rule)
                        .or_else(|| value_at(obj, &field).map(|v| type_name(v).to_string()))
                        .unwrap_or_else(|| "object".into());
                    format!("Invalid value: \"{t}\": {}", e.message)
                }
            };
            Cause {
                reason,
                message,
                field,
            }
        })
        .collect()
}

/// The `type` of the schema node that carries CEL rule `rule` (the first such node).
fn rule_node_type(schema: &Value, rule: &str) -> Option<String> {
    let obj = schema.as_object()?;
    let here = obj
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .is_some_and(|rules| {
            rules
                .iter()
                .any(|r| r.get("rule").and_then(Value::as_str) == Some(rule))
        });
    if here {
        return Some(
            obj.get("type")
                .and_then(Value::as_str)
                .unwrap_or("object")
                .to_string(),
        );
    }
    let children = obj
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(|p| p.values())
        .chain(obj.get("items"))
        .chain(obj.get("additionalProperties").filter(|a| a.is_object()));
    for child in children {
        if let Some(t) = rule_node_type(child, rule) {
            return Some(t);
        }
    }
    None
}

/// Schema errors that stop CEL evaluation, as `hasBlockingErr` in apiextensions'
/// `pkg/registry/customresource/strategy.go`: wrong type, required, enum, too long, too many.
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
        Some(v) => structural_causes(v, &view),
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
        causes.extend(cel_causes(&schema.raw, obj, old));
    }
    causes
}

const DNS1123_SUBDOMAIN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
const DNS1123_LABEL: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
const LABEL_VALUE: &str = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
const QUALIFIED_NAME: &str = r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$";

fn matches(re: &str, s: &str) -> bool {
    regex::Regex::new(re).is_ok_and(|r| r.is_match(s))
}

/// ObjectMeta validation shared by all kinds: the name (a DNS-1123 subdomain, or label for
/// namespaces) and label syntax.
pub fn validate_metadata(obj: &Value, name_is_label: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = crate::object::name(obj);
    let (re, max, what, example) = if name_is_label {
        (
            DNS1123_LABEL,
            63,
            "a lowercase RFC 1123 label",
            "'my-name',  or '123-abc'",
        )
    } else {
        (
            DNS1123_SUBDOMAIN,
            253,
            "a lowercase RFC 1123 subdomain",
            "'example.com'",
        )
    };
    if name.len() > max {
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: must be no more than {max} characters",
                value_str(&json!(name))
            ),
            field: "metadata.name".into(),
        });
    } else if !matches(re, name) {
        let chars = if name_is_label { "'-'" } else { "'-' or '.'" };
        causes.push(Cause {
            reason: "FieldValueInvalid".into(),
            message: format!(
                "Invalid value: {}: {what} must consist of lower case alphanumeric characters, {chars}, \
                 and must start and end with an alphanumeric character (e.g. {example}, regex used for \
                 validation is '{}')",
                value_str(&json!(name)),
                re.trim_start_matches('^').trim_end_matches('$')
            ),
            field: "metadata.name".into(),
        });
    }
    if let Some(labels) = crate::object::labels(obj) {
        for (k, v) in labels {
            let key_name = k.rsplit('/').next().unwrap_or(k);
            if key_name.len() > 63 || !matches(QUALIFIED_NAME, key_name) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character", value_str(&json!(k))),
                    field: "metadata.labels".into(),
                });
            }
            let Some(s) = v.as_str() else {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!(
                        "Invalid value: {}: label values must be strings",
                        value_str(v)
                    ),
                    field: format!("metadata.labels.{k}"),
                });
                continue;
            };
            if s.len() > 63 || !matches(LABEL_VALUE, s) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: format!("Invalid value: {}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, and be at most 63 characters", value_str(v)),
                    field: "metadata.labels".into(),
                });
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn names() {
        assert!(validate_metadata(&json!({"metadata": {"name": "ok.name-1"}}), false).is_empty());
        let c = validate_metadata(&json!({"metadata": {"name": "Bad_Name"}}), false);
        assert_eq!(c[0].field, "metadata.name");
        assert!(!validate_metadata(&json!({"metadata": {"name": "a.b"}}), true).is_empty());
    }
}
