//! What the API server does with a TenantIdentity document before it stores one, done offline for
//! `render`: strict decoding (unknown fields are refused, as `kubectl apply` asks by default since
//! Kubernetes 1.27), pruning of `null`s the schema does not allow, ObjectMeta's own rules (name,
//! namespace, labels, annotations, finalizers) and the sizes the API server caps.
//!
//! The operator's runtime validation ([`crate::plan::validate`]) does not repeat these: every
//! object it reads was stored by an API server that applied them, and it must never refuse an
//! object the API server accepted. So they live here, where only render calls them.

use std::sync::OnceLock;

use serde_json::{Map, Value};
use tenant_identity_crd::TenantIdentity;

/// The API server's limit on all annotations of an object together (keys and values, in bytes):
/// apimachinery's `TotalAnnotationSizeLimitB`.
pub const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;
/// The largest object the API server can store: etcd's default request limit (1.5 MiB). Custom
/// resources are stored as JSON, so the document's JSON size is what counts.
pub const MAX_OBJECT_BYTES: usize = 1536 * 1024;
/// A DNS-1123 subdomain is at most this long (object names, label and annotation key prefixes).
const DNS1123_SUBDOMAIN_MAX: usize = 253;
/// A DNS-1123 label, a label value and a qualified name's name part are at most this long.
const DNS1123_LABEL_MAX: usize = 63;

/// ObjectMeta's fields, by their JSON names. `None`: a scalar or a map of strings (its values'
/// types are checked when the document is read); `Some`: a list of objects with these fields.
const OBJECT_META_FIELDS: &[(&str, Option<&[&str]>)] = &[
    ("annotations", None),
    ("creationTimestamp", None),
    ("deletionGracePeriodSeconds", None),
    ("deletionTimestamp", None),
    ("finalizers", None),
    ("generateName", None),
    ("generation", None),
    ("labels", None),
    (
        "managedFields",
        Some(&[
            "apiVersion",
            "fieldsType",
            "fieldsV1",
            "manager",
            "operation",
            "subresource",
            "time",
        ]),
    ),
    ("name", None),
    ("namespace", None),
    (
        "ownerReferences",
        Some(&[
            "apiVersion",
            "blockOwnerDeletion",
            "controller",
            "kind",
            "name",
            "uid",
        ]),
    ),
    ("resourceVersion", None),
    ("selfLink", None),
    ("uid", None),
];

/// The CRD's `openAPIV3Schema`, the one the API server validates with.
fn crd_schema() -> &'static Result<Value, String> {
    static SCHEMA: OnceLock<Result<Value, String>> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let crd = <TenantIdentity as kube::CustomResourceExt>::crd();
        crd.spec
            .versions
            .first()
            .and_then(|v| v.schema.as_ref())
            .and_then(|s| s.open_api_v3_schema.as_ref())
            .ok_or_else(|| "the CRD has no openAPIV3Schema".to_string())
            .and_then(|s| serde_json::to_value(s).map_err(|e| e.to_string()))
    })
}

/// Everything the API server would refuse in `doc` before the CRD's schema and CEL rules (which
/// [`crate::plan::validate`] evaluates), and the document as it would store it: unknown fields
/// refused, non-nullable `null`s pruned, an empty `metadata.namespace` dropped (the request's
/// namespace is used), `status` dropped (a create ignores it). The message names the field.
pub fn admit(doc: &mut Value) -> Result<(), String> {
    let schema = crd_schema()
        .as_ref()
        .map_err(|e| format!("internal: the CRD schema is unusable: {e}"))?;
    let size = serde_json::to_vec(doc).map(|v| v.len()).unwrap_or(0);
    if size > MAX_OBJECT_BYTES {
        return Err(format!(
            "the object is {size} bytes as JSON: the API server stores at most {MAX_OBJECT_BYTES} (etcd's request limit)"
        ));
    }
    let mut unknown = Vec::new();
    unknown_fields(schema, doc, "", true, &mut unknown);
    if !unknown.is_empty() {
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        return Err(format!(
            "{} (the API server refuses unknown fields: kubectl apply asks for strict field validation)",
            fields.join(", ")
        ));
    }
    prune_nulls(schema, doc);
    if let Some(obj) = doc.as_object_mut() {
        obj.remove("status");
        if let Some(Value::Object(meta)) = obj.get_mut("metadata")
            && meta.get("namespace").is_some_and(|n| n == "")
        {
            meta.remove("namespace");
        }
    }
    check_metadata(doc.get("metadata"))?;
    // Types against the schema, on the document as written: reading it into the operator's
    // types is more lenient (a struct from a list, an enum from a one-key map).
    if let (Some(spec), Some(spec_schema)) = (doc.get("spec"), schema.pointer("/properties/spec")) {
        check_types(spec_schema, spec, "spec")?;
    }
    Ok(())
}

