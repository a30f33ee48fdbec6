//! Injected failures: the next requests matching a verb, a resource and a client (its
//! User-Agent) are answered with an error Status, as an overloaded or failing kube-apiserver
//! answers (429 `TooManyRequests` with `Retry-After`, 500 `InternalError`, 503
//! `ServiceUnavailable`, 504 `Timeout`), or as it answers a client that lost a race (404
//! `NotFound`: the object was gone; 422 `Invalid`: a JSON patch whose `test` failed because the
//! object changed since the client read it), without touching the store. For testing how
//! clients ride out failures of the moment.

use std::sync::Mutex;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;

use crate::metrics::RequestLabels;
use crate::response::json_response;

/// Which requests fail, how, and how many times.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// As `apiserver_request_total` spells it: `GET`, `LIST`, `APPLY`, `PATCH`, ...
    pub verb: String,
    /// The resource's plural, e.g. `configmaps`.
    pub resource: String,
    /// Only requests whose User-Agent starts with this (None: any client).
    pub user_agent_prefix: Option<String>,
    /// 404, 422, 429, 500, 503 or 504.
    pub code: u16,
    /// How many matching requests fail.
    pub times: u32,
}

#[derive(Default)]
pub struct Faults {
    pending: Mutex<Vec<Fault>>,
}

impl Faults {
    pub fn inject(&self, fault: Fault) {
        self.lock().push(fault);
    }

    /// Matching requests still to fail.
    pub fn pending(&self) -> u32 {
        self.lock().iter().map(|f| f.times).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Fault>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The error answer for this request, if a fault matches it (and uses one of its times).
    pub fn answer(&self, labels: &RequestLabels, user_agent: &str) -> Option<Response> {
        let mut pending = self.lock();
        let index = pending.iter().position(|f| {
            f.times > 0
                && f.verb == labels.verb
                && f.resource == labels.resource
                && f.user_agent_prefix
                    .as_deref()
                    .is_none_or(|p| user_agent.starts_with(p))
        })?;
        let fault = &mut pending[index];
        fault.times -= 1;
        let code = fault.code;
        if fault.times == 0 {
            pending.remove(index);
        }
        Some(status(code))
    }
}

fn status(code: u16) -> Response {
    let (reason, message) = match code {
        // kube-apiserver's generic answers (`NewGenericServerResponse` in apimachinery's
        // pkg/api/errors/errors.go); a failed JSON patch `test` gets the 422 one
        // (`applyJSPatch` in apiserver's pkg/endpoints/handlers/patch.go).
        404 => (
            "NotFound",
            "the server could not find the requested resource",
        ),
        422 => (
            "Invalid",
            "the server rejected our request due to an error in our request",
        ),
        429 => (
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        ),
        500 => ("InternalError", "Internal error occurred: injected"),
        504 => (
            "Timeout",
            "the server was unable to return a response in the time allotted, but may still be processing the request",
        ),
        _ => (
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
    };
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = json_response(
        status,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": status.as_u16(),
        }),
    );
    if code == 429 {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
