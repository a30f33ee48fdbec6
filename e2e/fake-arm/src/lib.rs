//! A fake Azure Resource Manager (user-assigned identities and their federated identity
//! credentials), a fake Microsoft Entra token endpoint and a fake Azure DevOps Git endpoint,
//! served over plain HTTP on 127.0.0.1, for tests of the operator's ARM backend and of its
//! end-to-end verification (token exchange, then Git access).
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
//! * every ARM call needs `Authorization: Bearer <token issued by the fake token endpoint for
//!   ARM>` (a token for another resource is 401 `InvalidAuthenticationTokenAudience`);
//! * `api-version` must be one that serves the resource (FIC operations need a newer one than
//!   reading the identity).
//!
//! The token endpoint is as strict as Entra for workload identity federation (module `entra`):
//! it verifies the client assertion against its issuer's OIDC discovery document and JWKS and
//! needs a federated credential that matches byte for byte and has propagated, and answers
//! each failure with Entra's error body and AADSTS code ([`aadsts`]). Callers configured as
//! trusted ([`FakeArm::trust_client`]) are accepted as before, without their assertion being
//! read: the operator's own identity in the e2e harness is one. Which issuers it can reach is
//! configured, never open by default: [`FakeArm::trust_issuer_ca_pem`] (an `https` issuer with
//! a test certificate) and [`FakeArm::allow_insecure_issuer`] (an issuer served over plain
//! `http`).
//!
//! The Azure DevOps Git endpoint (module `devops`, its own listener: [`FakeArm::devops_url`])
//! answers `info/refs?service=git-upload-pack` only for a token the fake Entra issued for
//! Azure DevOps to an identity that is a member of the organization.
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
//! [`FakeArm`]; `entra` (Entra token endpoint), `devops` (Azure DevOps Git endpoint), `arm`
//! (ARM API: `path`, `credentials`, `identity`) and `admin` (`/_fake/` HTTP API) serve
//! requests; `state` is the shared state and the credential rules; `error` the ARM error
//! bodies; `model` the public data types.

mod admin;
mod arm;
mod devops;
mod entra;
mod error;
mod model;
mod state;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use axum::Router;
use axum::routing::{delete, get, post, put};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use crate::devops::head_object_id;
pub use crate::error::ArmFault;
pub use crate::model::{
    ARM_RESOURCES, CONCURRENT_WRITE_CODE, CREDENTIAL_TYPE, CallCounts, DEVOPS_RESOURCE,
    DUPLICATE_MESSAGE, FakeConfig, Fault, FederatedCredential, IDENTITY_API_VERSIONS,
    IDENTITY_LOCATION, IDENTITY_TENANT_ID, IDENTITY_TYPE, IdentityRef, IssuedToken, JWT_BEARER,
    LIMIT_ERROR_CODE, MAX_CREDENTIALS_PER_IDENTITY, Operation, SUPPORTED_API_VERSIONS,
    StoredCredential, TokenRequestRecord, aadsts, limit_error_message,
};
use crate::state::Shared;
pub use crate::state::is_valid_credential_name;

/// A running fake ARM + Entra token endpoint (one listener) and Azure DevOps Git endpoint (a
/// second listener). Dropping it stops both.
pub struct FakeArm {
    shared: Arc<Shared>,
    addr: SocketAddr,
    devops_addr: SocketAddr,
    shutdown: Vec<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

impl std::fmt::Debug for FakeArm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeArm")
            .field("addr", &self.addr)
            .field("devops_addr", &self.devops_addr)
            .finish()
    }
}

fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
) -> (oneshot::Sender<()>, JoinHandle<std::io::Result<()>>) {
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    (tx, task)
}

impl FakeArm {
    /// Start on ephemeral ports of 127.0.0.1.
    pub async fn start() -> anyhow::Result<FakeArm> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// Start the ARM + Entra listener on `addr` (use port 0 for an ephemeral port) and the
    /// Azure DevOps listener on an ephemeral port of the same address.
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<FakeArm> {
        Self::start_on_both(addr, SocketAddr::new(addr.ip(), 0)).await
    }

