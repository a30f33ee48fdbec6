//! The write path and reads of the API: get, list, create, update, patch (including server-side
//! apply), delete. All functions run under the store lock and never await.
//!
//! Every write funnels through [`finish_create`] or [`finish_update`], which apply the same
//! steps as the API server's generic registry: server-owned metadata, subresource reset,
//! per-kind hooks, pruning and defaulting, managedFields, validation, generation, and the no-op
//! check that keeps an unchanged write from bumping resourceVersion.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::builtin;
use crate::crd;
use crate::error::{ApiError, Cause};
use crate::fieldpath::Shape;
use crate::managed::{self, Entry, ManagerId};
use crate::object;
use crate::patch::{self, PatchType};
use crate::resources::ResourceDef;
use crate::selectors::Selectors;
use crate::store::Store;
use crate::validation;

/// What a request addresses.
#[derive(Clone, Debug)]
pub struct Target {
    pub res: Arc<ResourceDef>,
    pub version: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

impl Target {
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or("")
    }

    pub fn is_status(&self) -> bool {
        self.subresource.as_deref() == Some("status")
    }

    fn not_found(&self) -> ApiError {
        ApiError::not_found(&self.res.group, &self.res.plural, self.name())
    }

    fn schema(&self) -> Option<&Value> {
        self.res.schema(&self.version).map(|s| &s.raw)
    }

    fn manager(&self, opts: &WriteOptions, operation: &'static str) -> ManagerId {
        ManagerId {
            manager: opts.manager.clone(),
            operation,
            subresource: self.subresource.clone(),
            api_version: self.res.api_version(&self.version),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub manager: String,
    /// Whether `manager` came from the `fieldManager` parameter (required for apply) rather
    /// than from the user agent.
    pub manager_explicit: bool,
    pub force: bool,
    /// `fieldValidation=Strict`: unknown fields of custom resources are an error, not pruned.
    pub strict: bool,
}

enum Ownership {
    /// A non-apply write: ownership follows what changed.
    Update,
    /// Server-side apply already computed the managers.
    Apply(Vec<Entry>),
}

const NS_KEY: (&str, &str) = ("", "namespaces");

pub fn get(store: &Store, t: &Target) -> Result<Value, ApiError> {
    let obj = store
        .get(&t.res.key(), t.ns(), t.name())
        .ok_or_else(|| t.not_found())?;
    Ok(t.res.convert(obj.clone(), &t.version))
}

/// Checks `apiVersion`/`kind` of a request body against the endpoint and sets the stored ones.
fn normalize_type_meta(obj: &mut Value, t: &Target) -> Result<(), ApiError> {
    let Some(m) = obj.as_object_mut() else {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    if let Some(kind) = m.get("kind").and_then(Value::as_str)
        && kind != t.res.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind of the object ({kind}) does not match the kind of the endpoint ({})",
            t.res.kind
        )));
    }
    if let Some(av) = m.get("apiVersion").and_then(Value::as_str) {
        let group = av.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        if group != t.res.group {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                t.res.api_version(&t.version)
            )));
        }
    }
    m.insert("apiVersion".into(), json!(t.res.storage_api_version()));
    m.insert("kind".into(), json!(t.res.kind));
    Ok(())
}

fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4()
        .as_bytes()
        .iter()
        .take(5)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

fn invalid(t: &Target, name: &str, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid(&t.res.kind, &t.res.group, name, causes)
}

/// Structural pruning and defaulting of custom resources.
fn prepare_custom(t: &Target, obj: &mut Value, strict: bool) -> Result<(), ApiError> {
    if let Some(schema) = t.schema() {
        if strict {
            let mut unknown = Vec::new();
            validation::unknown_fields(schema, obj, true, "", &mut unknown);
            if !unknown.is_empty() {
                let list: Vec<String> = unknown
                    .iter()
                    .map(|f| format!("unknown field \"{f}\""))
                    .collect();
                return Err(ApiError::bad_request(format!(
                    "strict decoding error: {}",
                    list.join(", ")
                )));
            }
        }
        validation::prune(schema, obj, true);
        *obj = validation::apply_defaults(schema, obj);
    }
    Ok(())
}

