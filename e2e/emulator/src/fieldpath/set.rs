//! The fields an object sets, and the fields two versions of an object differ in.

use std::collections::BTreeSet;

use serde_json::Value;

use super::path::{FieldSet, Path, PathElement};
use super::shape::{ListType, Shape, effective_list_type};

/// The fields a value sets: leaves, atomic lists/maps, associative-list items (with their
/// fields) and set members. This is what an apply configuration owns.
pub fn to_set(value: &Value, shape: Shape, path: &mut Path, out: &mut FieldSet) {
    match value {
        Value::Object(m) if !shape.map_is_atomic() => {
            if m.is_empty() && !path.is_empty() {
                out.insert(path.clone());
            }
            for (k, v) in m {
                path.push(PathElement::Field(k.clone()));
                to_set(v, shape.field(k), path, out);
                path.pop();
            }
        }
        Value::Array(list) => match effective_list_type(list, &shape, path) {
            ListType::Map(keys) if !list.is_empty() => {
                for item in list {
                    if let Some(k) = PathElement::key_of(item, &keys) {
                        path.push(k);
                        out.insert(path.clone());
                        to_set(item, shape.items(), path, out);
                        path.pop();
                    }
                }
            }
            ListType::Set if !list.is_empty() => {
                for item in list {
                    path.push(PathElement::value_of(item));
                    out.insert(path.clone());
                    path.pop();
                }
            }
            _ => {
                out.insert(path.clone());
            }
        },
        _ => {
            if !path.is_empty() {
                out.insert(path.clone());
            }
        }
    }
}

/// Paths added, modified and removed between two versions of an object.
#[derive(Debug, Default)]
pub struct Diff {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Diff {
    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified).cloned().collect()
    }
}

fn all_of(value: &Value, shape: Shape, path: &mut Path, out: &mut FieldSet) {
    if !path.is_empty() {
        out.insert(path.clone());
    }
    to_set(value, shape, path, out);
}

pub fn compare(old: &Value, new: &Value, shape: Shape, path: &mut Path, diff: &mut Diff) {
    match (old, new) {
        (Value::Object(o), Value::Object(n)) if !shape.map_is_atomic() => {
            let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                let child = shape.field(k);
                match (o.get(k), n.get(k)) {
                    (Some(ov), Some(nv)) => compare(ov, nv, child, path, diff),
                    (Some(ov), None) => all_of(ov, child, path, &mut diff.removed),
                    (None, Some(nv)) => all_of(nv, child, path, &mut diff.added),
                    (None, None) => {}
                }
                path.pop();
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            let lt_old = effective_list_type(o, &shape, path);
            let lt_new = effective_list_type(n, &shape, path);
            match (lt_old, lt_new) {
                (ListType::Map(keys), ListType::Map(_)) => {
                    let index = |l: &Vec<Value>| -> Vec<(PathElement, Value)> {
                        l.iter()
                            .filter_map(|i| PathElement::key_of(i, &keys).map(|k| (k, i.clone())))
                            .collect()
                    };
                    let oi = index(o);
                    let ni = index(n);
                    let all: BTreeSet<&PathElement> =
                        oi.iter().chain(ni.iter()).map(|(k, _)| k).collect();
                    for k in all {
                        let ov = oi.iter().find(|(ok, _)| ok == k).map(|(_, v)| v);
                        let nv = ni.iter().find(|(nk, _)| nk == k).map(|(_, v)| v);
                        path.push(k.clone());
                        match (ov, nv) {
                            (Some(ov), Some(nv)) => compare(ov, nv, shape.items(), path, diff),
                            (Some(ov), None) => all_of(ov, shape.items(), path, &mut diff.removed),
                            (None, Some(nv)) => all_of(nv, shape.items(), path, &mut diff.added),
                            (None, None) => {}
                        }
                        path.pop();
                    }
                }
                (ListType::Set, ListType::Set) => {
                    let os: BTreeSet<PathElement> = o.iter().map(PathElement::value_of).collect();
                    let ns: BTreeSet<PathElement> = n.iter().map(PathElement::value_of).collect();
                    for e in os.difference(&ns) {
                        path.push(e.clone());
                        diff.removed.insert(path.clone());
                        path.pop();
                    }
                    for e in ns.difference(&os) {
                        path.push(e.clone());
                        diff.added.insert(path.clone());
                        path.pop();
                    }
                }
                _ => {
                    if o != n {
                        diff.modified.insert(path.clone());
                    }
                }
            }
        }
        _ => {
            if old != new {
                // A change of type also removes whatever lived below the old value.
                if old.is_object() || old.is_array() {
                    let mut below = FieldSet::new();
                    to_set(old, shape, path, &mut below);
                    below.remove(path);
                    diff.removed.extend(below);
                }
                diff.modified.insert(path.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compare_reports_changes() {
        let old = json!({"spec": {"a": 1, "b": 2}});
        let new = json!({"spec": {"a": 1, "b": 3, "c": {"d": 1}}});
        let mut d = Diff::default();
        compare(&old, &new, Shape::new(None), &mut Vec::new(), &mut d);
        let f = |s: &[&str]| {
            s.iter()
                .map(|x| PathElement::Field(x.to_string()))
                .collect::<Path>()
        };
        assert!(d.modified.contains(&f(&["spec", "b"])));
        assert!(d.added.contains(&f(&["spec", "c"])));
        assert!(d.added.contains(&f(&["spec", "c", "d"])));
        assert!(d.removed.is_empty());
    }
}
