//! `metadata.managedFields`: per-manager field ownership, updated by every write, and the
//! server-side apply algorithm (merge, conflicts, force, and removal of fields a manager stopped
//! applying) built on the field sets of [`crate::fieldpath`].

use serde_json::{Map, Value, json};

use crate::fieldpath::{self, Diff, FieldSet, Path, Shape};

/// Who is writing: a manager entry is identified by manager, operation and subresource.
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerId {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: &'static str,
    pub subresource: Option<String>,
    pub api_version: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub subresource: Option<String>,
    pub time: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// Whether this entry is the one `id` writes to.
    pub fn is(&self, id: &ManagerId) -> bool {
        self.manager == id.manager
            && self.operation == id.operation
            && self.subresource == id.subresource
    }
}

/// Fields the server owns and no manager does.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// The part of an object whose ownership is tracked.
pub fn managed_view(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
        if let Some(Value::Object(meta)) = m.get_mut("metadata") {
            for f in SERVER_METADATA {
                meta.remove(*f);
            }
            if meta.is_empty() {
                m.remove("metadata");
            }
        }
    }
    v
}

pub fn parse(obj: &Value) -> Vec<Entry> {
    let Some(list) = crate::object::metadata(obj)
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(String::from);
            Some(Entry {
                manager: s("manager").unwrap_or_default(),
                operation: s("operation")?,
                api_version: s("apiVersion").unwrap_or_default(),
                subresource: s("subresource").filter(|s| !s.is_empty()),
                time: s("time"),
                set: e
                    .get("fieldsV1")
                    .map(fieldpath::from_fields_v1)
                    .unwrap_or_default(),
            })
        })
        .collect()
}

pub fn render(entries: &[Entry]) -> Value {
    Value::Array(
        entries
            .iter()
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), fieldpath::to_fields_v1(&e.set));
                if let Some(s) = &e.subresource {
                    m.insert("subresource".into(), json!(s));
                }
                Value::Object(m)
            })
            .collect(),
    )
}

fn entry_mut<'a>(entries: &'a mut Vec<Entry>, id: &ManagerId) -> &'a mut Entry {
    let pos = match entries.iter().position(|e| e.is(id)) {
        Some(p) => p,
        None => {
            entries.push(Entry {
                manager: id.manager.clone(),
                operation: id.operation.to_string(),
                api_version: id.api_version.clone(),
                subresource: id.subresource.clone(),
                time: None,
                set: FieldSet::new(),
            });
            entries.len() - 1
        }
    };
    let e = &mut entries[pos];
    e.api_version = id.api_version.clone();
    e
}

fn remove_with_descendants(set: &mut FieldSet, gone: &FieldSet) {
    set.retain(|p| !gone.iter().any(|g| p.starts_with(g)));
}

/// Ownership after a non-apply write (create, update, patch): the writer takes every field it
/// added or changed, away from anyone else; removed fields are owned by nobody.
pub fn update(
    entries: &mut Vec<Entry>,
    old_view: &Value,
    new_view: &Value,
    shape: Shape,
    id: &ManagerId,
) {
    let mut diff = Diff::default();
    fieldpath::compare(old_view, new_view, shape, &mut Vec::new(), &mut diff);
    let changed = diff.changed();
    let mut gone = diff.removed.clone();
    gone.extend(diff.modified.iter().cloned());
    for e in entries.iter_mut().filter(|e| !e.is(id)) {
        remove_with_descendants(&mut e.set, &gone);
        e.set.retain(|p| !changed.contains(p));
    }
    let me = entry_mut(entries, id);
    remove_with_descendants(&mut me.set, &diff.removed);
    me.set.extend(changed);
}

/// A field another manager owns and the applied configuration would change.
#[derive(Clone, Debug)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    pub path: Path,
}

/// Server-side apply of `config` (server metadata and reset fields already stripped) onto
/// `live`. Returns the merged object, with fields this manager no longer applies removed unless
/// someone else owns them, and updates `entries`; or the conflicts, unless `force`.
pub fn apply(
    entries: &mut Vec<Entry>,
    live: &Value,
    config: &Value,
    shape: Shape,
    id: &ManagerId,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut config_set = FieldSet::new();
    fieldpath::to_set(
        &managed_view(config),
        shape,
        &mut Vec::new(),
        &mut config_set,
    );

    let mut merged = fieldpath::merge(live, config, shape, &mut Vec::new());
    let mut diff = Diff::default();
    fieldpath::compare(
        &managed_view(live),
        &managed_view(&merged),
        shape,
        &mut Vec::new(),
        &mut diff,
    );
    let changed = diff.changed();

    let mut conflicts = Vec::new();
    for e in entries.iter().filter(|e| !e.is(id)) {
        for p in e.set.intersection(&changed) {
            conflicts.push(Conflict {
                manager: e.manager.clone(),
                api_version: e.api_version.clone(),
                path: p.clone(),
            });
        }
    }
    if !conflicts.is_empty() {
        if !force {
            return Err(conflicts);
        }
        for e in entries.iter_mut().filter(|e| !e.is(id)) {
            e.set.retain(|p| !changed.contains(p));
        }
    }

    let last_set = entries
        .iter()
        .find(|e| e.is(id))
        .map(|e| e.set.clone())
        .unwrap_or_default();
    // Fields this manager applied last time and dropped now go away, unless another manager
    // still owns them (or something below them).
    let dropped: Vec<&Path> = last_set.difference(&config_set).collect();
    for p in dropped {
        let owned_elsewhere = entries
            .iter()
            .filter(|e| !e.is(id))
            .any(|e| e.set.iter().any(|q| q.starts_with(p)));
        let still_applied = config_set.iter().any(|q| q.starts_with(p));
        if !owned_elsewhere && !still_applied {
            fieldpath::remove_path(&mut merged, p, shape, &mut Vec::new());
        }
    }
    entry_mut(entries, id).set = config_set;
    Ok(merged)
}

/// Drops ownership of fields that are not in the final object (pruned as unknown, reset by a
/// subresource, or removed) and managers left with nothing.
pub fn settle(entries: &mut Vec<Entry>, final_view: &Value, shape: Shape) {
    for e in entries.iter_mut() {
        e.set
            .retain(|p| fieldpath::path_exists(final_view, p, shape, &mut Vec::new()));
    }
    entries.retain(|e| !e.set.is_empty());
}

/// The conflict message of structured-merge-diff, e.g.
/// `Apply failed with 1 conflict: conflict with "mgr" using v1: .spec.x`.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    if n == 1 {
        let c = &conflicts[0];
        return format!(
            "Apply failed with 1 conflict: conflict with \"{}\" using {}: {}",
            c.manager,
            c.api_version,
            fieldpath::path_string(&c.path)
        );
    }
    let mut s = format!("Apply failed with {n} conflicts: ");
    let lines: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager,
                c.api_version,
                fieldpath::path_string(&c.path)
            )
        })
        .collect();
    s.push_str(&lines.join("\n"));
    s
}