    /// Start the ARM + Entra listener on `addr` and the Azure DevOps listener on
    /// `devops_addr` (port 0: an ephemeral port).
    pub async fn start_on_both(
        addr: SocketAddr,
        devops_addr: SocketAddr,
    ) -> anyhow::Result<FakeArm> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let devops_listener = tokio::net::TcpListener::bind(devops_addr).await?;
        let devops_addr = devops_listener.local_addr()?;
        let shared = Arc::new(
            Shared::new(format!("http://{addr}"))
                .map_err(|e| anyhow!("cannot build the fake Entra's HTTP client: {e}"))?,
        );
        let (arm_tx, arm_task) = serve(listener, router(shared.clone()));
        let (devops_tx, devops_task) = serve(devops_listener, devops::router(shared.clone()));
        tracing::info!(%addr, %devops_addr, "fake ARM, Entra and Azure DevOps listening");
        Ok(FakeArm {
            shared,
            addr,
            devops_addr,
            shutdown: vec![arm_tx, devops_tx],
            tasks: vec![arm_task, devops_task],
        })
    }

    /// Base URL, e.g. `http://127.0.0.1:41234` — both the ARM endpoint and the authority host.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address the ARM + Entra server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the fake Azure DevOps, e.g. `http://127.0.0.1:41235`: it replaces the
    /// scheme and host of `https://dev.azure.com/{org}/{project}/_git/{repo}`.
    pub fn devops_url(&self) -> String {
        format!("http://{}", self.devops_addr)
    }

    /// Stop serving and wait for the server tasks to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
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

    /// What the access token `token` is for (tenant, client id, resource, the assertion's
    /// issuer and subject), or `None` if the fake did not issue it or it was revoked.
    pub fn issued_token(&self, token: &str) -> Option<IssuedToken> {
        self.shared.lock().tokens.get(token).cloned()
    }

    /// Invalidate every issued access token (as when Entra revokes them): the next ARM call
    /// with one gets 401 `InvalidAuthenticationToken`, the next Git request 401.
    pub fn revoke_tokens(&self) {
        self.shared.lock().tokens.clear();
    }

    /// Accept any client assertion from `client_id` without reading it (as the fake's first
    /// version accepted every assertion), for any resource the directory knows. For callers
    /// whose assertion is not a real token, such as the operator's own workload identity in the
    /// e2e harness (a token file with random content). Client ids compare case-insensitively.
    pub fn trust_client(&self, client_id: &str) {
        self.shared.lock().trust_client(client_id);
    }

    /// Add an application (a service principal or an ASO-managed identity) with no federated
    /// credentials, so the token endpoint knows `client_id` (a token request then fails on the
    /// credential match, not with AADSTS700016). ARM identities are applications already.
    pub fn register_application(&self, client_id: &str) {
        self.shared.lock().register_application(client_id);
    }

    /// Remove a registered application and its registered credentials: its client id is then
    /// unknown (AADSTS700016) unless an ARM identity has it. Whether it was registered.
    pub fn remove_application(&self, client_id: &str) -> bool {
        self.shared.lock().remove_application(client_id)
    }

    /// Tell the fake Entra that the application `client_id` has the federated credential
    /// `issuer`/`subject`/`audience`, as Azure would once ASO created it. This is how the
    /// e2e ASO simulation makes the ASO backend's credentials real: when it marks a
    /// `FederatedIdentityCredential` Ready it registers `spec.issuer`, `spec.subject` and
    /// `spec.audiences[0]` under the identity's client id (and unregisters them when the
    /// object goes). Registers the application if needed; issuer and subject identify the
    /// credential (registering them again replaces the audience). The credential propagates
    /// like an ARM write (see [`Self::set_propagation_delay`]).
    pub fn register_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
        audience: &str,
    ) {
        self.shared.lock().register_credential(
            client_id,
            FederatedCredential::new(issuer, subject, audience),
        );
    }

    /// Remove the registered credential `issuer`+`subject` of `client_id`; whether it existed.
    pub fn unregister_federated_credential(
        &self,
        client_id: &str,
        issuer: &str,
        subject: &str,
    ) -> bool {
        self.shared
            .lock()
            .unregister_credential(client_id, issuer, subject)
    }

    /// The credentials registered for `client_id` (not those of ARM identities: see
    /// [`Self::credentials`]), oldest first; `None` if the application is not registered.
    pub fn registered_federated_credentials(
        &self,
        client_id: &str,
    ) -> Option<Vec<FederatedCredential>> {
        self.shared.lock().registered_credentials(client_id)
    }

    /// Entra propagation for `client_id`: for `delay` after one of its credentials is written
    /// (created or changed through ARM, seeded, or registered), the token endpoint does not see
    /// it, and an exchange it would match is refused with AADSTS70021. A changed credential is
    /// invisible as a whole meanwhile (its previous version is not kept visible); deleting one
    /// takes effect at once. Zero (the default) makes writes visible at once.
    pub fn set_propagation_delay(&self, client_id: &str, delay: Duration) {
        self.shared.lock().set_propagation_delay(client_id, delay);
    }

    /// Trust the CA certificate(s) in `pem` when fetching an issuer's discovery document and
    /// JWKS over `https` (besides the public web roots), e.g. the API emulator's self-signed
    /// certificate. Refused if `pem` holds no usable certificate.
    pub fn trust_issuer_ca_pem(&self, pem: &str) -> anyhow::Result<()> {
        self.shared
            .lock()
            .entra
            .trust
            .add_ca_pem(pem)
            .map_err(|e| anyhow!("cannot trust this CA: {e}"))
    }

    /// Fetch the discovery document of the issuer `issuer` (exactly as in `iss` and in the
    /// credentials, e.g. `https://oidc.emulator.local/`) from
    /// `{fetch_base}/.well-known/openid-configuration`, and allow plain `http` for it and for
    /// its `jwks_uri`. Use `fetch_base` = `issuer` for an issuer that is itself an `http` URL.
    /// Only the issuers named here are reachable over `http`.
    pub fn allow_insecure_issuer(&self, issuer: &str, fetch_base: &str) {
        self.shared
            .lock()
            .entra
            .trust
            .allow_insecure(issuer, fetch_base);
    }

    /// Create the Azure DevOps organization `organization` backed by the Entra tenant
    /// `tenant_id` (named in the Git endpoint's `WWW-Authenticate` challenge), or change an
    /// existing one's tenant. Organizations created implicitly get [`IDENTITY_TENANT_ID`].
    pub fn create_devops_organization(&self, organization: &str, tenant_id: &str) {
        self.shared
            .lock()
            .devops_organization(organization, Some(tenant_id));
    }

    /// Create the Git repository `organization/project/_git/repository` (and the organization
    /// if needed). Its `main` points at [`head_object_id`]. Names are case-insensitive.
    pub fn create_devops_repository(&self, organization: &str, project: &str, repository: &str) {
        self.shared
            .lock()
            .devops_organization(organization, None)
            .repositories
            .insert((
                project.to_ascii_lowercase(),
                repository.to_ascii_lowercase(),
            ));
    }

    /// Add the identity `client_id` (a service principal's or managed identity's application
    /// id) to the organization (creating it if needed), as an organization administrator
    /// would; members may read every repository of it.
    pub fn add_devops_member(&self, organization: &str, client_id: &str) {
        self.shared
            .lock()
            .devops_organization(organization, None)
            .members
            .insert(client_id.to_ascii_lowercase());
    }

    /// Remove `client_id` from the organization; whether it was a member.
    pub fn remove_devops_member(&self, organization: &str, client_id: &str) -> bool {
        self.shared
            .lock()
            .devops
            .get_mut(&organization.to_ascii_lowercase())
            .is_some_and(|o| o.members.remove(&client_id.to_ascii_lowercase()))
    }

    /// Apply a [`FakeConfig`] (absent fields unchanged).
    pub fn configure(&self, config: &FakeConfig) {
        self.shared.lock().apply_config(config);
    }
}

