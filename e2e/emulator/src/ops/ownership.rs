//! `metadata.managedFields` of a write: who owns which fields afterwards, and when each
//! manager's entry last changed.

use serde_json::{Value, json};

use super::target::{Target, WriteOptions};
use crate::fieldpath::Shape;
use crate::managed::{self, Entry, ManagerId};
use crate::object;

pub(super) enum Ownership {
    /// A non-apply write: ownership follows what changed.
    Update,
    /// Server-side apply already computed the managers.
    Apply(Vec<Entry>),
}

/// The managers of a newly created object, all stamped now.
pub(super) fn after_create(
    t: &Target,
    opts: &WriteOptions,
    own: Ownership,
    obj: &Value,
) -> Vec<Entry> {
    let shape = Shape::new(t.schema());
    let mut entries = match own {
        Ownership::Update => {
            let mut e = Vec::new();
            managed::update(
                &mut e,
                // The "before" of a create has (empty) metadata, as a typed object would: only
                // the maps the writer adds inside it are owned as a whole.
                &json!({"metadata": {}}),
                &managed::managed_view(obj),
                shape,
                &t.manager(opts, "Update"),
            );
            e
        }
        Ownership::Apply(e) => e,
    };
    managed::settle(&mut entries, &managed::managed_view(obj), shape);
    let now = object::now();
    for e in entries.iter_mut() {
        e.time = Some(now.clone());
    }
    entries
}

/// The managers of an object after an update from `old` to `obj`.
pub(super) fn after_update(
    t: &Target,
    opts: &WriteOptions,
    own: Ownership,
    old: &Value,
    obj: &Value,
) -> Vec<Entry> {
    let shape = Shape::new(t.schema());
    let (me, mut entries) = match own {
        Ownership::Update => {
            let me = t.manager(opts, "Update");
            // The body's managedFields (or the stored ones, when it had none) are the start.
            let mut e = managed::parse(obj);
            managed::update(
                &mut e,
                &managed::managed_view(old),
                &managed::managed_view(obj),
                shape,
                &me,
            );
            (me, e)
        }
        Ownership::Apply(e) => (t.manager(opts, "Apply"), e),
    };
    managed::settle(&mut entries, &managed::managed_view(obj), shape);
    let content_changed = without_bookkeeping(old) != without_bookkeeping(obj);
    stamp_times(&mut entries, &managed::parse(old), &me, content_changed);
    entries
}

/// An entry keeps its time while its field set stays the same, unless it belongs to the writer
/// and the write changed the object: the time says when that manager last changed something.
fn stamp_times(entries: &mut [Entry], before: &[Entry], me: &ManagerId, content_changed: bool) {
    let now = object::now();
    for e in entries.iter_mut() {
        let unchanged = before.iter().find(|o| {
            o.manager == e.manager
                && o.operation == e.operation
                && o.subresource == e.subresource
                && o.set == e.set
        });
        e.time = match unchanged {
            Some(o) if !(e.is(me) && content_changed) => o.time.clone(),
            _ => Some(now.clone()),
        };
    }
}

/// The object without what every write changes anyway.
fn without_bookkeeping(obj: &Value) -> Value {
    let mut v = obj.clone();
    let meta = object::metadata_mut(&mut v);
    meta.remove("managedFields");
    meta.remove("resourceVersion");
    v
}

pub(super) fn write_managed_fields(obj: &mut Value, entries: &[Entry]) {
    let meta = object::metadata_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), managed::render(entries));
    }
}
