//! Changing an object field by field: the server-side apply merge, removing a field a manager
//! stopped applying, and whether a field is there at all.

use serde_json::Value;

use super::path::{Path, PathElement};
use super::shape::{ListType, Shape, effective_list_type};

/// Server-side apply merge of a configuration into a live object: maps merge per key,
/// associative lists per item key, sets by union, everything else is replaced.
pub fn merge(live: &Value, config: &Value, shape: Shape, path: &mut Path) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) if !shape.map_is_atomic() => {
            let mut out = l.clone();
            for (k, cv) in c {
                path.push(PathElement::Field(k.clone()));
                let merged = match l.get(k) {
                    Some(lv) => merge(lv, cv, shape.field(k), path),
                    None => cv.clone(),
                };
                path.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Value::Array(l), Value::Array(c)) => {
            match (
                effective_list_type(l, &shape, path),
                effective_list_type(c, &shape, path),
            ) {
                (ListType::Map(keys), ListType::Map(_)) => {
                    let mut out = l.clone();
                    for ci in c {
                        let ck = PathElement::key_of(ci, &keys);
                        let pos = out
                            .iter()
                            .position(|li| PathElement::key_of(li, &keys) == ck);
                        match (pos, ck) {
                            (Some(p), Some(k)) => {
                                path.push(k);
                                out[p] = merge(&out[p], ci, shape.items(), path);
                                path.pop();
                            }
                            _ => out.push(ci.clone()),
                        }
                    }
                    Value::Array(out)
                }
                (ListType::Set, ListType::Set) => {
                    let mut out = l.clone();
                    for ci in c {
                        if !out.contains(ci) {
                            out.push(ci.clone());
                        }
                    }
                    Value::Array(out)
                }
                _ => config.clone(),
            }
        }
        _ => config.clone(),
    }
}

/// Removes the field at `path` from `obj` (an associative-list item, a set member or a map
/// member). Returns whether something was removed.
pub fn remove_path(obj: &mut Value, path: &[PathElement], shape: Shape, prefix: &mut Path) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (first, obj) {
        (PathElement::Field(f), Value::Object(m)) => {
            if rest.is_empty() {
                return m.remove(f).is_some();
            }
            let child_shape = shape.field(f);
            prefix.push(first.clone());
            let r = m
                .get_mut(f)
                .is_some_and(|child| remove_path(child, rest, child_shape, prefix));
            prefix.pop();
            r
        }
        (PathElement::Key(_), Value::Array(list)) => {
            let ListType::Map(keys) = shape.list_type(prefix) else {
                return false;
            };
            let Some(pos) = list
                .iter()
                .position(|i| PathElement::key_of(i, &keys).as_ref() == Some(first))
            else {
                return false;
            };
            if rest.is_empty() {
                list.remove(pos);
                return true;
            }
            prefix.push(first.clone());
            let r = remove_path(&mut list[pos], rest, shape.items(), prefix);
            prefix.pop();
            r
        }
        (PathElement::Value(_), Value::Array(list)) => {
            let before = list.len();
            list.retain(|i| &PathElement::value_of(i) != first);
            list.len() != before
        }
        _ => false,
    }
}

/// Whether `path` names something present in `obj`.
pub fn path_exists(obj: &Value, path: &[PathElement], shape: Shape, prefix: &mut Path) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return true;
    };
    let found = match (first, obj) {
        (PathElement::Field(f), Value::Object(m)) => m.get(f).map(|c| (c, shape.field(f))),
        (PathElement::Key(_), Value::Array(list)) => match shape.list_type(prefix) {
            ListType::Map(keys) => list
                .iter()
                .find(|i| PathElement::key_of(i, &keys).as_ref() == Some(first))
                .map(|c| (c, shape.items())),
            _ => None,
        },
        (PathElement::Value(_), Value::Array(list)) => {
            return rest.is_empty() && list.iter().any(|i| &PathElement::value_of(i) == first);
        }
        _ => None,
    };
    match found {
        Some((child, child_shape)) => {
            prefix.push(first.clone());
            let r = path_exists(child, rest, child_shape, prefix);
            prefix.pop();
            r
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_associative_lists() {
        let live = json!({"status": {"conditions": [{"type": "A", "status": "False"}, {"type": "B", "status": "True"}]}});
        let cfg = json!({"status": {"conditions": [{"type": "A", "status": "True"}]}});
        let m = merge(&live, &cfg, Shape::new(None), &mut Vec::new());
        assert_eq!(
            m,
            json!({"status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}})
        );
    }
}
