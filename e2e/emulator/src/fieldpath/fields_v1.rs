//! The `FieldsV1` wire format of managedFields: a tree of `f:<field>`, `k:<keys>` and
//! `v:<value>` members, with `.` marking a node that is itself owned besides its children.

use serde_json::{Map, Value};

use super::path::{FieldSet, Path, PathElement};

fn elem_str(e: &PathElement) -> String {
    match e {
        PathElement::Field(f) => format!("f:{f}"),
        PathElement::Key(k) => format!("k:{k}"),
        PathElement::Value(v) => format!("v:{v}"),
    }
}

/// Renders a set in the `FieldsV1` format.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for (i, e) in path.iter().enumerate() {
            let entry = node
                .entry(elem_str(e))
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(child) = entry else {
                break;
            };
            if i + 1 == path.len()
                && set
                    .range(path.clone()..)
                    .nth(1)
                    .is_some_and(|next| next.starts_with(path))
            {
                child.insert(".".into(), Value::Object(Map::new()));
            }
            node = child;
        }
    }
    Value::Object(root)
}

fn parse_elem(s: &str) -> Option<PathElement> {
    let (prefix, rest) = s.split_at_checked(2)?;
    match prefix {
        "f:" => Some(PathElement::Field(rest.to_string())),
        "k:" => {
            // Re-serialize so the key compares equal to ours whatever spacing the client used.
            let v: Value = serde_json::from_str(rest).ok()?;
            serde_json::to_string(&v).ok().map(PathElement::Key)
        }
        "v:" => {
            let v: Value = serde_json::from_str(rest).ok()?;
            Some(PathElement::value_of(&v))
        }
        _ => None,
    }
}

/// Parses a `FieldsV1` tree into a set.
pub fn from_fields_v1(v: &Value) -> FieldSet {
    fn walk(node: &Map<String, Value>, path: &mut Path, out: &mut FieldSet) {
        for (k, child) in node {
            if k == "." {
                out.insert(path.clone());
                continue;
            }
            let Some(e) = parse_elem(k) else { continue };
            path.push(e);
            match child.as_object() {
                Some(m) if !m.is_empty() => walk(m, path, out),
                _ => {
                    out.insert(path.clone());
                }
            }
            path.pop();
        }
    }
    let mut out = FieldSet::new();
    if let Some(m) = v.as_object() {
        walk(m, &mut Vec::new(), &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fieldpath::{Shape, to_set};
    use serde_json::json;

    fn set_of(v: &Value) -> FieldSet {
        let mut out = FieldSet::new();
        to_set(v, Shape::new(None), &mut Vec::new(), &mut out);
        out
    }

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({
            "metadata": {"labels": {"a": "1"}, "finalizers": ["x"]},
            "spec": {"list": [1, 2], "m": {}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}
        });
        let set = set_of(&obj);
        let f = to_fields_v1(&set);
        assert_eq!(
            f,
            json!({
                "f:metadata": {"f:labels": {"f:a": {}}, "f:finalizers": {"v:\"x\"": {}}},
                "f:spec": {"f:list": {}, "f:m": {}},
                "f:status": {"f:conditions": {"k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}}}
            })
        );
        assert_eq!(from_fields_v1(&f), set);
    }
}
