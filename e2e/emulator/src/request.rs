//! One HTTP request as the handlers see it, and how its query parameters, headers and body
//! become the options of [`crate::ops`] and [`crate::watch`], with the parameter names and
//! defaults of the real API server.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, Method, Uri, header};
use serde_json::Value;

use crate::error::ApiError;
use crate::ops::{DeleteOptions, ListOptions, WriteOptions};
use crate::patch::PatchType;
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::watch::WatchParams;

/// Refuses an option the emulator does not implement, so that a client relying on it fails
/// loudly instead of getting, say, a real write for a dry run.
fn unsupported(what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported by kube-emulator"))
}

pub struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    query: HashMap<String, String>,
    headers: &'a HeaderMap,
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap, body: &'a [u8]) -> Self {
        let query = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
        Request {
            method,
            uri,
            query,
            headers,
            body,
        }
    }

    fn param(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        matches!(self.param(k), Some("true") | Some("1"))
    }

    /// Whether the `Accept` header asks for `what` (e.g. `as=PartialObjectMetadata`).
    pub fn accepts(&self, what: &str) -> bool {
        self.headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains(what))
    }

    pub fn is_read(&self) -> bool {
        self.method == Method::GET || self.method == Method::HEAD
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn not_found(&self) -> ApiError {
        ApiError::not_found_path(self.uri.path())
    }

    pub fn method_not_allowed(&self) -> ApiError {
        ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            self.uri.path()
        ))
    }

    /// Query parameters of resource requests that the emulator does not implement.
    pub fn check_supported(&self) -> Result<(), ApiError> {
        for param in ["dryRun", "propagationPolicy"] {
            if self.param(param).is_some() {
                return Err(unsupported(&format!("the {param} parameter")));
            }
        }
        Ok(())
    }

    pub fn selectors(&self) -> Result<Selectors, ApiError> {
        Ok(Selectors {
            labels: LabelSelector::parse(self.param("labelSelector").unwrap_or(""))?,
            fields: FieldSelector::parse(self.param("fieldSelector").unwrap_or(""))?,
        })
    }

    pub fn write_options(&self) -> WriteOptions {
        WriteOptions {
            manager: self.manager(),
            manager_explicit: self.param("fieldManager").is_some_and(|m| !m.is_empty()),
            force: self.flag("force"),
            strict: self.param("fieldValidation") == Some("Strict"),
        }
    }

    /// The field manager of a non-apply write: the `fieldManager` parameter, else the user
    /// agent's product name, like the real server.
    fn manager(&self) -> String {
        if let Some(m) = self.param("fieldManager") {
            return m.to_string();
        }
        self.headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|ua| ua.split('/').next())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown")
            .to_string()
    }

    pub fn list_options(&self) -> Result<ListOptions, ApiError> {
        Ok(ListOptions {
            selectors: self.selectors()?,
            limit: self.param("limit").and_then(|l| l.parse().ok()),
            continue_token: self
                .param("continue")
                .filter(|c| !c.is_empty())
                .map(String::from),
        })
    }

    /// A watch of one object (`.../{name}?watch=true`) is a watch of the collection selecting
    /// that name.
    pub fn watch_params(
        &self,
        name: Option<&str>,
        metadata_only: bool,
    ) -> Result<WatchParams, ApiError> {
        let mut selectors = self.selectors()?;
        if let Some(n) = name {
            selectors.fields = FieldSelector::parse(&format!("metadata.name={n}"))?;
        }
        Ok(WatchParams {
            resource_version: self.param("resourceVersion").map(String::from),
            bookmarks: self.flag("allowWatchBookmarks"),
            timeout: self
                .param("timeoutSeconds")
                .and_then(|s| s.parse::<u64>().ok())
                .map(Duration::from_secs),
            send_initial_events: self.flag("sendInitialEvents"),
            selectors,
            metadata_only,
        })
    }

    pub fn patch_type(&self) -> Result<PatchType, ApiError> {
        let ct = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        PatchType::from_content_type(ct).ok_or_else(|| {
            ApiError::unsupported_media_type(format!(
                "the body of the request was in an unknown format - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                 (got {ct:?})"
            ))
        })
    }

    /// The body of a create or update.
    pub fn object(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(self.body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        })
    }

    /// `DeleteOptions` from the request body, where kube-rs (like kubectl) sends them.
    pub fn delete_options(&self) -> Result<DeleteOptions, ApiError> {
        if self.body.is_empty() {
            return Ok(DeleteOptions::default());
        }
        let b = self.object()?;
        for unimplemented in [
            "/dryRun",
            "/orphanDependents",
            "/preconditions/resourceVersion",
        ] {
            if b.pointer(unimplemented).is_some_and(|v| !v.is_null()) {
                return Err(unsupported(&format!("DeleteOptions {unimplemented}")));
            }
        }
        let field = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
        Ok(DeleteOptions {
            propagation: field(b.get("propagationPolicy")),
            precondition_uid: field(b.pointer("/preconditions/uid")),
        })
    }
}
