//! A fake Azure Resource Manager (federated identity credentials only) and a fake Microsoft Entra
//! token endpoint, served over plain HTTP on 127.0.0.1, for tests of the operator's ARM backend.
//!
//! It is deliberately *strict*: it enforces the parts of the ARM contract
//! (`../shared/upstream/azwi/msi-ManagedIdentity-2026-05-31.json` and the documented service
//! behaviour) that an operator can get wrong, so a test that passes here exercises the same
//! failure modes as the real service:
//!
//! * identities must exist first (created through the admin API) — otherwise 404
//!   `ParentResourceNotFound`, like ARM for a nested resource;
//! * FIC names match `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`; ARM names are case-insensitive;
//! * exactly one audience, an `https` issuer, issuer+subject unique per identity, at most 20
//!   credentials per identity;
//! * overlapping writes to one identity get 409
//!   `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity` (a write keeps the
//!   identity "busy" for a configurable window);
//! * every ARM call needs `Authorization: Bearer <token issued by the fake token endpoint>`;
//! * `api-version` must be one that serves FIC operations.
//!
//! Tests observe it through call counters (so "a steady state makes no writes" is an assertion,
//! not a hope), inject faults (status, count, `Retry-After`), and seed "foreign" credentials. The
//! admin surface is available both as Rust methods on [`FakeArm`] and over HTTP under `/_fake/`
//! (for the `fake-arm` binary used by the end-to-end suite).
//!
//! Error messages: the 400/404/409 texts for FICs are the ones Microsoft documents for
//! user-assigned identity FICs (and, for 409, the message ARM returns in deployments). The code
//! and message for the 20-credential limit could not be found in any public source available
//! when this was written, so [`LIMIT_ERROR_CODE`]/[`limit_error_message`] are a best guess and
//! are marked as such; clients must not depend on their exact text.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::FormRejection;
use axum::extract::{Form, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// At most this many federated identity credentials per user-assigned identity (Entra limit).
pub const MAX_CREDENTIALS_PER_IDENTITY: usize = 20;

/// API versions that serve `federatedIdentityCredentials` (stable and preview; 2018-11-30 does not).
pub const SUPPORTED_API_VERSIONS: &[&str] = &[
    "2022-01-31-preview",
    "2023-01-31",
    "2023-07-31-preview",
    "2024-11-30",
    "2025-01-31-preview",
    "2025-05-31-preview",
    "2026-05-31",
];

/// ARM resource type of a federated identity credential.
pub const CREDENTIAL_TYPE: &str =
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials";

/// Error code used for the 20-credential limit. NOT VERIFIED against the real service (see the
/// crate docs); ARM uses `BadRequest` for the other documented FIC validation errors.
pub const LIMIT_ERROR_CODE: &str = "BadRequest";

/// Documented message for a duplicate issuer+subject on one identity.
pub const DUPLICATE_MESSAGE: &str =
    "Issuer and subject combination already exists for this Managed Identity.";

/// Error code ARM returns for concurrent FIC writes under one identity (409).
pub const CONCURRENT_WRITE_CODE: &str =
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity";

/// Message for the 20-credential limit. NOT VERIFIED against the real service.
pub fn limit_error_message() -> String {
    format!(
        "The number of federated identity credentials for this managed identity cannot exceed {MAX_CREDENTIALS_PER_IDENTITY}."
    )
}

/// One kind of call the fake serves; used for counters and fault injection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    /// `GET .../federatedIdentityCredentials/{name}`
    Get,
    /// `PUT .../federatedIdentityCredentials/{name}`
    Put,
    /// `DELETE .../federatedIdentityCredentials/{name}`
    Delete,
    /// `GET .../federatedIdentityCredentials` (each page counts once)
    List,
    /// `POST /{tenant}/oauth2/v2.0/token`
    Token,
}

/// Calls received since start or the last [`FakeArm::reset_calls`], by operation.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    pub get: u64,
    pub put: u64,
    pub delete: u64,
    pub list: u64,
    pub token: u64,
    /// Requests to an ARM path with a method the API does not have.
    pub other: u64,
    /// Writes rejected with 409 because another write to the same identity was in flight.
    pub conflicts: u64,
}