/// The first value whose JSON type is not the one its schema declares, as the API server words it.
fn check_types(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    let expected = schema.get("type").and_then(Value::as_str);
    let actual = match v {
        Value::Null => return Ok(()),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    let fits = match expected {
        None => true,
        Some("number") => actual == "integer" || actual == "number",
        Some(t) => t == actual,
    };
    if !fits && schema.get("x-kubernetes-int-or-string") != Some(&Value::Bool(true)) {
        return Err(format!(
            "{path}: Invalid value: \"{actual}\": {path} in body must be of type {}: \"{actual}\"",
            expected.unwrap_or_default()
        ));
    }
    match v {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (k, child) in map {
                if let Some(s) = properties.and_then(|p| p.get(k)).or(additional) {
                    check_types(s, child, &format!("{path}.{k}"))?;
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check_types(s, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// The paths of the fields the API server's strict decoding reports as unknown: fields of
/// ObjectMeta it does not have, and fields the CRD's structural schema does not declare.
fn unknown_fields(schema: &Value, v: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
                return;
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (k, child) in map {
                if root && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if root && k == "metadata" {
                    unknown_metadata_fields(child, out);
                    continue;
                }
                match properties.and_then(|p| p.get(k)) {
                    Some(s) => unknown_fields(s, child, &join(k), false, out),
                    None => match additional {
                        Some(Value::Bool(true)) => {}
                        Some(s @ Value::Object(_)) => {
                            unknown_fields(s, child, &join(k), false, out)
                        }
                        _ => out.push(join(k)),
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(s, item, &format!("{path}[{i}]"), false, out);
                }
            }
        }
        _ => {}
    }
}

fn unknown_metadata_fields(meta: &Value, out: &mut Vec<String>) {
    let Some(meta) = meta.as_object() else {
        return;
    };
    for (k, v) in meta {
        match OBJECT_META_FIELDS.iter().find(|(name, _)| name == k) {
            None => out.push(format!("metadata.{k}")),
            Some((_, Some(item_fields))) => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    for key in item.as_object().into_iter().flat_map(Map::keys) {
                        if !item_fields.contains(&key.as_str()) {
                            out.push(format!("metadata.{k}[{i}].{key}"));
                        }
                    }
                }
            }
            Some((_, None)) => {}
        }
    }
}

/// Drops the `null`s of fields whose schema is not `nullable`, as the API server does before
/// defaulting: such a field is then absent (and defaulted, or missing if required).
fn prune_nulls(schema: &Value, v: &mut Value) {
    match v {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            map.retain(|k, child| {
                let Some(s) = properties.and_then(|p| p.get(k)) else {
                    return true;
                };
                if child.is_null() {
                    return s.get("nullable") == Some(&Value::Bool(true));
                }
                prune_nulls(s, child);
                true
            });
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                items.iter_mut().for_each(|item| prune_nulls(s, item));
            }
        }
        _ => {}
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_dns1123_label)
}

/// A qualified name's name part (and, when not empty, a label value): alphanumerics, `-`, `_`
/// and `.`, starting and ending with an alphanumeric, at most 63 characters.
fn is_qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// apimachinery's `IsQualifiedName`: `[prefix/]name`, the prefix a DNS-1123 subdomain.
fn qualified_name_problem(key: &str) -> Option<&'static str> {
    match key.split_once('/') {
        None if is_qualified_name_part(key) => None,
        Some((prefix, name)) if is_dns1123_subdomain(prefix) && is_qualified_name_part(name) => {
            None
        }
        Some((prefix, _)) if !prefix.is_empty() && !is_dns1123_subdomain(prefix) => Some(
            "the prefix (before '/') must be a DNS-1123 subdomain: lower case alphanumerics, '-' and '.', at most 253 characters",
        ),
        _ => Some(
            "the name part must be 1 to 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric, with an optional DNS subdomain prefix and '/'",
        ),
    }
}

