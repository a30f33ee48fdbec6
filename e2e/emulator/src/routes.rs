//! HTTP routing: one fallback handler parses Kubernetes API paths
//! (`/api/v1/namespaces/{ns}/{plural}/{name}/{sub}`, `/apis/{g}/{v}/...`) and dispatches to
//! discovery, [`crate::ops`] or [`crate::watch`]. Store work happens synchronously under the
//! lock; the lock is never held across an await.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::discovery;
use crate::error::ApiError;
use crate::ops::{self, DeleteOptions, Deleted, ListOptions, Target, WriteOptions};
use crate::patch::PatchType;
use crate::response::{json_response, partial_metadata, partial_metadata_list, success_status};
use crate::selectors::{FieldSelector, LabelSelector, Selectors};
use crate::state::AppState;
use crate::watch::{self, WatchParams};

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .fallback(handle)
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(state)
}

fn ok(v: &Value) -> Result<Response, ApiError> {
    Ok(json_response(StatusCode::OK, v))
}

async fn handle(
    State(st): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match dispatch(&st, &method, &uri, &headers, &body) {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, error = %e, "request failed");
            e.into_response()
        }
    }
}

type Query = HashMap<String, String>;

fn query(uri: &Uri) -> Query {
    form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn flag(q: &Query, k: &str) -> bool {
    matches!(q.get(k).map(String::as_str), Some("true") | Some("1"))
}

fn dispatch(
    st: &Arc<AppState>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let q = query(uri);
    let discovery_only = |r: Result<Response, ApiError>| {
        if method == Method::GET || method == Method::HEAD {
            r
        } else {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({})",
                uri.path()
            )))
        }
    };
    match segs.as_slice() {
        [] => discovery_only(ok(
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version", "/.well-known/openid-configuration", "/openid/v1/jwks"]}),
        )),
        ["healthz" | "readyz" | "livez", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["version"] => discovery_only(ok(&discovery::version())),
        [".well-known", "openid-configuration"] => {
            discovery_only(ok(&discovery::openid_configuration(&st.issuer, &st.url)))
        }
        ["openid", "v1", "jwks"] => discovery_only(ok(&discovery::jwks())),
        ["api" | "apis"] if accepts(headers, "as=APIGroupDiscoveryList") => {
            let doc = discovery::aggregated(&st.lock().registry, segs[0] == "api");
            discovery_only(Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)],
                doc.to_string(),
            )
                .into_response()))
        }
        ["api"] => {
            let server = st.url.trim_start_matches("http://").to_string();
            discovery_only(ok(&discovery::core_versions(&server)))
        }
        ["apis"] => discovery_only(ok(&discovery::group_list(&st.lock().registry))),
        ["apis", group] => {
            let doc = discovery::group(&st.lock().registry, group);
            discovery_only(
                doc.map_or_else(|| Err(ApiError::not_found_path(uri.path())), |d| ok(&d)),
            )
        }
        ["api", version] => {
            let doc = discovery::resource_list(&st.lock().registry, "", version);
            discovery_only(
                doc.map_or_else(|| Err(ApiError::not_found_path(uri.path())), |d| ok(&d)),
            )
        }
        ["apis", group, version] => {
            let doc = discovery::resource_list(&st.lock().registry, group, version);
            discovery_only(
                doc.map_or_else(|| Err(ApiError::not_found_path(uri.path())), |d| ok(&d)),
            )
        }
        ["api", version, rest @ ..] => {
            resource(st, "", version, rest, method, uri, &q, headers, body)
        }
        ["apis", group, version, rest @ ..] => {
            resource(st, group, version, rest, method, uri, &q, headers, body)
        }
        _ => Err(ApiError::not_found_path(uri.path())),
    }
}

fn accepts(headers: &HeaderMap, what: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains(what))
}

fn selectors(q: &Query) -> Result<Selectors, ApiError> {
    Ok(Selectors {
        labels: LabelSelector::parse(q.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        fields: FieldSelector::parse(q.get("fieldSelector").map(String::as_str).unwrap_or(""))?,
    })
}

fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
    })
}