impl CallCounts {
    /// PUT + DELETE calls: what "a steady state makes no writes" is asserted on.
    pub fn writes(&self) -> u64 {
        self.put + self.delete
    }

    fn bump(&mut self, op: Operation) {
        match op {
            Operation::Get => self.get += 1,
            Operation::Put => self.put += 1,
            Operation::Delete => self.delete += 1,
            Operation::List => self.list += 1,
            Operation::Token => self.token += 1,
        }
    }
}

/// A fault to return instead of serving the next `count` calls of `operation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fault {
    pub operation: Operation,
    /// HTTP status to answer with (e.g. 429, 503, 403).
    pub status: u16,
    /// How many consecutive calls of `operation` fail (default 1).
    #[serde(default = "one")]
    pub count: u32,
    /// Value of the `Retry-After` header, verbatim (seconds or an HTTP date).
    #[serde(default)]
    pub retry_after: Option<String>,
    /// ARM error code; a status-appropriate default when absent.
    #[serde(default)]
    pub code: Option<String>,
    /// ARM error message; a status-appropriate default when absent.
    #[serde(default)]
    pub message: Option<String>,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault of `status` for the next call of `operation`.
    pub fn new(operation: Operation, status: u16) -> Self {
        Fault {
            operation,
            status,
            count: 1,
            retry_after: None,
            code: None,
            message: None,
        }
    }

    /// Fail the next `count` calls instead of one.
    pub fn times(mut self, count: u32) -> Self {
        self.count = count;
        self
    }

    /// Add a `Retry-After` header (seconds or HTTP date).
    pub fn retry_after(mut self, value: impl Into<String>) -> Self {
        self.retry_after = Some(value.into());
        self
    }

    /// Set the ARM error code and message.
    pub fn error(mut self, code: impl Into<String>, message: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self.message = Some(message.into());
        self
    }
}

/// A user-assigned managed identity, addressed like ARM addresses it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdentityRef {
    pub subscription_id: String,
    pub resource_group: String,
    pub name: String,
}

impl IdentityRef {
    pub fn new(
        subscription_id: impl Into<String>,
        resource_group: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        IdentityRef {
            subscription_id: subscription_id.into(),
            resource_group: resource_group.into(),
            name: name.into(),
        }
    }

    /// The identity's ARM resource id (casing as in the service's example responses).
    pub fn arm_id(&self) -> String {
        format!(
            "/subscriptions/{}/resourcegroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription_id, self.resource_group, self.name
        )
    }

    /// ARM ids are case-insensitive; this is the map key.
    fn key(&self) -> String {
        self.arm_id().to_ascii_lowercase()
    }
}

/// A federated identity credential as stored by the fake.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCredential {
    pub name: String,
    pub issuer: String,
    pub subject: String,
    pub audiences: Vec<String>,
}

impl StoredCredential {
    pub fn new(
        name: impl Into<String>,
        issuer: impl Into<String>,
        subject: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        StoredCredential {
            name: name.into(),
            issuer: issuer.into(),
            subject: subject.into(),
            audiences: vec![audience.into()],
        }
    }
}

/// One request the token endpoint accepted (tests check the assertion was re-read).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequestRecord {
    pub tenant: String,
    pub client_id: String,
    pub scope: String,
    pub client_assertion: String,
}

/// Knobs, settable over HTTP with `PUT /_fake/config` (absent fields are left unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FakeConfig {
    /// How long a write keeps its identity busy (overlapping writes get 409).
    pub busy_window_ms: Option<u64>,
    /// Serve lists in pages of this size (with `nextLink`); `0` = no paging.
    pub page_size: Option<usize>,
    /// `expires_in` advertised by the token endpoint. Issued tokens stay valid at the fake
    /// regardless, so a test can force client-side refreshes without getting 401s.
    pub token_expires_in: Option<u64>,
}

/// An ARM error as the fake answers it (also returned by [`FakeArm::seed_credential`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct ArmFault {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ArmFault {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ArmFault {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl IntoResponse for ArmFault {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

struct Identity {
    reference: IdentityRef,
    /// Keyed by lowercased name: ARM resource names are case-insensitive.
    credentials: BTreeMap<String, StoredCredential>,
    busy_until: Option<Instant>,
}