/// Validates an object; for a CRD also returns the resource it defines.
fn validate_object(
    t: &Target,
    obj: &Value,
    old: Option<&Value>,
) -> Result<Option<ResourceDef>, ApiError> {
    let mut causes = validation::validate_metadata(obj, t.res.is_namespace());
    if let Some(old) = old {
        causes.extend(builtin::validate_update(&t.res, old, obj));
    }
    causes.extend(builtin::validate_event(&t.res, obj, old.is_none()));
    if t.res.custom
        && let Some(schema) = t.res.schema(&t.version)
    {
        causes.extend(validation::validate(schema, obj, old));
    }
    let mut defined = None;
    if t.res.is_crd() {
        match crd::resource_from_crd(obj) {
            Ok(def) => defined = Some(def),
            Err(c) => causes.extend(c),
        }
    }
    if causes.is_empty() {
        Ok(defined)
    } else {
        Err(invalid(t, object::name(obj), causes))
    }
}

/// ObjectMeta round-trips through a Go struct with `omitempty` fields in the real server:
/// empty finalizers, owner references, labels and annotations are not stored.
fn normalize_metadata(obj: &mut Value) {
    let meta = object::metadata_mut(obj);
    meta.retain(|_, v| !v.is_null());
    for f in [
        "finalizers",
        "ownerReferences",
        "labels",
        "annotations",
        "managedFields",
    ] {
        let empty = match meta.get(f) {
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(m)) => m.is_empty(),
            _ => false,
        };
        if empty {
            meta.remove(f);
        }
    }
}

fn write_managed_fields(obj: &mut Value, entries: &[Entry]) {
    let meta = object::metadata_mut(obj);
    if entries.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), managed::render(entries));
    }
}

fn without(obj: &Value, meta_fields: &[&str]) -> Value {
    let mut v = obj.clone();
    let meta = object::metadata_mut(&mut v);
    for f in meta_fields {
        meta.remove(*f);
    }
    v
}

/// Whether anything but metadata (and status, when it is a subresource) changed: the rule for
/// bumping `metadata.generation`.
fn spec_changed(old: &Value, new: &Value, status_subresource: bool) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            if status_subresource {
                m.remove("status");
            }
        }
        v
    };
    strip(old) != strip(new)
}

fn check_namespace(store: &Store, t: &Target) -> Result<(), ApiError> {
    if !t.res.namespaced {
        return Ok(());
    }
    let key = (NS_KEY.0.to_string(), NS_KEY.1.to_string());
    match store.get(&key, "", t.ns()) {
        None => Err(ApiError::not_found("", "namespaces", t.ns())),
        Some(ns) if object::is_terminating(ns) => Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {} because it is being terminated",
            crate::error::qualified_resource(&t.res.group, &t.res.plural),
            t.name(),
            t.ns()
        ))
        .with_details(json!({"name": t.name(), "kind": t.res.plural, "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {} is being terminated", t.ns()), "field": "metadata.namespace"}]}))),
        Some(_) => Ok(()),
    }
}

fn finish_create(
    store: &mut Store,
    t: &Target,
    mut obj: Value,
    own: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let res = t.res.clone();
    {
        let meta = object::metadata_mut(&mut obj);
        let mut name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if name.is_empty() {
            let generate = meta
                .get("generateName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if generate.is_empty() {
                return Err(invalid(
                    t,
                    "",
                    vec![Cause {
                        reason: "FieldValueRequired".into(),
                        message: "Required value: name or generateName is required".into(),
                        field: "metadata.name".into(),
                    }],
                ));
            }
            name = format!("{generate}{}", random_suffix());
        }
        if t.name.is_some() && t.name() != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({})",
                t.name()
            )));
        }
        meta.insert("name".into(), json!(name));
        if res.namespaced {
            if let Some(ns) = meta.get("namespace").and_then(Value::as_str)
                && !ns.is_empty()
                && ns != t.ns()
            {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            meta.insert("namespace".into(), json!(t.ns()));
        } else {
            meta.remove("namespace");
        }
        for f in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(f);
        }
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(object::now()));
        if res.has_generation {
            meta.insert("generation".into(), json!(1));
        }
    }
    let name = object::name(&obj).to_string();
    let t = &Target {
        name: Some(name.clone()),
        ..t.clone()
    };
    if res.custom
        && res.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        // Status is written through its subresource only, not on create.
        m.remove("status");
    }
    builtin::on_write(&res, None, &mut obj);
    if res.custom {
        prepare_custom(t, &mut obj, opts.strict)?;
    }
    normalize_metadata(&mut obj);

    let shape = Shape::new(t.schema());
    let mut entries = match own {
        Ownership::Update => {
            let mut e = Vec::new();
            managed::update(
                &mut e,
                // The "before" of a create has (empty) metadata, as a typed object would: only
                // the maps the writer adds inside it are owned as a whole.
                &json!({"metadata": {}}),
                &managed::managed_view(&obj),
                shape,
                &t.manager(opts, "Update"),
            );
            e
        }
        Ownership::Apply(e) => e,
    };
    managed::settle(&mut entries, &managed::managed_view(&obj), shape);
    let now = object::now();
    for e in entries.iter_mut() {
        e.time = Some(now.clone());
    }
    write_managed_fields(&mut obj, &entries);

    let defined = validate_object(t, &obj, None)?;
    check_namespace(store, t)?;
    let key = res.key();
    if store.get(&key, t.ns(), &name).is_some() {
        return Err(ApiError::already_exists(&res.group, &res.plural, &name));
    }
    let stored = store.put(&key, obj, None);
    if let Some(def) = defined {
        store.registry.register(def);
    }
    Ok(res.convert(stored, &t.version))
}

