//! HTTP routing: one fallback handler parses Kubernetes API paths
//! (`/api/v1/namespaces/{ns}/{plural}/{name}/{sub}`, `/apis/{g}/{v}/...`) and dispatches to
//! discovery, [`crate::ops`] or [`crate::watch`]. Every response leaves through [`handle`].
//! Store work happens synchronously under the lock; the lock is never held across an await.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::audit::AuditEntry;
use crate::discovery;
use crate::error::ApiError;
use crate::metrics;
use crate::object;
use crate::ops::{self, Deleted, Target};
use crate::request::Request;
use crate::resource_path::{ResourcePath, resource_path};
use crate::response::{json_response, partial_metadata, partial_metadata_list, success_status};
use crate::state::AppState;
use crate::tokens::{self, SigningKey};
use crate::watch;

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
    // Taken first: a request counts in the server "process" that received it.
    let requests = st.requests();
    let labels = metrics::labels(&method, &uri, &headers);
    let req = Request::new(&method, &uri, &headers, &body);
    // The one step that awaits: the issuer's key, made on its first use.
    let key = match needs_signing_key(&req) {
        true => st.signing_key().await.map(Some),
        false => Ok(None),
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let injected = labels
        .as_ref()
        .and_then(|l| st.faults.answer(l, user_agent));
    let response = match injected {
        Some(answer) => Ok(answer),
        None => key.and_then(|key| dispatch(&st, &req, key.as_deref())),
    };
    let response = match response {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%method, %uri, error = %e, "request failed");
            e.into_response()
        }
    };
    let watching = req.is_watch() && response.status() == StatusCode::OK;
    if let Some(audit) = &st.audit {
        let code = response.status().as_u16();
        audit.record(&AuditEntry::new(&method, &uri, &headers, code, watching));
    }
    let Some(mut labels) = labels else {
        return response;
    };
    labels.code = response.status().as_u16().to_string();
    if watching {
        // A watch is counted when it ends: its body carries the count.
        let count = metrics::CountOnDrop::new(requests, labels);
        let (parts, body) = response.into_parts();
        let body = body.into_data_stream().map(move |chunk| {
            let _ = &count;
            chunk
        });
        return Response::from_parts(parts, Body::from_stream(body));
    }
    requests.record(labels);
    response
}

/// Whether the request needs the issuer's signing key: the JWKS, or a TokenRequest.
fn needs_signing_key(req: &Request) -> bool {
    let segs: Vec<&str> = req
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["openid", "v1", "jwks"] => req.is_read(),
        [.., "serviceaccounts", _, "token"] => req.method == Method::POST,
        _ => false,
    }
}

fn dispatch(
    st: &Arc<AppState>,
    req: &Request,
    key: Option<&SigningKey>,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = req
        .uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["healthz" | "readyz" | "livez", ..] => Ok((StatusCode::OK, "ok").into_response()),
        ["api", version, rest @ ..] if !rest.is_empty() => {
            resource(st, "", version, rest, req, key)
        }
        ["apis", group, version, rest @ ..] if !rest.is_empty() => {
            resource(st, group, version, rest, req, key)
        }
        segs => document(st, req, segs, key),
    }
}

/// The read-only documents: discovery, the service-account issuer's OIDC discovery and the
/// metrics. Any other path is not found, whatever the method.
fn document(
    st: &AppState,
    req: &Request,
    segs: &[&str],
    key: Option<&SigningKey>,
) -> Result<Response, ApiError> {
    let found = |doc: Option<Value>| doc.map_or_else(|| Err(req.not_found()), |d| ok(&d));
    let answer = match segs {
        [] => ok(
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version", "/.well-known/openid-configuration", "/metrics", "/openid/v1/jwks"]}),
        ),
        ["metrics"] => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, metrics::TEXT_FORMAT)],
            st.requests().snapshot().exposition(),
        )
            .into_response()),
        ["version"] => ok(&discovery::version()),
        [".well-known", "openid-configuration"] => {
            ok(&discovery::openid_configuration(&st.issuer, &st.url))
        }
        ["openid", "v1", "jwks"] => match key {
            Some(key) => ok(key.jwks()),
            None => Err(req.method_not_allowed()),
        },
        ["api" | "apis"] if req.accepts("as=APIGroupDiscoveryList") => {
            let doc = discovery::aggregated(&st.lock().registry, segs[0] == "api");
            Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, discovery::AGGREGATED_CONTENT_TYPE)],
                doc.to_string(),
            )
                .into_response())
        }
        ["api"] => {
            let server = st.url.trim_start_matches("http://").to_string();
            ok(&discovery::core_versions(&server))
        }
        ["apis"] => ok(&discovery::group_list(&st.lock().registry)),
        ["apis", group] => found(discovery::group(&st.lock().registry, group)),
        ["api", version] => found(discovery::resource_list(&st.lock().registry, "", version)),
        ["apis", group, version] => found(discovery::resource_list(
            &st.lock().registry,
            group,
            version,
        )),
        _ => return Err(req.not_found()),
    };
    if req.is_read() {
        answer
    } else {
        Err(req.method_not_allowed())
    }
}