/// ObjectMeta validation as the API server does it for a namespaced custom resource.
fn check_metadata(meta: Option<&Value>) -> Result<(), String> {
    let Some(meta) = meta else {
        return Err("metadata.name: Required value: name is required".into());
    };
    let Some(meta) = meta.as_object() else {
        // Its type is reported when the document is read.
        return Ok(());
    };
    match meta.get("name").filter(|n| !n.is_null()) {
        None => {
            return Err(if meta.get("generateName").is_some() {
                "metadata.name: Required value: render derives the children's names from the name, so generateName is not enough".into()
            } else {
                "metadata.name: Required value: name is required".into()
            });
        }
        Some(Value::String(name)) if name.is_empty() => {
            return Err("metadata.name: Required value: name is required".into());
        }
        Some(Value::String(name)) if name.len() > DNS1123_SUBDOMAIN_MAX => {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
            ));
        }
        Some(Value::String(name)) if !is_dns1123_subdomain(name) => {
            return Err(format!(
                "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
            ));
        }
        // A name of another type is reported when the document is read.
        Some(_) => {}
    }
    if let Some(ns) = meta.get("namespace").and_then(Value::as_str) {
        check_namespace(ns, "metadata.namespace")?;
    }
    if let Some(labels) = meta.get("labels").and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(problem) = qualified_name_problem(key) {
                return Err(format!(
                    "metadata.labels: Invalid value: \"{key}\": {problem}"
                ));
            }
            if let Some(v) = value.as_str()
                && !(v.is_empty() || is_qualified_name_part(v))
            {
                return Err(format!(
                    "metadata.labels: Invalid value: \"{v}\": a label value must be empty or 1 to 63 alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                ));
            }
        }
    }
    if let Some(annotations) = meta.get("annotations").and_then(Value::as_object) {
        let mut total = 0;
        for (key, value) in annotations {
            // The API server checks annotation keys in lower case: upper case letters pass.
            if let Some(problem) = qualified_name_problem(&key.to_lowercase()) {
                return Err(format!(
                    "metadata.annotations: Invalid value: \"{key}\": {problem}"
                ));
            }
            total += key.len() + value.as_str().map_or(0, str::len);
        }
        if total > MAX_ANNOTATIONS_BYTES {
            return Err(format!(
                "metadata.annotations: Too long: {total} bytes in all: the API server allows at most {MAX_ANNOTATIONS_BYTES}"
            ));
        }
    }
    if let Some(finalizers) = meta.get("finalizers").and_then(Value::as_array) {
        for f in finalizers.iter().filter_map(Value::as_str) {
            if let Some(problem) = qualified_name_problem(f) {
                return Err(format!(
                    "metadata.finalizers: Invalid value: \"{f}\": {problem}"
                ));
            }
        }
    }
    Ok(())
}

/// A namespace name: a DNS-1123 label. `field` says where it came from.
pub fn check_namespace(ns: &str, field: &str) -> Result<(), String> {
    if is_dns1123_label(ns) {
        Ok(())
    } else {
        Err(format!(
            "{field}: Invalid value: \"{ns}\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters"
        ))
    }
}

/// `s` with every character that is invisible, or changes how the text around it is shown,
/// escaped as `\u{...}` (tab, line feed and carriage return as `\t`, `\n`, `\r`): controls,
/// format characters (bidi overrides and isolates, zero-width characters, the byte order mark),
/// line and paragraph separators and every space but U+0020. An error line then shows exactly
/// what the input holds and never reorders or hides the text around it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if is_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

/// Controls (Cc), format characters (Cf), separators other than U+0020 (Zs, Zl, Zp) and the
/// other white space Unicode knows.
fn is_unsafe(c: char) -> bool {
    c.is_control() || (c.is_whitespace() && c != ' ') || is_format(c)
}

/// Unicode's format characters (general category Cf), among them the bidi controls.
fn is_format(c: char) -> bool {
    matches!(c,
        '\u{ad}'
        | '\u{600}'..='\u{605}'
        | '\u{61c}'
        | '\u{6dd}'
        | '\u{70f}'
        | '\u{890}'..='\u{891}'
        | '\u{8e2}'
        | '\u{180e}'
        | '\u{200b}'..='\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}'
        | '\u{feff}'
        | '\u{fff9}'..='\u{fffb}'
        | '\u{110bd}'
        | '\u{110cd}'
        | '\u{13430}'..='\u{1343f}'
        | '\u{1bca0}'..='\u{1bca3}'
        | '\u{1d173}'..='\u{1d17a}'
        | '\u{e0001}'
        | '\u{e0020}'..='\u{e007f}')
}

#[cfg(test)]
mod tests;