fn finish_update(
    store: &mut Store,
    t: &Target,
    old: Value,
    mut obj: Value,
    own: Ownership,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    let res = t.res.clone();
    let key = res.key();
    let name = object::name(&old).to_string();
    let body_name = object::name(&obj);
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let body_ns = object::namespace(&obj);
    if res.namespaced && !body_ns.is_empty() && body_ns != object::namespace(&old) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    let body_rv = object::resource_version(&obj);
    if !body_rv.is_empty() && body_rv != object::resource_version(&old) {
        return Err(ApiError::conflict(&res.group, &res.plural, &name));
    }
    let is_update = matches!(own, Ownership::Update);
    {
        let old_meta = object::metadata(&old).cloned().unwrap_or_default();
        let meta = object::metadata_mut(&mut obj);
        for f in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(f) {
                Some(v) => meta.insert(f.to_string(), v.clone()),
                None => meta.remove(f),
            };
        }
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        // An update that omits managedFields keeps them, like the real server.
        if is_update
            && meta.get("managedFields").is_none_or(Value::is_null)
            && let Some(mf) = old_meta.get("managedFields")
        {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    if t.is_status() {
        // The status subresource changes status only.
        let status = obj.get("status").cloned();
        let mf = object::metadata(&obj)
            .and_then(|m| m.get("managedFields"))
            .cloned();
        let mut fresh = old.clone();
        if let Some(m) = fresh.as_object_mut() {
            match status {
                Some(s) => m.insert("status".into(), s),
                None => m.remove("status"),
            };
        }
        let meta = object::metadata_mut(&mut fresh);
        meta.remove("resourceVersion");
        match mf {
            Some(mf) => meta.insert("managedFields".into(), mf),
            None => meta.remove("managedFields"),
        };
        obj = fresh;
    } else if res.status_subresource
        && let Some(m) = obj.as_object_mut()
    {
        match old.get("status") {
            Some(s) => m.insert("status".into(), s.clone()),
            None => m.remove("status"),
        };
    }
    builtin::on_write(&res, Some(&old), &mut obj);
    if res.custom {
        prepare_custom(t, &mut obj, opts.strict)?;
    }
    normalize_metadata(&mut obj);

    if object::is_terminating(&old) {
        let before = object::finalizers(&old);
        let added: Vec<String> = object::finalizers(&obj)
            .into_iter()
            .filter(|f| !before.contains(f))
            .collect();
        if !added.is_empty() {
            let list: Vec<String> = added.iter().map(|f| format!("{f:?}")).collect();
            return Err(invalid(
                t,
                &name,
                vec![Cause {
                    reason: "FieldValueForbidden".into(),
                    message: format!(
                        "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                        list.join(", ")
                    ),
                    field: "metadata.finalizers".into(),
                }],
            ));
        }
    }
    if res.has_generation && spec_changed(&old, &obj, res.status_subresource) {
        let g = object::generation(&old) + 1;
        object::metadata_mut(&mut obj).insert("generation".into(), json!(g));
    }

    let shape = Shape::new(t.schema());
    let me = t.manager(opts, if is_update { "Update" } else { "Apply" });
    let mut entries = match own {
        Ownership::Update => {
            let mut e = managed::parse(&obj);
            managed::update(
                &mut e,
                &managed::managed_view(&old),
                &managed::managed_view(&obj),
                shape,
                &me,
            );
            e
        }
        Ownership::Apply(e) => e,
    };
    managed::settle(&mut entries, &managed::managed_view(&obj), shape);
    let content_changed = without(&old, &["managedFields", "resourceVersion"])
        != without(&obj, &["managedFields", "resourceVersion"]);
    let old_entries = managed::parse(&old);
    let now = object::now();
    for e in entries.iter_mut() {
        let acting = e.manager == me.manager
            && e.operation == me.operation
            && e.subresource == me.subresource;
        let unchanged = old_entries.iter().find(|o| {
            o.manager == e.manager
                && o.operation == e.operation
                && o.subresource == e.subresource
                && o.set == e.set
        });
        e.time = match unchanged {
            Some(o) if !(acting && content_changed) => o.time.clone(),
            _ => Some(now.clone()),
        };
    }
    write_managed_fields(&mut obj, &entries);

    let defined = validate_object(t, &obj, Some(&old))?;

    let mut candidate = obj.clone();
    object::metadata_mut(&mut candidate).insert(
        "resourceVersion".into(),
        json!(object::resource_version(&old)),
    );
    if candidate == old {
        // A write that changes nothing is not a write: no new resourceVersion, no event.
        return Ok(res.convert(old, &t.version));
    }
    if object::is_terminating(&obj) {
        store.controllers.notify_one();
        if object::finalizers(&obj).is_empty() && !res.is_namespace() {
            let ns = object::namespace(&old).to_string();
            let gone =
                remove_object(store, &res, &ns, &name, Some(obj)).ok_or_else(|| t.not_found())?;
            return Ok(res.convert(gone, &t.version));
        }
    }
    let stored = store.put(&key, obj, Some(old));
    if let Some(def) = defined {
        store.registry.register(def);
    }
    Ok(res.convert(stored, &t.version))
}

pub fn create(
    store: &mut Store,
    t: &Target,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "create is not supported on a subresource",
        ));
    }
    normalize_type_meta(&mut body, t)?;
    let t = Target {
        name: None,
        ..t.clone()
    };
    finish_create(store, &t, body, Ownership::Update, opts)
}

