//! How the emulator's answers look on the wire: JSON bodies, `Status` objects and
//! `PartialObjectMetadata` renderings. The lowest layer of the HTTP side: it knows nothing of
//! routing, the store or errors, so that errors, routes and watches can all render through it.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

/// `details` of a `Status` about one object (`kind` is the resource's plural, as the API server
/// sends it).
pub fn status_details(group: &str, plural: &str, name: &str) -> Value {
    let mut d = json!({ "name": name, "kind": plural });
    if !group.is_empty() {
        d["group"] = json!(group);
    }
    d
}

/// A `Status` of failure.
pub fn failure_status(code: u16, reason: &str, message: &str, details: Option<&Value>) -> Value {
    let mut s = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        s["details"] = d.clone();
    }
    s
}

/// A `Status` of success, as returned by DELETE of an object that is gone immediately.
pub fn success_status(group: &str, plural: &str, name: &str, uid: &str) -> Value {
    let mut d = status_details(group, plural, name);
    d["uid"] = json!(uid);
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": d,
    })
}

/// `PartialObjectMetadata` rendering, asked for with
/// `Accept: application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
pub fn partial_metadata(obj: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

pub fn partial_metadata_list(list: &Value) -> Value {
    let items: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|a| a.iter().map(partial_metadata).collect())
        .unwrap_or_default();
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadataList",
        "metadata": list.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "items": items,
    })
}
