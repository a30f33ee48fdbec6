//! The ARM API: every request that is not the token endpoint or the admin API. Routes a
//! request to the identity or its federated identity credentials, after the checks every ARM
//! call gets, in ARM's order: the call is counted, the bearer token must be one the fake token
//! endpoint issued for an ARM resource, an injected fault is served, and the `api-version`
//! must serve the resource.

mod credentials;
mod identity;
mod path;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use self::credentials::Outcome;
use self::path::{ArmPath, parse_arm_path, parse_identity_path};
use crate::error::{ArmFault, fault_response};
use crate::model::{IDENTITY_API_VERSIONS, IdentityRef, Operation, SUPPORTED_API_VERSIONS};
use crate::state::{FakeState, Shared};

pub(crate) async fn arm_endpoint(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let outcome = arm_locked(&shared, &method, &uri, &headers, &body);
    match outcome {
        Outcome::Now(response) => response,
        Outcome::After(deadline, response) => {
            tokio::time::sleep_until(deadline).await;
            response
        }
    }
}

fn arm_locked(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Outcome {
    if let Some(path) = parse_arm_path(uri.path()) {
        return credentials_call(shared, method, uri, headers, body, &path);
    }
    // Only reading an identity is served; creating, updating or deleting one is up to the
    // test, through the admin API.
    if method == Method::GET
        && let Some(identity) = parse_identity_path(uri.path())
    {
        return Outcome::Now(identity_call(shared, uri, headers, &identity));
    }
    ArmFault::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("The path '{}' is not served by the fake ARM.", uri.path()),
    )
    .into()
}

/// A federated identity credential operation, by method and path.
#[derive(Clone, Copy)]
enum CredentialCall {
    List,
    Get,
    Put,
    Delete,
}

impl CredentialCall {
    fn of(method: &Method, path: &ArmPath) -> Option<CredentialCall> {
        match (method, path.credential.is_some()) {
            (&Method::GET, false) => Some(CredentialCall::List),
            (&Method::GET, true) => Some(CredentialCall::Get),
            (&Method::PUT, true) => Some(CredentialCall::Put),
            (&Method::DELETE, true) => Some(CredentialCall::Delete),
            _ => None,
        }
    }

    fn operation(self) -> Operation {
        match self {
            CredentialCall::List => Operation::List,
            CredentialCall::Get => Operation::Get,
            CredentialCall::Put => Operation::Put,
            CredentialCall::Delete => Operation::Delete,
        }
    }
}

fn credentials_call(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    path: &ArmPath,
) -> Outcome {
    let Some(call) = CredentialCall::of(method, path) else {
        shared.lock().calls.other += 1;
        return ArmFault::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("The requested method '{method}' is not allowed on this resource."),
        )
        .into();
    };
    let op = call.operation();
    let mut state = shared.lock();
    state.calls.bump(op);
    if let Err(e) = check_auth(&state, headers) {
        return e.into();
    }
    if let Some(fault) = state.take_fault(op) {
        return Outcome::Now(fault_response(&fault, uri.path()));
    }
    let query = query_of(uri);
    let api_version = match check_api_version(&query, SUPPORTED_API_VERSIONS) {
        Ok(v) => v,
        Err(e) => return e.into(),
    };
    let result = match call {
        CredentialCall::List => {
            credentials::list(&mut state, path, &query, &api_version, uri.path())
        }
        CredentialCall::Get => credentials::get(&mut state, path),
        CredentialCall::Put => credentials::put(&mut state, path, body),
        CredentialCall::Delete => credentials::delete(&mut state, path),
    };
    result.unwrap_or_else(Outcome::from)
}

/// `GET` of the identity itself. Counted in [`crate::CallCounts::get_identity`]; there is no
/// [`Operation`] for it, so no fault can be injected on it.
fn identity_call(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
    reference: &IdentityRef,
) -> Response {
    let mut state = shared.lock();
    state.calls.get_identity += 1;
    let checked = check_auth(&state, headers)
        .and_then(|()| check_api_version(&query_of(uri), IDENTITY_API_VERSIONS))
        .and_then(|_| identity::get(&state, reference));
    checked.unwrap_or_else(IntoResponse::into_response)
}

fn query_of(uri: &Uri) -> HashMap<String, String> {
    Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn check_auth(state: &FakeState, headers: &HeaderMap) -> Result<(), ArmFault> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ArmFault::new(
            StatusCode::UNAUTHORIZED,
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        ));
    };
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or("");
    match state.tokens.get(token) {
        Some(issued) if state.is_arm_resource(&issued.resource) => Ok(()),
        // ARM's answer to a valid token for another resource (e.g. an Azure DevOps token).
        Some(issued) => Err(ArmFault::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationTokenAudience",
            format!(
                "The access token has been obtained for wrong audience or resource '{}'. It should exactly match with one of the allowed audiences 'https://management.core.windows.net/','https://management.core.windows.net','https://management.azure.com/','https://management.azure.com'.",
                issued.resource
            ),
        )),
        None => Err(ArmFault::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        )),
    }
}

/// The request's `api-version`, if it is one of `supported`.
fn check_api_version(
    query: &HashMap<String, String>,
    supported: &[&str],
) -> Result<String, ArmFault> {
    let Some(version) = query.get("api-version") else {
        return Err(ArmFault::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if supported.contains(&version.as_str()) {
        Ok(version.clone())
    } else {
        Err(ArmFault::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                supported.join(",")
            ),
        ))
    }
}