/// PUT of an existing object.
pub fn update(
    store: &mut Store,
    t: &Target,
    mut body: Value,
    opts: &WriteOptions,
) -> Result<Value, ApiError> {
    normalize_type_meta(&mut body, t)?;
    let old = store
        .get(&t.res.key(), t.ns(), t.name())
        .cloned()
        .ok_or_else(|| t.not_found())?;
    finish_update(store, t, old, body, Ownership::Update, opts)
}

/// PATCH of any type. Returns the object and whether it was created (apply only).
pub fn patch(
    store: &mut Store,
    t: &Target,
    kind: PatchType,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    if kind == PatchType::Strategic && t.res.custom {
        return Err(ApiError::unsupported_media_type(
            "the body of the request was in an unknown format - accepted media types include: \
             application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    if kind == PatchType::Apply {
        return apply(store, t, body, opts);
    }
    let old = store
        .get(&t.res.key(), t.ns(), t.name())
        .cloned()
        .ok_or_else(|| t.not_found())?;
    let patched = patch::apply_patch(&t.res.convert(old.clone(), &t.version), kind, body)?;
    let mut patched = patched;
    normalize_type_meta(&mut patched, t)?;
    finish_update(store, t, old, patched, Ownership::Update, opts).map(|v| (v, false))
}

fn conflict_error(t: &Target, conflicts: &[managed::Conflict]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": crate::fieldpath::path_string(&c.path),
            })
        })
        .collect();
    let mut details = json!({"name": t.name(), "kind": t.res.plural, "causes": causes});
    if !t.res.group.is_empty() {
        details["group"] = json!(t.res.group);
    }
    ApiError::new(409, "Conflict", managed::conflict_message(conflicts)).with_details(details)
}

