//! How an object's maps and lists merge, from the schema of a custom resource (or, for every
//! kind, the well-known lists of ObjectMeta and the conditions convention).

use std::collections::BTreeSet;

use serde_json::Value;

use super::path::PathElement;

/// How a list merges.
#[derive(Clone, Debug, PartialEq)]
pub enum ListType {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// A position in an object's schema: the OpenAPI v3 schema node of a custom resource, or none
/// (built-in kinds), plus well-known list semantics that hold for every kind.
#[derive(Clone, Copy, Debug)]
pub struct Shape<'a> {
    schema: Option<&'a Value>,
}

impl<'a> Shape<'a> {
    pub fn new(schema: Option<&'a Value>) -> Self {
        Shape { schema }
    }

    pub fn field(&self, name: &str) -> Shape<'a> {
        let schema = self.schema.and_then(|s| {
            s.get("properties")
                .and_then(|p| p.get(name))
                .or_else(|| s.get("additionalProperties").filter(|a| a.is_object()))
        });
        Shape { schema }
    }

    pub fn items(&self) -> Shape<'a> {
        Shape {
            schema: self.schema.and_then(|s| s.get("items")),
        }
    }

    fn ext(&self, key: &str) -> Option<&'a Value> {
        self.schema.and_then(|s| s.get(key))
    }

    /// Maps are granular unless the schema says `x-kubernetes-map-type: atomic`.
    pub fn map_is_atomic(&self) -> bool {
        self.ext("x-kubernetes-map-type").and_then(Value::as_str) == Some("atomic")
    }

    pub fn list_type(&self, path: &[PathElement]) -> ListType {
        if let Some(lt) = self.ext("x-kubernetes-list-type").and_then(Value::as_str) {
            return match lt {
                "set" => ListType::Set,
                "map" => {
                    let keys: Vec<String> = self
                        .ext("x-kubernetes-list-map-keys")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|k| k.as_str().map(String::from))
                                .collect()
                        })
                        .unwrap_or_default();
                    if keys.is_empty() {
                        ListType::Atomic
                    } else {
                        ListType::Map(keys)
                    }
                }
                _ => ListType::Atomic,
            };
        }
        // Well-known associative lists of every kind (ObjectMeta and the conditions convention).
        let names: Vec<&str> = path
            .iter()
            .map(|p| match p {
                PathElement::Field(f) => f.as_str(),
                _ => "",
            })
            .collect();
        match names.as_slice() {
            ["metadata", "ownerReferences"] => ListType::Map(vec!["uid".into()]),
            ["metadata", "finalizers"] => ListType::Set,
            ["status", "conditions"] => ListType::Map(vec!["type".into()]),
            _ => ListType::Atomic,
        }
    }
}

/// The effective list type of a concrete list: associative/set only if every item is keyable
/// and keys are unique; otherwise atomic (the real server would reject such a list).
pub(super) fn effective_list_type(list: &[Value], shape: &Shape, path: &[PathElement]) -> ListType {
    match shape.list_type(path) {
        ListType::Map(keys) => {
            let mut seen = BTreeSet::new();
            for item in list {
                match PathElement::key_of(item, &keys) {
                    Some(k) if seen.insert(k.clone()) => {}
                    _ => return ListType::Atomic,
                }
            }
            ListType::Map(keys)
        }
        ListType::Set => {
            let mut seen = BTreeSet::new();
            if list
                .iter()
                .all(|i| !i.is_object() && !i.is_array() && seen.insert(PathElement::value_of(i)))
            {
                ListType::Set
            } else {
                ListType::Atomic
            }
        }
        ListType::Atomic => ListType::Atomic,
    }
}