struct FakeState {
    identities: HashMap<String, Identity>,
    tokens: HashSet<String>,
    issued: Vec<String>,
    token_requests: Vec<TokenRequestRecord>,
    calls: CallCounts,
    faults: Vec<Fault>,
    busy_window: Duration,
    page_size: usize,
    token_expires_in: u64,
    base_url: String,
}

struct Shared {
    state: Mutex<FakeState>,
}

impl Shared {
    /// The state lock is never held across an await and no code path panics while holding
    /// it; recovering from poisoning keeps one failed test from cascading into others.
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A running fake ARM + token endpoint. Dropping it stops the server.
pub struct FakeArm {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for FakeArm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeArm").field("addr", &self.addr).finish()
    }
}

impl FakeArm {
    /// Start on an ephemeral port of 127.0.0.1.
    pub async fn start() -> anyhow::Result<FakeArm> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start on `addr` (use port 0 for an ephemeral port).
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<FakeArm> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(FakeState {
                identities: HashMap::new(),
                tokens: HashSet::new(),
                issued: Vec::new(),
                token_requests: Vec::new(),
                calls: CallCounts::default(),
                faults: Vec::new(),
                busy_window: Duration::from_millis(50),
                page_size: 0,
                token_expires_in: 3599,
                base_url: format!("http://{addr}"),
            }),
        });
        let app = router(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
        });
        tracing::info!(%addr, "fake ARM listening");
        Ok(FakeArm {
            shared,
            addr,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` — both the ARM endpoint and the authority host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving and wait for the server task to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }

    /// Create (or keep) a user-assigned identity so FIC calls under it succeed.
    pub fn create_identity(
        &self,
        subscription_id: &str,
        resource_group: &str,
        name: &str,
    ) -> IdentityRef {
        let reference = IdentityRef::new(subscription_id, resource_group, name);
        create_identity(&mut self.shared.lock(), reference.clone());
        reference
    }

    /// Delete an identity and all its credentials (as when someone deletes it in Azure).
    pub fn delete_identity(&self, identity: &IdentityRef) -> bool {
        self.shared
            .lock()
            .identities
            .remove(&identity.key())
            .is_some()
    }

    /// The identity's credentials in ARM list order, or `None` if the identity does not exist.
    pub fn credentials(&self, identity: &IdentityRef) -> Option<Vec<StoredCredential>> {
        self.shared
            .lock()
            .identities
            .get(&identity.key())
            .map(|i| i.credentials.values().cloned().collect())
    }

    /// Add a credential as some other actor would (it is not counted as a call and ignores the
    /// busy window), with the same validation ARM applies to a PUT.
    pub fn seed_credential(
        &self,
        identity: &IdentityRef,
        credential: StoredCredential,
    ) -> Result<(), ArmFault> {
        let mut state = self.shared.lock();
        let identity = state
            .identities
            .get_mut(&identity.key())
            .ok_or_else(|| parent_not_found(identity, "write"))?;
        let body = CredentialBody {
            issuer: Some(credential.issuer),
            subject: Some(credential.subject),
            audiences: Some(credential.audiences),
        };
        apply_put(identity, &credential.name, body).map(|_| ())
    }

    /// Answer the next call(s) of `fault.operation` with `fault.status`.
    pub fn inject_fault(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Remove all pending faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Faults not yet consumed.
    pub fn pending_faults(&self) -> Vec<Fault> {
        self.shared.lock().faults.clone()
    }

    /// Calls received so far.
    pub fn calls(&self) -> CallCounts {
        self.shared.lock().calls.clone()
    }

    /// Reset the call counters to zero.
    pub fn reset_calls(&self) {
        self.shared.lock().calls = CallCounts::default();
    }

    /// How long an accepted write keeps its identity busy.
    pub fn set_busy_window(&self, window: Duration) {
        self.shared.lock().busy_window = window;
    }

    /// Serve lists in pages of `size` (`None` = everything in one page).
    pub fn set_page_size(&self, size: Option<usize>) {
        self.shared.lock().page_size = size.unwrap_or(0);
    }

    /// `expires_in` the token endpoint advertises from now on.
    pub fn set_token_expires_in(&self, seconds: u64) {
        self.shared.lock().token_expires_in = seconds;
    }

    /// Requests the token endpoint accepted, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        self.shared.lock().token_requests.clone()
    }

    /// Access tokens issued so far, oldest first (tests check none of them leaks into logs).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.shared.lock().issued.clone()
    }

    /// Invalidate every issued access token (as when Entra revokes them): the next ARM call
    /// with one gets 401 `InvalidAuthenticationToken`.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Apply a [`FakeConfig`] (absent fields unchanged).
    pub fn configure(&self, config: &FakeConfig) {
        apply_config(&mut self.shared.lock(), config);
    }
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Write `url` to `path` atomically (temp file in the same directory, then rename), so a
/// process polling for the file never reads a partial URL.
pub fn write_url_file(path: &Path, url: &str) -> std::io::Result<()> {
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fake-arm-url".to_string());
    let tmp = path.with_file_name(format!(".{file_name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, url)?;
    std::fs::rename(&tmp, path)
}

fn create_identity(state: &mut FakeState, reference: IdentityRef) {
    state
        .identities
        .entry(reference.key())
        .or_insert_with(|| Identity {
            reference,
            credentials: BTreeMap::new(),
            busy_until: None,
        });
}

fn apply_config(state: &mut FakeState, config: &FakeConfig) {
    if let Some(ms) = config.busy_window_ms {
        state.busy_window = Duration::from_millis(ms);
    }
    if let Some(size) = config.page_size {
        state.page_size = size;
    }
    if let Some(secs) = config.token_expires_in {
        state.token_expires_in = secs;
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token_endpoint))
        .route("/_fake/identities", post(admin_create_identity))
        .route(
            "/_fake/identities/{sub}/{rg}/{name}/credentials",
            get(admin_list_credentials).post(admin_seed_credential),
        )
        .route(
            "/_fake/faults",
            get(admin_list_faults)
                .post(admin_inject_fault)
                .delete(admin_clear_faults),
        )
        .route("/_fake/calls", get(admin_calls).delete(admin_reset_calls))
        .route("/_fake/config", axum::routing::put(admin_config))
        .route("/_fake/token-requests", get(admin_token_requests))
        .fallback(arm_endpoint)
        .with_state(shared)
}

// ---------------------------------------------------------------------------------------------
// Token endpoint
// ---------------------------------------------------------------------------------------------

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token_endpoint(
    State(shared): State<Arc<Shared>>,
    UrlPath(tenant): UrlPath<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Response {
    let mut state = shared.lock();
    state.calls.bump(Operation::Token);
    if let Some(fault) = take_fault(&mut state, Operation::Token) {
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
    let token = format!("fake-arm-token-{}-{}", state.issued.len() + 1, nonce());
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

/// Unpredictable-enough suffix so tokens from two fakes never collide; not a secret.
fn nonce() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// ARM endpoint
// ---------------------------------------------------------------------------------------------

/// `properties` of a FIC as sent by a client; all optional so the fake can answer missing
/// fields with ARM's validation error instead of a deserialisation failure.
#[derive(Debug, Default, Deserialize)]
struct CredentialBody {
    issuer: Option<String>,
    subject: Option<String>,
    audiences: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct PutBody {
    properties: Option<CredentialBody>,
}

struct ArmPath {
    identity: IdentityRef,
    credential: Option<String>,
}

/// Parse `/subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.ManagedIdentity/
/// userAssignedIdentities/{i}/federatedIdentityCredentials[/{n}]`; literal segments match
/// case-insensitively because ARM paths do.
fn parse_arm_path(path: &str) -> Option<ArmPath> {
    let segments: Vec<String> = path
        .trim_start_matches('/')
        .split('/')
        .map(percent_decode)
        .collect();
    if segments.len() != 9 && segments.len() != 10 {
        return None;
    }
    let literal = |i: usize, expected: &str| segments[i].eq_ignore_ascii_case(expected);
    let ok = literal(0, "subscriptions")
        && literal(2, "resourceGroups")
        && literal(4, "providers")
        && literal(5, "Microsoft.ManagedIdentity")
        && literal(6, "userAssignedIdentities")
        && literal(8, "federatedIdentityCredentials");
    if !ok || segments.iter().any(String::is_empty) {
        return None;
    }
    Some(ArmPath {
        identity: IdentityRef::new(&segments[1], &segments[3], &segments[7]),
        credential: segments.get(9).cloned(),
    })
}

fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let decoded = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = decoded {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`
pub fn is_valid_credential_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (3..=120).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes[1..]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

fn parent_not_found(identity: &IdentityRef, action: &str) -> ArmFault {
    ArmFault::new(
        StatusCode::NOT_FOUND,
        "ParentResourceNotFound",
        format!(
            "Failed to perform '{action}' on resource(s) of type 'userAssignedIdentities/federatedIdentityCredentials', because the parent resource '{}' could not be found.",
            identity.arm_id()
        ),
    )
}

fn credential_json(identity: &IdentityRef, credential: &StoredCredential) -> serde_json::Value {
    json!({
        "id": format!("{}/federatedIdentityCredentials/{}", identity.arm_id(), credential.name),
        "name": credential.name,
        "type": CREDENTIAL_TYPE,
        "properties": {
            "issuer": credential.issuer,
            "subject": credential.subject,
            "audiences": credential.audiences,
        },
    })
}

fn add_retry_after(response: &mut Response, retry_after: Option<&str>) {
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
}

fn take_fault(state: &mut FakeState, op: Operation) -> Option<Fault> {
    let index = state
        .faults
        .iter()
        .position(|f| f.operation == op && f.count > 0)?;
    let fault = state.faults[index].clone();
    state.faults[index].count -= 1;
    if state.faults[index].count == 0 {
        state.faults.remove(index);
    }
    Some(fault)
}

fn fault_response(fault: &Fault, path: &str) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let (code, message) = match status.as_u16() {
        429 => (
            "TooManyRequests",
            "The request is being throttled as the limit has been reached for operation type.".to_string(),
        ),
        403 => (
            "AuthorizationFailed",
            format!(
                "The client does not have authorization to perform action 'Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write' over scope '{path}' or the scope is invalid. If access was recently granted, please refresh your credentials."
            ),
        ),
        409 => (
            CONCURRENT_WRITE_CODE,
            "Too many Federated Identity Credentials are written concurrently for the managed identity. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.".to_string(),
        ),
        503 => (
            "ServiceUnavailable",
            "The service is temporarily unavailable.".to_string(),
        ),
        s if s >= 500 => (
            "InternalServerError",
            "Encountered internal server error.".to_string(),
        ),
        _ => ("BadRequest", "Injected fault.".to_string()),
    };
    let mut response = ArmFault {
        status: status.as_u16(),
        code: fault.code.clone().unwrap_or_else(|| code.to_string()),
        message: fault.message.clone().unwrap_or(message),
    }
    .into_response();
    add_retry_after(&mut response, fault.retry_after.as_deref());
    response
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
    if state.tokens.contains(token) {
        Ok(())
    } else {
        Err(ArmFault::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The access token is invalid.",
        ))
    }
}

fn check_api_version(query: &HashMap<String, String>) -> Result<String, ArmFault> {
    let Some(version) = query.get("api-version") else {
        return Err(ArmFault::new(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    };
    if SUPPORTED_API_VERSIONS.contains(&version.as_str()) {
        Ok(version.clone())
    } else {
        Err(ArmFault::new(
            StatusCode::BAD_REQUEST,
            "InvalidApiVersionParameter",
            format!(
                "The api-version '{version}' is invalid. The supported versions are '{}'.",
                SUPPORTED_API_VERSIONS.join(",")
            ),
        ))
    }
}

enum Outcome {
    Now(Response),
    /// A write was applied: hold the response until the identity's busy window has passed, so
    /// the write "takes" that long and an overlapping write sees the identity busy.
    After(Instant, Response),
}

async fn arm_endpoint(
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
    let Some(path) = parse_arm_path(uri.path()) else {
        return Outcome::Now(
            ArmFault::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("The path '{}' is not served by the fake ARM.", uri.path()),
            )
            .into_response(),
        );
    };
    let op = match (method, path.credential.is_some()) {
        (&Method::GET, false) => Operation::List,
        (&Method::GET, true) => Operation::Get,
        (&Method::PUT, true) => Operation::Put,
        (&Method::DELETE, true) => Operation::Delete,
        _ => {
            shared.lock().calls.other += 1;
            return Outcome::Now(
                ArmFault::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "MethodNotAllowed",
                    format!("The requested method '{method}' is not allowed on this resource."),
                )
                .into_response(),
            );
        }
    };
    let mut state = shared.lock();
    state.calls.bump(op);
    if let Err(e) = check_auth(&state, headers) {
        return Outcome::Now(e.into_response());
    }
    if let Some(fault) = take_fault(&mut state, op) {
        return Outcome::Now(fault_response(&fault, uri.path()));
    }
    let query = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let api_version = match check_api_version(&query) {
        Ok(v) => v,
        Err(e) => return Outcome::Now(e.into_response()),
    };
    let result = match op {
        Operation::List => list(&mut state, &path, &query, &api_version, uri.path()),
        Operation::Get => get_one(&mut state, &path),
        Operation::Put => put(&mut state, &path, body),
        Operation::Delete => delete(&mut state, &path),
        Operation::Token => Err(ArmFault::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "unreachable",
        )),
    };
    match result {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Now(e.into_response()),
    }
}

fn list(
    state: &mut FakeState,
    path: &ArmPath,
    query: &HashMap<String, String>,
    api_version: &str,
    raw_path: &str,
) -> Result<Outcome, ArmFault> {
    let page_size = state.page_size;
    let base_url = state.base_url.clone();
    let identity = state
        .identities
        .get(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "read"))?;
    let skip = match query.get("$skiptoken") {
        Some(t) => t.parse::<usize>().map_err(|_| {
            ArmFault::new(
                StatusCode::BAD_REQUEST,
                "InvalidSkipToken",
                "The skip token is invalid.",
            )
        })?,
        None => 0,
    };
    let top = match query.get("$top") {
        Some(t) => match t.parse::<usize>() {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                return Err(ArmFault::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidTopParameter",
                    "The $top parameter must be an integer of at least 1.",
                ));
            }
        },
        None => None,
    };
    let total = identity.credentials.len();
    let take = match (top, page_size) {
        (Some(t), 0) => t,
        (Some(t), p) => t.min(p),
        (None, 0) => total,
        (None, p) => p,
    };
    let value: Vec<serde_json::Value> = identity
        .credentials
        .values()
        .skip(skip)
        .take(take)
        .map(|c| credential_json(&identity.reference, c))
        .collect();
    let next = skip + value.len();
    let mut body = json!({ "value": value });
    if next < total {
        let mut link = format!("{base_url}{raw_path}?api-version={api_version}&$skiptoken={next}");
        if let Some(t) = top {
            link.push_str(&format!("&$top={t}"));
        }
        body["nextLink"] = json!(link);
    }
    Ok(Outcome::Now(Json(body).into_response()))
}

fn get_one(state: &mut FakeState, path: &ArmPath) -> Result<Outcome, ArmFault> {
    let identity = state
        .identities
        .get(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "read"))?;
    let name = path.credential.as_deref().unwrap_or_default();
    let credential = identity
        .credentials
        .get(&name.to_ascii_lowercase())
        .ok_or_else(|| {
            ArmFault::new(
                StatusCode::NOT_FOUND,
                "ResourceNotFound",
                format!(
                    "The Resource '{CREDENTIAL_TYPE}/{}/{name}' under resource group '{}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                    identity.reference.name, identity.reference.resource_group
                ),
            )
        })?;
    Ok(Outcome::Now(
        Json(credential_json(&identity.reference, credential)).into_response(),
    ))
}

/// 409 if another write to this identity is still in flight; otherwise mark it busy.
fn claim_write(
    identity: &mut Identity,
    calls: &mut CallCounts,
    window: Duration,
) -> Result<Instant, ArmFault> {
    let now = Instant::now();
    if identity.busy_until.is_some_and(|until| until > now) {
        calls.conflicts += 1;
        return Err(ArmFault::new(
            StatusCode::CONFLICT,
            CONCURRENT_WRITE_CODE,
            format!(
                "Too many Federated Identity Credentials are written concurrently for the managed identity '{}'. Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
                identity.reference.arm_id().to_ascii_lowercase()
            ),
        ));
    }
    let until = now + window;
    identity.busy_until = Some(until);
    Ok(until)
}

fn put(state: &mut FakeState, path: &ArmPath, body: &[u8]) -> Result<Outcome, ArmFault> {
    let window = state.busy_window;
    let FakeState {
        identities, calls, ..
    } = state;
    let identity = identities
        .get_mut(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "write"))?;
    let name = path.credential.clone().unwrap_or_default();
    let parsed: PutBody = serde_json::from_slice(body).map_err(|e| {
        ArmFault::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContent",
            format!("The request content was invalid and could not be deserialized: '{e}'."),
        )
    })?;
    let properties = parsed.properties.unwrap_or_default();
    // Validate before claiming the identity, so a rejected request does not block others.
    validate_put(identity, &name, &properties)?;
    let until = claim_write(identity, calls, window)?;
    let (created, credential) = apply_put(identity, &name, properties)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let response = (
        status,
        Json(credential_json(&identity.reference, &credential)),
    )
        .into_response();
    Ok(Outcome::After(until, response))
}

fn validate_put(
    identity: &Identity,
    name: &str,
    properties: &CredentialBody,
) -> Result<(), ArmFault> {
    let bad = |message: String| ArmFault::new(StatusCode::BAD_REQUEST, "BadRequest", message);
    if !is_valid_credential_name(name) {
        return Err(bad(format!(
            "Federated Identity Credential name '{name}' is invalid."
        )));
    }
    let (Some(issuer), Some(subject), Some(audiences)) = (
        properties.issuer.as_deref(),
        properties.subject.as_deref(),
        properties.audiences.as_ref(),
    ) else {
        return Err(bad(
            "Federated Identity Credential from HTTP body has empty properties".to_string(),
        ));
    };
    if issuer.is_empty() || subject.is_empty() {
        return Err(bad(
            "Federated Identity Credential from HTTP body has empty properties".to_string(),
        ));
    }
    if audiences.len() != 1 || audiences[0].is_empty() {
        return Err(bad(
            "Federated identity credentials must have exactly 1 audience.".to_string(),
        ));
    }
    if !issuer.starts_with("https://") || issuer.len() <= "https://".len() {
        return Err(bad(format!(
            "Federated Identity Credential issuer '{issuer}' is invalid. The issuer must be an https URL."
        )));
    }
    let key = name.to_ascii_lowercase();
    let duplicate = identity
        .credentials
        .iter()
        .any(|(k, c)| *k != key && c.issuer == issuer && c.subject == subject);
    if duplicate {
        return Err(bad(DUPLICATE_MESSAGE.to_string()));
    }
    if !identity.credentials.contains_key(&key)
        && identity.credentials.len() >= MAX_CREDENTIALS_PER_IDENTITY
    {
        return Err(ArmFault::new(
            StatusCode::BAD_REQUEST,
            LIMIT_ERROR_CODE,
            limit_error_message(),
        ));
    }
    Ok(())
}

fn apply_put(
    identity: &mut Identity,
    name: &str,
    properties: CredentialBody,
) -> Result<(bool, StoredCredential), ArmFault> {
    validate_put(identity, name, &properties)?;
    let key = name.to_ascii_lowercase();
    // An update keeps the name's original casing, as ARM does for an existing resource.
    let stored_name = identity
        .credentials
        .get(&key)
        .map(|c| c.name.clone())
        .unwrap_or_else(|| name.to_string());
    let credential = StoredCredential {
        name: stored_name,
        issuer: properties.issuer.unwrap_or_default(),
        subject: properties.subject.unwrap_or_default(),
        audiences: properties.audiences.unwrap_or_default(),
    };
    let created = identity
        .credentials
        .insert(key, credential.clone())
        .is_none();
    Ok((created, credential))
}

fn delete(state: &mut FakeState, path: &ArmPath) -> Result<Outcome, ArmFault> {
    let window = state.busy_window;
    let FakeState {
        identities, calls, ..
    } = state;
    let identity = identities
        .get_mut(&path.identity.key())
        .ok_or_else(|| parent_not_found(&path.identity, "delete"))?;
    let key = path
        .credential
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !identity.credentials.contains_key(&key) {
        // The spec's "204: Resource does not exist." Nothing is written, so nothing is busy.
        return Ok(Outcome::Now(StatusCode::NO_CONTENT.into_response()));
    }
    let until = claim_write(identity, calls, window)?;
    identity.credentials.remove(&key);
    Ok(Outcome::After(until, StatusCode::OK.into_response()))
}

// ---------------------------------------------------------------------------------------------
// Admin API (/_fake/...)
// ---------------------------------------------------------------------------------------------

async fn admin_create_identity(
    State(shared): State<Arc<Shared>>,
    Json(reference): Json<IdentityRef>,
) -> Response {
    let id = reference.arm_id();
    create_identity(&mut shared.lock(), reference);
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

async fn admin_list_credentials(
    State(shared): State<Arc<Shared>>,
    UrlPath((sub, rg, name)): UrlPath<(String, String, String)>,
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

async fn admin_seed_credential(
    State(shared): State<Arc<Shared>>,
    UrlPath((sub, rg, name)): UrlPath<(String, String, String)>,
    Json(credential): Json<StoredCredential>,
) -> Response {
    let reference = IdentityRef::new(sub, rg, name);
    let mut state = shared.lock();
    let Some(identity) = state.identities.get_mut(&reference.key()) else {
        return parent_not_found(&reference, "write").into_response();
    };
    let body = CredentialBody {
        issuer: Some(credential.issuer),
        subject: Some(credential.subject),
        audiences: Some(credential.audiences),
    };
    match apply_put(identity, &credential.name, body) {
        Ok((_, stored)) => (StatusCode::CREATED, Json(stored)).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn admin_list_faults(State(shared): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(shared.lock().faults.clone())
}

async fn admin_inject_fault(
    State(shared): State<Arc<Shared>>,
    Json(fault): Json<Fault>,
) -> StatusCode {
    shared.lock().faults.push(fault);
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().faults.clear();
    StatusCode::NO_CONTENT
}

async fn admin_calls(State(shared): State<Arc<Shared>>) -> Json<CallCounts> {
    Json(shared.lock().calls.clone())
}

async fn admin_reset_calls(State(shared): State<Arc<Shared>>) -> StatusCode {
    shared.lock().calls = CallCounts::default();
    StatusCode::NO_CONTENT
}

async fn admin_config(
    State(shared): State<Arc<Shared>>,
    Json(config): Json<FakeConfig>,
) -> StatusCode {
    apply_config(&mut shared.lock(), &config);
    StatusCode::NO_CONTENT
}

async fn admin_token_requests(State(shared): State<Arc<Shared>>) -> Json<Vec<TokenRequestRecord>> {
    Json(shared.lock().token_requests.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_name_pattern() {
        for ok in [
            "abc",
            "a-_",
            "A1",
            "x".repeat(120).as_str(),
            "tenant-a_default-0",
        ] {
            if ok.len() >= 3 {
                assert!(is_valid_credential_name(ok), "{ok} should be valid");
            }
        }
        for bad in [
            "ab",
            "-abc",
            "_abc",
            "a.bc",
            "a bc",
            "x".repeat(121).as_str(),
            "äbc",
        ] {
            assert!(!is_valid_credential_name(bad), "{bad} should be invalid");
        }
    }

    #[test]
    fn arm_path_parsing_is_case_insensitive_and_decodes() {
        let p = parse_arm_path(
            "/subscriptions/s/resourcegroups/rg%28x%29/providers/microsoft.managedidentity/USERASSIGNEDIDENTITIES/id/federatedidentitycredentials/fic",
        )
        .expect("parses");
        assert_eq!(p.identity, IdentityRef::new("s", "rg(x)", "id"));
        assert_eq!(p.credential.as_deref(), Some("fic"));
        assert!(parse_arm_path("/subscriptions/s/resourceGroups/rg").is_none());
        assert!(
            parse_arm_path(
                "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Other/userAssignedIdentities/i/federatedIdentityCredentials"
            )
            .is_none()
        );
    }

    #[test]
    fn percent_decoding_leaves_malformed_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("a%2"), "a%2");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%"), "%");
    }
}