/// Server-side apply.
fn apply(
    store: &mut Store,
    t: &Target,
    body: &[u8],
    opts: &WriteOptions,
) -> Result<(Value, bool), ApiError> {
    if !opts.manager_explicit || opts.manager.is_empty() {
        return Err(ApiError::new(
            422,
            "Invalid",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let config: Value = serde_yaml::from_slice::<Value>(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let mut config = config;
    if !config.is_object() {
        return Err(ApiError::bad_request(
            "apply configuration must be an object",
        ));
    }
    for field in ["apiVersion", "kind"] {
        if config
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "invalid object: Object '{}' is missing in '{}'",
                if field == "kind" { "Kind" } else { field },
                String::from_utf8_lossy(body)
            )));
        }
    }
    normalize_type_meta(&mut config, t)?;
    object::strip_nulls(&mut config);
    let cfg_name = object::name(&config);
    if !cfg_name.is_empty() && cfg_name != t.name() {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({cfg_name}) does not match the name on the URL ({})",
            t.name()
        )));
    }
    let old = store.get(&t.res.key(), t.ns(), t.name()).cloned();
    let cfg_rv = object::resource_version(&config);
    if !cfg_rv.is_empty() {
        match &old {
            Some(o) if object::resource_version(o) == cfg_rv => {}
            Some(_) => return Err(ApiError::conflict(&t.res.group, &t.res.plural, t.name())),
            None => return Err(t.not_found()),
        }
    }
    let mut view = managed::managed_view(&config);
    if let Some(m) = view.as_object_mut() {
        if t.is_status() {
            let status = m.remove("status");
            m.clear();
            if let Some(s) = status {
                m.insert("status".into(), s);
            }
        } else if t.res.status_subresource {
            m.remove("status");
        }
    }
    if old.is_none() && t.is_status() {
        return Err(t.not_found());
    }
    let live = match &old {
        Some(o) => o.clone(),
        None => {
            let mut meta = Map::new();
            meta.insert("name".into(), json!(t.name()));
            if t.res.namespaced {
                meta.insert("namespace".into(), json!(t.ns()));
            }
            json!({"apiVersion": t.res.storage_api_version(), "kind": t.res.kind, "metadata": meta})
        }
    };
    let mut entries = managed::parse(&live);
    let shape = Shape::new(t.schema());
    let me = t.manager(opts, "Apply");
    let merged = managed::apply(&mut entries, &live, &view, shape, &me, opts.force)
        .map_err(|c| conflict_error(t, &c))?;
    match old {
        None => finish_create(store, t, merged, Ownership::Apply(entries), opts).map(|v| (v, true)),
        Some(old) => finish_update(store, t, old, merged, Ownership::Apply(entries), opts)
            .map(|v| (v, false)),
    }
}

/// Options of a DELETE.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
}

pub enum Deleted {
    /// The object is gone; its final state.
    Gone(Value),
    /// The object is terminating, waiting for finalizers.
    Pending(Value),
}

pub fn delete(store: &mut Store, t: &Target, d: &DeleteOptions) -> Result<Deleted, ApiError> {
    if t.subresource.is_some() {
        return Err(ApiError::method_not_allowed(
            "delete is not supported on a subresource",
        ));
    }
    let out = delete_object(store, &t.res, t.ns(), t.name(), d)?;
    Ok(match out {
        Deleted::Gone(v) => Deleted::Gone(t.res.convert(v, &t.version)),
        Deleted::Pending(v) => Deleted::Pending(t.res.convert(v, &t.version)),
    })
}

/// Deletes one object: marks it terminating when something must finish first (finalizers,
/// namespace content, custom resources of a CRD), removes it otherwise.
pub fn delete_object(
    store: &mut Store,
    res: &Arc<ResourceDef>,
    ns: &str,
    name: &str,
    d: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let key = res.key();
    let old = store
        .get(&key, ns, name)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
    if let Some(uid) = &d.precondition_uid
        && uid != object::uid(&old)
    {
        return Err(ApiError::precondition_failed(
            &res.group,
            &res.plural,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::uid(&old)
            ),
        ));
    }
    let must_wait = !object::finalizers(&old).is_empty() || res.is_namespace() || res.is_crd();
    if d.propagation.as_deref() == Some("Orphan") {
        orphan_dependents(store, object::uid(&old));
    }
    if !must_wait {
        let gone = remove_object(store, res, ns, name, None)
            .ok_or_else(|| ApiError::not_found(&res.group, &res.plural, name))?;
        return Ok(Deleted::Gone(gone));
    }
    if object::is_terminating(&old) {
        return Ok(Deleted::Pending(old));
    }
    let mut obj = old.clone();
    {
        let meta = object::metadata_mut(&mut obj);
        meta.insert("deletionTimestamp".into(), json!(object::now()));
        meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        if res.has_generation {
            let g = meta.get("generation").and_then(Value::as_i64).unwrap_or(0);
            meta.insert("generation".into(), json!(g + 1));
        }
        if res.is_crd() {
            let f = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Value::Array(list) = f {
                let cleanup = json!("customresourcecleanup.apiextensions.k8s.io");
                if !list.contains(&cleanup) {
                    list.push(cleanup);
                }
            }
        }
    }
    if res.is_namespace()
        && let Some(m) = obj.as_object_mut()
    {
        m.insert("status".into(), json!({"phase": "Terminating"}));
    }
    let stored = store.put(&key, obj, Some(old));
    store.controllers.notify_one();
    Ok(Deleted::Pending(stored))
}

