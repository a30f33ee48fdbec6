//! Paths into an object and sets of them: the vocabulary of server-side apply.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

/// One step of a path into an object.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A map member: `f:name`.
    Field(String),
    /// An associative-list item by its keys: `k:{"type":"Ready"}` (canonical JSON, sorted keys).
    Key(String),
    /// A set-list item by value: `v:"foo"`.
    Value(String),
}

/// A field of an object, from its root.
pub type Path = Vec<PathElement>;
/// The fields a manager owns, a configuration sets or a change touches.
pub type FieldSet = BTreeSet<Path>;

impl PathElement {
    /// The key element of an associative-list item, or `None` when a key field is missing (the
    /// list is then handled as atomic).
    pub fn key_of(item: &Value, keys: &[String]) -> Option<PathElement> {
        let obj = item.as_object()?;
        let mut m = Map::new();
        for k in keys {
            m.insert(k.clone(), obj.get(k)?.clone());
        }
        serde_json::to_string(&Value::Object(m))
            .ok()
            .map(PathElement::Key)
    }

    /// The element of a set-list member.
    pub fn value_of(item: &Value) -> PathElement {
        PathElement::Value(serde_json::to_string(item).unwrap_or_default())
    }
}

/// A path as structured-merge-diff prints it in conflict messages: `.spec.conditions[type="Ready"].status`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            PathElement::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            PathElement::Key(k) => {
                let parts: Vec<String> = serde_json::from_str::<Map<String, Value>>(k)
                    .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                    .unwrap_or_default();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => s.push_str(&format!("[={v}]")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_strings() {
        let p = vec![
            PathElement::Field("status".into()),
            PathElement::Field("conditions".into()),
            PathElement::Key("{\"type\":\"Ready\"}".into()),
            PathElement::Field("status".into()),
        ];
        assert_eq!(path_string(&p), ".status.conditions[type=\"Ready\"].status");
    }
}
