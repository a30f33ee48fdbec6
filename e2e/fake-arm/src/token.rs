//! The fake Microsoft Entra token endpoint: `POST /{tenant}/oauth2/v2.0/token`, client
//! credentials with a federated client assertion. Tokens it issues are what the ARM routes
//! accept as `Authorization: Bearer ...`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::add_retry_after;
use crate::model::{Operation, TokenRequestRecord};
use crate::state::Shared;

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An Entra (AAD) error body: `{"error", "error_description"}`.
fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

pub(crate) async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let mut state = shared.lock();
    state.calls.bump(Operation::Token);
    if let Some(fault) = state.take_fault(Operation::Token) {
        let mut response = aad_error(
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            fault.code.as_deref().unwrap_or("temporarily_unavailable"),
            fault
                .message
                .as_deref()
                .unwrap_or("AADSTS50196: injected fault"),
        );
        add_retry_after(&mut response, fault.retry_after.as_deref());
        return response;
    }
    let Ok(Form(form)) = form else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS900144: The request body must be application/x-www-form-urlencoded.",
        );
    };
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    for required in [
        "grant_type",
        "client_id",
        "scope",
        "client_assertion_type",
        "client_assertion",
    ] {
        if field(required).is_empty() {
            return aad_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!(
                    "AADSTS900144: The request body must contain the following parameter: '{required}'."
                ),
            );
        }
    }
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if field("client_assertion_type") != JWT_BEARER {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "AADSTS50027: Invalid client_assertion_type.",
        );
    }
    if !field("scope").ends_with("/.default") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    // A random (v4) suffix so tokens from two fakes never collide; not a secret.
    let token = format!(
        "fake-arm-token-{}-{}",
        state.issued.len() + 1,
        uuid::Uuid::new_v4().simple()
    );
    state.tokens.insert(token.clone());
    state.issued.push(token.clone());
    let record = TokenRequestRecord {
        tenant,
        client_id: field("client_id").to_string(),
        scope: field("scope").to_string(),
        client_assertion: field("client_assertion").to_string(),
    };
    state.token_requests.push(record);
    let expires_in = state.token_expires_in;
    Json(json!({
        "token_type": "Bearer",
        "expires_in": expires_in,
        "ext_expires_in": expires_in,
        "access_token": token,
    }))
    .into_response()
}
