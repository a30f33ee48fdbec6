//! Azure: the operator's own workload-identity token and the Azure Resource Manager client for
//! federated identity credentials (the ARM ManagedIdentity REST API; the credential backend
//! built on it is `crate::backends::arm`, see docs/architecture.md).
//!
//! * [`token`] — client-assertion exchange with Microsoft Entra, cached, file re-read.
//! * [`client`] — typed ARM client for `federatedIdentityCredentials` (+ error mapping).
//! * [`backend`] — `sync`/`delete` of one identity's credentials: diffing, counting and locking.
//! * [`error`] — [`ArmError`], whose variant names are condition reasons.
//! * [`metrics`] — request counters and durations.

pub mod backend;
pub mod client;
pub mod error;
pub mod metrics;
pub mod token;
pub mod types;

pub use crate::plan::ManagedIdentity;
pub use backend::{
    ArmBackend, CredentialChange, DesiredCredential, Owns, SyncReport, is_valid_credential_name,
};
pub use client::{
    ArmClient, ArmConfig, DEFAULT_API_VERSION, DEFAULT_ARM_ENDPOINT, DEFAULT_AUTHORITY_HOST,
    arm_scope,
};
pub use error::ArmError;
pub use metrics::{AzureOperation, AzureRequestMetrics};
pub use token::{AccessToken, WorkloadIdentityCredential};
