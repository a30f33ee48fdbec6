//! Reconcile errors. The variant name is the condition reason and the
//! `tenant_identity_reconcile_errors_total{reason}` label, so the set stays small and stable.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (network, 5xx, conflict, forbidden).
    #[error("Kubernetes API: {0}")]
    KubernetesApiError(#[source] kube::Error),
    /// A kind the spec needs (Flux, ASO) is not served by the API server.
    #[error(
        "{kind} ({api_version}) is not installed on this cluster: install its CRDs and restart the operator"
    )]
    DependencyMissing { kind: String, api_version: String },
    /// The finalizer machinery failed to add/remove the finalizer.
    #[error("finalizer: {0}")]
    FinalizerError(String),
    /// The OIDC issuer could not be discovered from the API server.
    #[error("{0}")]
    IssuerUnavailable(String),
}

impl Error {
    /// Condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::KubernetesApiError(_) => "KubernetesApiError",
            Error::DependencyMissing { .. } => "DependencyMissing",
            Error::FinalizerError(_) => "FinalizerError",
            Error::IssuerUnavailable(_) => "IssuerUnavailable",
        }
    }

    /// Terminal errors need a human; retrying soon would only add load.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Error::DependencyMissing { .. })
    }

    /// A delay the remote side asked for (HTTP 429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        None
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