/// What `rest` (the path after `/api/{v}` or `/apis/{g}/{v}`) addresses, if it is served.
fn target(
    st: &AppState,
    group: &str,
    version: &str,
    rest: &[&str],
    req: &Request,
) -> Result<Target, ApiError> {
    let ResourcePath {
        namespace,
        plural,
        name,
        subresource: sub,
        ..
    } = resource_path(group, version, rest).ok_or_else(|| req.not_found())?;
    let res = st
        .lock()
        .registry
        .lookup(group, version, plural)
        .ok_or_else(|| req.not_found())?;
    if namespace.is_some() && !res.namespaced {
        return Err(req.not_found());
    }
    // Only a list (or watch) spans namespaces.
    if res.namespaced && namespace.is_none() && (name.is_some() || req.method != Method::GET) {
        return Err(req.not_found());
    }
    // ServiceAccounts' `token` is the TokenRequest subresource.
    let token = res.group.is_empty() && res.plural == "serviceaccounts";
    if let Some(s) = sub
        && !(s == "status" && res.status_subresource)
        && !(s == "token" && token)
    {
        return Err(req.not_found());
    }
    Ok(Target {
        res,
        version: version.to_string(),
        namespace: namespace.map(String::from),
        name: name.map(String::from),
        subresource: sub.map(String::from),
    })
}

/// The verbs on a resource path.
fn resource(
    st: &Arc<AppState>,
    group: &str,
    version: &str,
    rest: &[&str],
    req: &Request,
    key: Option<&SigningKey>,
) -> Result<Response, ApiError> {
    let t = target(st, group, version, rest, req)?;
    req.check_supported()?;
    if t.subresource.as_deref() == Some("token") {
        // Create is the TokenRequest subresource's only verb.
        return match key {
            Some(key) if req.method == Method::POST => {
                let created = tokens::create(&st.lock(), key, &st.issuer, &t, req.object()?)?;
                Ok(json_response(StatusCode::CREATED, &created))
            }
            _ => Err(req.method_not_allowed()),
        };
    }
    let opts = req.write_options();
    let metadata_only = req.accepts("as=PartialObjectMetadata");
    match (req.method.clone(), t.name.is_some()) {
        (Method::GET, _) if req.is_watch() => {
            let params = req.watch_params(t.name.as_deref(), metadata_only)?;
            let t = Target {
                name: None,
                subresource: None,
                ..t
            };
            Ok(watch::serve(st.clone(), t, params))
        }
        (Method::GET, false) => {
            let list = ops::list(&st.lock(), &t, &req.list_options()?)?;
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
            let body = req.object()?;
            let created = ops::create(&mut st.lock(), &t, body, &opts)?;
            Ok(json_response(StatusCode::CREATED, &created))
        }
        (Method::PUT, true) => {
            let body = req.object()?;
            ok(&ops::update(&mut st.lock(), &t, body, &opts)?)
        }
        (Method::PATCH, true) => {
            let kind = req.patch_type()?;
            let (obj, created) = ops::patch(&mut st.lock(), &t, kind, req.body, &opts)?;
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(json_response(code, &obj))
        }
        (Method::DELETE, true) => {
            let d = req.delete_options()?;
            match ops::delete(&mut st.lock(), &t, &d)? {
                Deleted::Pending(obj) => ok(&obj),
                Deleted::Gone(obj) => ok(&success_status(
                    &t.res.group,
                    &t.res.plural,
                    t.name(),
                    object::uid(&obj),
                )),
            }
        }
        _ => Err(req.method_not_allowed()),
    }
}
