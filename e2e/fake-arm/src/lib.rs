//! A fake Azure Resource Manager (user-assigned identities and their federated identity
//! credentials) and a fake Microsoft Entra token endpoint, served over plain HTTP on 127.0.0.1,
//! for tests of the operator's ARM backend.
//!
//! It is deliberately *strict*: it enforces the parts of the ARM contract (the ARM
//! ManagedIdentity OpenAPI spec, api-version 2026-05-31, and the documented service behaviour)
//! that an operator can get wrong, so a test that passes here exercises the same failure modes
//! as the real service:
//!
//! * identities must exist first (created through the admin API) — otherwise 404
//!   `ParentResourceNotFound`, like ARM for a nested resource, and 404 `ResourceNotFound` for
//!   `GET .../userAssignedIdentities/{name}`;
//! * FIC names match `^[a-zA-Z0-9][a-zA-Z0-9-_]{2,119}$`; ARM names are case-insensitive;
//! * exactly one audience, an `https` issuer, issuer+subject unique per identity, at most 20
//!   credentials per identity;
//! * overlapping writes to one identity get 409
//!   `ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity` (a write keeps the
//!   identity "busy" for a configurable window);
//! * every ARM call needs `Authorization: Bearer <token issued by the fake token endpoint>`;
//! * `api-version` must be one that serves the resource (FIC operations need a newer one than
//!   reading the identity).
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
//!
//! Modules, each using only the ones listed after it: this file wires the routes and holds
//! [`FakeArm`]; `token` (Entra token endpoint), `arm` (ARM API: `path`, `credentials`,
//! `identity`) and `admin` (`/_fake/` HTTP API) serve requests; `state` is the shared state
//! and the credential rules; `error` the ARM error bodies; `model` the public data types.

mod admin;
mod arm;
mod error;
mod model;
mod state;
mod token;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post, put};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::error::ArmFault;
pub use crate::model::{
    CONCURRENT_WRITE_CODE, CREDENTIAL_TYPE, CallCounts, DUPLICATE_MESSAGE, FakeConfig, Fault,
    IDENTITY_API_VERSIONS, IDENTITY_LOCATION, IDENTITY_TENANT_ID, IDENTITY_TYPE, IdentityRef,
    LIMIT_ERROR_CODE, MAX_CREDENTIALS_PER_IDENTITY, Operation, SUPPORTED_API_VERSIONS,
    StoredCredential, TokenRequestRecord, limit_error_message,
};
use crate::state::Shared;
pub use crate::state::is_valid_credential_name;

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
        let shared = Arc::new(Shared::new(format!("http://{addr}")));
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

    /// Create (or keep) a user-assigned identity so FIC calls under it succeed and `GET` of it
    /// answers 200. A new identity's client id is [`IdentityRef::default_client_id`]; an
    /// existing identity keeps its client id and credentials.
    pub fn create_identity(
        &self,
        subscription_id: &str,
        resource_group: &str,
        name: &str,
    ) -> IdentityRef {
        let reference = IdentityRef::new(subscription_id, resource_group, name);
        self.shared.lock().create_identity(reference.clone(), None);
        reference
    }

    /// Like [`Self::create_identity`], with `client_id` as the identity's
    /// `properties.clientId` (ARM's are UUIDs). On an existing identity this changes only the
    /// client id; to model an identity deleted and re-created under the same name, call
    /// [`Self::delete_identity`] first.
    pub fn create_identity_with_client_id(
        &self,
        subscription_id: &str,
        resource_group: &str,
        name: &str,
        client_id: &str,
    ) -> IdentityRef {
        let reference = IdentityRef::new(subscription_id, resource_group, name);
        self.shared
            .lock()
            .create_identity(reference.clone(), Some(client_id.to_string()));
        reference
    }

    /// The identity's client id (what `GET` of it answers in `properties.clientId`), or `None`
    /// if the identity does not exist.
    pub fn client_id(&self, identity: &IdentityRef) -> Option<String> {
        self.shared
            .lock()
            .identities
            .get(&identity.key())
            .map(|i| i.client_id.clone())
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
        self.shared
            .lock()
            .seed_credential(identity, credential)
            .map(|_| ())
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
        self.shared.lock().apply_config(config);
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

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token::token_endpoint))
        .route("/_fake/identities", post(admin::create_identity))
        .route(
            "/_fake/identities/{sub}/{rg}/{name}/credentials",
            get(admin::list_credentials).post(admin::seed_credential),
        )
        .route(
            "/_fake/faults",
            get(admin::list_faults)
                .post(admin::inject_fault)
                .delete(admin::clear_faults),
        )
        .route("/_fake/calls", get(admin::calls).delete(admin::reset_calls))
        .route("/_fake/config", put(admin::config))
        .route("/_fake/token-requests", get(admin::token_requests))
        .fallback(arm::arm_endpoint)
        .with_state(shared)
}