impl Drop for FakeArm {
    fn drop(&mut self) {
        for tx in self.shutdown.drain(..) {
            let _ = tx.send(());
        }
        for task in self.tasks.drain(..) {
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
        .route("/{tenant}/oauth2/v2.0/token", post(entra::token_endpoint))
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
        .route("/_fake/entra/trusted-clients", post(admin::trust_client))
        .route(
            "/_fake/entra/applications",
            post(admin::register_application),
        )
        .route(
            "/_fake/entra/applications/{client_id}",
            delete(admin::remove_application),
        )
        .route(
            "/_fake/entra/applications/{client_id}/federated-credentials",
            get(admin::registered_credentials)
                .post(admin::register_credential)
                .delete(admin::unregister_credential),
        )
        .route(
            "/_fake/entra/applications/{client_id}/propagation-delay",
            put(admin::propagation_delay),
        )
        .route("/_fake/entra/trusted-cas", post(admin::trusted_ca))
        .route(
            "/_fake/entra/insecure-issuers",
            get(admin::insecure_issuers).post(admin::allow_insecure_issuer),
        )
        .route("/_fake/devops", get(admin::devops))
        .route(
            "/_fake/devops/organizations/{organization}",
            put(admin::devops_organization),
        )
        .route("/_fake/devops/repositories", post(admin::devops_repository))
        .route(
            "/_fake/devops/members",
            post(admin::add_devops_member).delete(admin::remove_devops_member),
        )
        .fallback(arm::arm_endpoint)
        .with_state(shared)
}
