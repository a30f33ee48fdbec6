//! The admin (test-control) API over HTTP, under `/_fake/`, for the `fake-arm` binary: the same
//! operations the Rust methods on [`FakeArm`](crate::FakeArm) offer in-process.
//!
//! | route | does |
//! |---|---|
//! | `POST /_fake/identities` `{subscriptionId, resourceGroup, name, clientId?}` | create (or keep) an identity; `clientId` sets its client id |
//! | `GET/POST /_fake/identities/{sub}/{rg}/{name}/credentials` | list / seed credentials |
//! | `GET/POST/DELETE /_fake/faults` | pending faults / inject one / clear all |
//! | `GET/DELETE /_fake/calls` | call counters / reset them |
//! | `PUT /_fake/config` | [`FakeConfig`] knobs |
//! | `GET /_fake/token-requests` | requests the token endpoint accepted |

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::error::parent_not_found;
use crate::model::{
    CallCounts, FakeConfig, Fault, IdentityRef, StoredCredential, TokenRequestRecord,
};
use crate::state::Shared;

/// Body of `POST /_fake/identities`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CreateIdentity {
    #[serde(flatten)]
    reference: IdentityRef,
    /// The identity's client id; [`IdentityRef::default_client_id`] for a new identity when
    /// absent.
    #[serde(default)]
    client_id: Option<String>,
}

pub(crate) async fn create_identity(
    State(shared): State<Arc<Shared>>,
    Json(request): Json<CreateIdentity>,
) -> Response {
    let id = request.reference.arm_id();
    let key = request.reference.key();
    let mut state = shared.lock();
    state.create_identity(request.reference, request.client_id);
    let client_id = state
        .identities
        .get(&key)
        .map(|identity| identity.client_id.clone());
    (
        StatusCode::CREATED,
        Json(json!({ "id": id, "clientId": client_id })),
    )
        .into_response()
}

pub(crate) async fn list_credentials(
    State(shared): State<Arc<Shared>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
) -> Response {
    let reference = IdentityRef::new(sub, rg, name);
    let state = shared.lock();
    match state.identities.get(&reference.key()) {
        Some(identity) => {
            Json(identity.credentials.values().cloned().collect::<Vec<_>>()).into_response()
        }
        None => parent_not_found(&reference, "read").into_response(),
    }
}

pub(crate) async fn seed_credential(
    State(shared): State<Arc<Shared>>,
    Path((sub, rg, name)): Path<(String, String, String)>,
    Json(credential): Json<StoredCredential>,
) -> Response {
    let reference = IdentityRef::new(sub, rg, name);
    match shared.lock().seed_credential(&reference, credential) {
        Ok(stored) => (StatusCode::CREATED, Json(stored)).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(shared.lock().faults.clone())
}

pub(crate) async fn inject_fault(
    State(shared): State<Arc<Shared>>,
    Json(fault): Json<Fault>,
) -> StatusCode {
    shared.lock().faults.push(fault);
    StatusCode::NO_CONTENT
}

pub(crate) async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().faults.clear();
    StatusCode::NO_CONTENT
}

pub(crate) async fn calls(State(shared): State<Arc<Shared>>) -> Json<CallCounts> {
    Json(shared.lock().calls.clone())
}

pub(crate) async fn reset_calls(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().calls = CallCounts::default();
    StatusCode::NO_CONTENT
}

pub(crate) async fn config(
    State(shared): State<Arc<Shared>>,
    Json(config): Json<FakeConfig>,
) -> StatusCode {
    shared.lock().apply_config(&config);
    StatusCode::NO_CONTENT
}

pub(crate) async fn token_requests(
    State(shared): State<Arc<Shared>>,
) -> Json<Vec<TokenRequestRecord>> {
    Json(shared.lock().token_requests.clone())
}
