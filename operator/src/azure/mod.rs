//! Azure: the operator's own workload-identity token and the Azure Resource Manager backend for
//! federated identity credentials (DESIGN.md, "Federated-credential backends" →
//! AzureResourceManager; contract in `../shared/upstream/azwi/`).
//!
//! * [`token`] — client-assertion exchange with Microsoft Entra, cached, file re-read.
//! * [`client`] — typed ARM client for `federatedIdentityCredentials` (+ error mapping).
//! * [`backend`] — the reconcile-facing `sync`/`delete` with diffing, counting and locking.
//! * [`error`] — [`ArmError`], whose variant names are condition reasons.
//! * [`metrics`] — request counters and durations.

pub mod backend;
pub mod client;
pub mod error;
pub mod metrics;
pub mod token;
pub mod types;

pub use backend::{
    ArmBackend, CredentialState, DesiredCredential, MAX_CREDENTIALS_PER_IDENTITY,
    ManagedIdentityRef, SyncReport, is_valid_credential_name,
};
pub use client::{
    ArmClient, ArmConfig, DEFAULT_API_VERSION, DEFAULT_ARM_ENDPOINT, DEFAULT_AUTHORITY_HOST,
};
pub use error::ArmError;
pub use metrics::{AzureOperation, AzureRequestMetrics};
pub use token::{AccessToken, WorkloadIdentityCredential};
