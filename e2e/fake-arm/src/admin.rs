//! The admin (test-control) API over HTTP, under `/_fake/` of the ARM listener, for the
//! `fake-arm` binary: the same operations the Rust methods on [`FakeArm`](crate::FakeArm) offer
//! in-process.
//!
//! | route | does |
//! |---|---|
//! | `POST /_fake/identities` `{subscriptionId, resourceGroup, name, clientId?}` | create (or keep) an identity; `clientId` sets its client id |
//! | `GET/POST /_fake/identities/{sub}/{rg}/{name}/credentials` | list / seed credentials |
//! | `GET/POST/DELETE /_fake/faults` | pending faults / inject one / clear all |
//! | `GET/DELETE /_fake/calls` | call counters / reset them |
//! | `PUT /_fake/config` | [`FakeConfig`] knobs |
//! | `GET /_fake/token-requests` | requests the token endpoint accepted |
//! | `POST /_fake/entra/trusted-clients` `{clientId}` | [`FakeArm::trust_client`] |
//! | `POST /_fake/entra/applications` `{clientId}` | [`FakeArm::register_application`] |
//! | `DELETE /_fake/entra/applications/{clientId}` | [`FakeArm::remove_application`] (404 if absent) |
//! | `GET/POST/DELETE /_fake/entra/applications/{clientId}/federated-credentials` | list / [`FakeArm::register_federated_credential`] `{issuer, subject, audience}` / [`FakeArm::unregister_federated_credential`] `{issuer, subject}` |
//! | `PUT /_fake/entra/applications/{clientId}/propagation-delay` `{milliseconds}` | [`FakeArm::set_propagation_delay`] |
//! | `POST /_fake/entra/trusted-cas` (PEM body) | [`FakeArm::trust_issuer_ca_pem`] (400 if not a certificate) |
//! | `GET/POST /_fake/entra/insecure-issuers` `{issuer, fetchBase}` | list / [`FakeArm::allow_insecure_issuer`] |
//! | `GET /_fake/devops` | organizations with their members and repositories |
//! | `PUT /_fake/devops/organizations/{org}` `{tenantId}` | [`FakeArm::create_devops_organization`] |
//! | `POST /_fake/devops/repositories` `{organization, project, repository}` | [`FakeArm::create_devops_repository`] |
//! | `POST/DELETE /_fake/devops/members` `{organization, clientId}` | [`FakeArm::add_devops_member`] / [`FakeArm::remove_devops_member`] (404 if not a member) |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

#[cfg(doc)]
use crate::FakeArm;
use crate::error::parent_not_found;
use crate::model::{
    CallCounts, FakeConfig, Fault, FederatedCredential, IdentityRef, StoredCredential,
    TokenRequestRecord,
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

/// `{clientId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientIdBody {
    client_id: String,
}

pub(crate) async fn trust_client(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<ClientIdBody>,
) -> StatusCode {
    shared.lock().trust_client(&body.client_id);
    StatusCode::NO_CONTENT
}

pub(crate) async fn register_application(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<ClientIdBody>,
) -> StatusCode {
    shared.lock().register_application(&body.client_id);
    StatusCode::CREATED
}

pub(crate) async fn remove_application(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> StatusCode {
    if shared.lock().remove_application(&client_id) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

pub(crate) async fn registered_credentials(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
) -> Response {
    match shared.lock().registered_credentials(&client_id) {
        Some(credentials) => Json(credentials).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

pub(crate) async fn register_credential(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    Json(credential): Json<FederatedCredential>,
) -> StatusCode {
    shared.lock().register_credential(&client_id, credential);
    StatusCode::CREATED
}

/// `{issuer, subject}`: which registered credential to remove.
#[derive(Debug, Deserialize)]
pub(crate) struct IssuerSubject {
    issuer: String,
    subject: String,
}

pub(crate) async fn unregister_credential(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    Json(body): Json<IssuerSubject>,
) -> StatusCode {
    if shared
        .lock()
        .unregister_credential(&client_id, &body.issuer, &body.subject)
    {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// `{milliseconds}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Delay {
    milliseconds: u64,
}

pub(crate) async fn propagation_delay(
    State(shared): State<Arc<Shared>>,
    Path(client_id): Path<String>,
    Json(body): Json<Delay>,
) -> StatusCode {
    shared
        .lock()
        .set_propagation_delay(&client_id, Duration::from_millis(body.milliseconds));
    StatusCode::NO_CONTENT
}

pub(crate) async fn trusted_ca(State(shared): State<Arc<Shared>>, pem: String) -> Response {
    match shared.lock().entra.trust.add_ca_pem(&pem) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// `{issuer, fetchBase}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InsecureIssuer {
    issuer: String,
    fetch_base: String,
}

pub(crate) async fn allow_insecure_issuer(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<InsecureIssuer>,
) -> StatusCode {
    shared
        .lock()
        .entra
        .trust
        .allow_insecure(&body.issuer, &body.fetch_base);
    StatusCode::NO_CONTENT
}

pub(crate) async fn insecure_issuers(
    State(shared): State<Arc<Shared>>,
) -> Json<BTreeMap<String, String>> {
    Json(shared.lock().entra.trust.insecure_issuers().clone())
}

pub(crate) async fn devops(State(shared): State<Arc<Shared>>) -> Response {
    let summary = shared.lock().devops_summary();
    let body: BTreeMap<String, serde_json::Value> = summary
        .into_iter()
        .map(|(name, (members, repositories))| {
            (
                name,
                json!({"members": members, "repositories": repositories}),
            )
        })
        .collect();
    Json(body).into_response()
}

/// `{tenantId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Tenant {
    tenant_id: String,
}

pub(crate) async fn devops_organization(
    State(shared): State<Arc<Shared>>,
    Path(organization): Path<String>,
    Json(body): Json<Tenant>,
) -> StatusCode {
    shared
        .lock()
        .devops_organization(&organization, Some(&body.tenant_id));
    StatusCode::NO_CONTENT
}

/// `{organization, project, repository}`.
#[derive(Debug, Deserialize)]
pub(crate) struct Repository {
    organization: String,
    project: String,
    repository: String,
}

pub(crate) async fn devops_repository(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Repository>,
) -> StatusCode {
    shared
        .lock()
        .devops_organization(&body.organization, None)
        .repositories
        .insert((
            body.project.to_ascii_lowercase(),
            body.repository.to_ascii_lowercase(),
        ));
    StatusCode::CREATED
}

/// `{organization, clientId}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Member {
    organization: String,
    client_id: String,
}

pub(crate) async fn add_devops_member(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Member>,
) -> StatusCode {
    shared
        .lock()
        .devops_organization(&body.organization, None)
        .members
        .insert(body.client_id.to_ascii_lowercase());
    StatusCode::NO_CONTENT
}

pub(crate) async fn remove_devops_member(
    State(shared): State<Arc<Shared>>,
    Json(body): Json<Member>,
) -> StatusCode {
    let removed = shared
        .lock()
        .devops
        .get_mut(&body.organization.to_ascii_lowercase())
        .is_some_and(|o| o.members.remove(&body.client_id.to_ascii_lowercase()));
    if removed {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