/// Removes an object from the store for good (with the side effects of a CRD going away).
pub fn remove_object(
    store: &mut Store,
    res: &ResourceDef,
    ns: &str,
    name: &str,
    final_obj: Option<Value>,
) -> Option<Value> {
    let gone = store.remove(&res.key(), ns, name, final_obj)?;
    if res.is_crd() {
        let group = gone
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let plural = gone
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or("");
        let key = (group.to_string(), plural.to_string());
        store.registry.unregister(&key);
        store.drop_resource(&key);
    }
    Some(gone)
}

/// `propagationPolicy: Orphan`: dependents lose their owner reference instead of being deleted.
fn orphan_dependents(store: &mut Store, uid: &str) {
    let dependents: Vec<(crate::resources::ResKey, Value)> = store
        .all_objects()
        .filter(|(_, o)| object::owner_uids(o).iter().any(|u| u == uid))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    for (key, old) in dependents {
        let mut obj = old.clone();
        let meta = object::metadata_mut(&mut obj);
        if let Some(Value::Array(refs)) = meta.get_mut("ownerReferences") {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            if refs.is_empty() {
                meta.remove("ownerReferences");
            }
        }
        store.put(&key, obj, Some(old));
    }
}

/// Options of a list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub selectors: Selectors,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

fn encode_continue(rv: u64, ns: &str, name: &str) -> String {
    use base64::Engine;
    let raw = json!({"rv": rv, "ns": ns, "name": name}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Option<(u64, String, String)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((
        v.get("rv")?.as_u64()?,
        v.get("ns")?.as_str()?.to_string(),
        v.get("name")?.as_str()?.to_string(),
    ))
}

/// Objects of a target (one namespace, or all when the path has none), filtered and sorted.
pub fn select<'a>(store: &'a Store, t: &Target, selectors: &Selectors) -> Vec<&'a Value> {
    let ns = if t.res.namespaced {
        t.namespace.as_deref()
    } else {
        None
    };
    store
        .list(&t.res.key(), ns)
        .into_iter()
        .filter(|o| selectors.matches(o))
        .collect()
}

pub fn list(store: &Store, t: &Target, opts: &ListOptions) -> Result<Value, ApiError> {
    let (list_rv, after) = match &opts.continue_token {
        Some(token) => {
            let (rv, ns, name) = decode_continue(token)
                .ok_or_else(|| ApiError::bad_request("invalid continue token"))?;
            if rv < store.history_floor() {
                return Err(ApiError::gone(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter.",
                ));
            }
            (rv, Some((ns, name)))
        }
        None => (store.current_rv(), None),
    };
    let all: Vec<&Value> = select(store, t, &opts.selectors)
        .into_iter()
        .filter(|o| match &after {
            Some((ns, name)) => {
                (object::namespace(o), object::name(o)) > (ns.as_str(), name.as_str())
            }
            None => true,
        })
        .collect();
    let limit = opts.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let page: Vec<Value> = all
        .iter()
        .take(limit)
        .map(|o| t.res.convert((*o).clone(), &t.version))
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if all.len() > page.len()
        && let Some(last) = page.last()
    {
        metadata["continue"] = json!(encode_continue(
            list_rv,
            object::namespace(last),
            object::name(last)
        ));
        metadata["remainingItemCount"] = json!(all.len() - page.len());
    }
    Ok(json!({
        "kind": t.res.list_kind,
        "apiVersion": t.res.api_version(&t.version),
        "metadata": metadata,
        "items": page,
    }))
}