/// The field manager of a non-apply write: the `fieldManager` parameter, else the user agent's
/// product name, like the real server.
fn manager(q: &Query, headers: &HeaderMap) -> String {
    if let Some(m) = q.get("fieldManager") {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// `DeleteOptions` from the request body, where kube-rs (like kubectl) sends them.
fn delete_options(body: &[u8]) -> Result<DeleteOptions, ApiError> {
    if body.is_empty() {
        return Ok(DeleteOptions::default());
    }
    let b = parse_body(body)?;
    let field = |v: Option<&Value>| v.and_then(Value::as_str).map(String::from);
    Ok(DeleteOptions {
        propagation: field(b.get("propagationPolicy")),
        precondition_uid: field(b.pointer("/preconditions/uid")),
    })
}

#[allow(clippy::too_many_arguments)]
fn resource(
    st: &Arc<AppState>,
    group: &str,
    version: &str,
    rest: &[&str],
    method: &Method,
    uri: &Uri,
    q: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found_path(uri.path());
    // `/namespaces/{ns}/status` is the namespace's own subresource, not a resource in it.
    let scoped =
        rest.len() >= 3 && rest[0] == "namespaces" && !(rest.len() == 3 && rest[2] == "status");
    let (namespace, rest) = if scoped {
        (Some(rest[1]), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, sub) = match rest {
        [p] => (*p, None, None),
        [p, n] => (*p, Some(*n), None),
        [p, n, s] => (*p, Some(*n), Some(*s)),
        _ => return Err(not_found()),
    };
    let res = st
        .lock()
        .registry
        .lookup(group, version, plural)
        .ok_or_else(not_found)?;
    if namespace.is_some() && !res.namespaced {
        return Err(not_found());
    }
    if res.namespaced && namespace.is_none() && (name.is_some() || *method != Method::GET) {
        return Err(not_found());
    }
    if let Some(s) = sub
        && !(s == "status" && res.status_subresource)
    {
        return Err(not_found());
    }
    let t = Target {
        res,
        version: version.to_string(),
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        subresource: sub.map(String::from),
    };
    let opts = WriteOptions {
        manager: manager(q, headers),
        manager_explicit: q.get("fieldManager").is_some_and(|m| !m.is_empty()),
        force: flag(q, "force"),
        strict: q.get("fieldValidation").is_some_and(|v| v == "Strict"),
    };
    let is_watch = flag(q, "watch");
    let metadata_only = accepts(headers, "as=PartialObjectMetadata");

    match (method.clone(), name.is_some()) {
        (Method::GET, _) if is_watch => {
            let mut sel = selectors(q)?;
            if let Some(n) = name {
                sel.fields = FieldSelector::parse(&format!("metadata.name={n}"))?;
            }
            let params = WatchParams {
                resource_version: q.get("resourceVersion").cloned(),
                bookmarks: flag(q, "allowWatchBookmarks"),
                timeout: q
                    .get("timeoutSeconds")
                    .and_then(|s| s.parse::<u64>().ok())
                    .map(Duration::from_secs),
                send_initial_events: flag(q, "sendInitialEvents"),
                selectors: sel,
                metadata_only,
            };
            let t = Target {
                name: None,
                subresource: None,
                ..t
            };
            Ok(watch::serve(st.clone(), t, params))
        }
        (Method::GET, false) => {
            let lo = ListOptions {
                selectors: selectors(q)?,
                limit: q.get("limit").and_then(|l| l.parse().ok()),
                continue_token: q.get("continue").filter(|c| !c.is_empty()).cloned(),
            };
            let list = ops::list(&st.lock(), &t, &lo)?;
            ok(&if metadata_only {
                partial_metadata_list(&list)
            } else {
                list
            })
        }
        (Method::GET, true) => {
            let obj = ops::get(&st.lock(), &t)?;
            ok(&if metadata_only {
                partial_metadata(&obj)
            } else {
                obj
            })
        }
        (Method::POST, false) => {
            let obj = parse_body(body)?;
            let created = ops::create(&mut st.lock(), &t, obj, &opts)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, true) => {
            let obj = parse_body(body)?;
            ok(&ops::update(&mut st.lock(), &t, obj, &opts)?)
        }
        (Method::PATCH, true) => {
            let ct = headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchType::from_content_type(ct).ok_or_else(|| {
                ApiError::unsupported_media_type(format!(
                    "the body of the request was in an unknown format - accepted media types include: \
                     application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml \
                     (got {ct:?})"
                ))
            })?;
            let (obj, created) = ops::patch(&mut st.lock(), &t, kind, body, &opts)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &obj))
        }
        (Method::DELETE, true) => {
            let d = delete_options(body)?;
            match ops::delete(&mut st.lock(), &t, &d)? {
                Deleted::Pending(obj) => ok(&obj),
                Deleted::Gone(obj) => ok(&success_status(
                    &t.res.group,
                    &t.res.plural,
                    t.name(),
                    crate::object::uid(&obj),
                )),
            }
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            uri.path()
        ))),
    }
}
