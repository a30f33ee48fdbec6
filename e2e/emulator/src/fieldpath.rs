//! Field paths and field sets, the vocabulary of server-side apply (structured-merge-diff):
//! which fields an object sets, how two objects differ, how an applied configuration merges
//! into a live object, and the `FieldsV1` wire format (`f:`, `k:`, `v:`, `.`; every list is atomic,
//! associative or a set, so `i:` index elements never arise).

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

pub type Path = Vec<PathElement>;
pub type FieldSet = BTreeSet<Path>;

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

/// The key element of an associative-list item, or `None` when a key field is missing (the
/// list is then handled as atomic).
fn item_key(item: &Value, keys: &[String]) -> Option<PathElement> {
    let obj = item.as_object()?;
    let mut m = Map::new();
    for k in keys {
        m.insert(k.clone(), obj.get(k)?.clone());
    }
    serde_json::to_string(&Value::Object(m))
        .ok()
        .map(PathElement::Key)
}

fn value_elem(item: &Value) -> PathElement {
    PathElement::Value(serde_json::to_string(item).unwrap_or_default())
}

/// The effective list type of a concrete list: associative/set only if every item is keyable
/// and keys are unique; otherwise atomic (the real server would reject such a list).
fn effective_list_type(list: &[Value], shape: &Shape, path: &[PathElement]) -> ListType {
    match shape.list_type(path) {
        ListType::Map(keys) => {
            let mut seen = BTreeSet::new();
            for item in list {
                match item_key(item, &keys) {
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
                .all(|i| !i.is_object() && !i.is_array() && seen.insert(value_elem(i)))
            {
                ListType::Set
            } else {
                ListType::Atomic
            }
        }
        ListType::Atomic => ListType::Atomic,
    }
}

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
                    if let Some(k) = item_key(item, &keys) {
                        path.push(k);
                        out.insert(path.clone());
                        to_set(item, shape.items(), path, out);
                        path.pop();
                    }
                }
            }
            ListType::Set if !list.is_empty() => {
                for item in list {
                    path.push(value_elem(item));
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
                            .filter_map(|i| item_key(i, &keys).map(|k| (k, i.clone())))
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
                    let os: BTreeSet<PathElement> = o.iter().map(value_elem).collect();
                    let ns: BTreeSet<PathElement> = n.iter().map(value_elem).collect();
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
                        let ck = item_key(ci, &keys);
                        let pos = out.iter().position(|li| item_key(li, &keys) == ck);
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
                .position(|i| item_key(i, &keys).as_ref() == Some(first))
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
            list.retain(|i| &value_elem(i) != first);
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
                .find(|i| item_key(i, &keys).as_ref() == Some(first))
                .map(|c| (c, shape.items())),
            _ => None,
        },
        (PathElement::Value(_), Value::Array(list)) => {
            return rest.is_empty() && list.iter().any(|i| &value_elem(i) == first);
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
            Some(value_elem(&v))
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
