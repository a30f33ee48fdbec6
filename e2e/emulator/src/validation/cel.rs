//! CEL `x-kubernetes-validations` through `kube-cel`: rules are compiled with the CRD (a rule
//! that does not compile rejects it) and evaluated against each write, with `oldSelf` for
//! transition rules.

use serde_json::Value;

use super::field_error::type_name;
use crate::error::Cause;

/// The compilation errors of every rule in a version schema, as causes on `field`.
pub(super) fn compile_errors(raw: &Value, field: &str) -> Vec<Cause> {
    let mut errors = Vec::new();
    collect_errors(&kube_cel::compile_schema(raw), &mut errors);
    errors
        .into_iter()
        .map(|err| Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: \"object\": compilation failed: {err}"),
            field: format!("{field}.x-kubernetes-validations"),
        })
        .collect()
}

fn collect_errors(c: &kube_cel::CompiledSchema, out: &mut Vec<String>) {
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
        collect_errors(child, out);
    }
}

/// The value at a printed field path such as `spec.items[0].name`.
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

/// The rules `obj` breaks (with `old` for transition rules), as the apiextensions server
/// reports them: the rule's `reason` (default `FieldValueInvalid`), `fieldPath` and message.
pub(super) fn causes(schema: &Value, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
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
                    // (`sts.Type` in the apiextensions CEL validator), also when `fieldPath`
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
