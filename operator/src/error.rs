//! Reconcile errors. The variant name is the condition reason and the
//! `tenant_identity_reconcile_errors_total{reason}` label, so the set stays small and stable.
//! A credential backend's failure carries the backend's own reason ([`BackendError`]).

use std::time::Duration;

#[derive(Debug, thiserror::Error, strum::IntoStaticStr, strum::VariantNames)]
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
    /// A credential backend failed; the reason is the backend's.
    #[error("{0}")]
    Backend(BackendError),
}

/// A credential backend's failure, as the controller needs it: a reason (PascalCase, bounded:
/// each backend lists its reasons), a message a person can act on, and a retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BackendError {
    pub reason: &'static str,
    pub message: String,
    /// Only a person can fix it: requeue slowly instead of backing off further.
    pub terminal: bool,
    /// The remote side asked for this wait (HTTP 429 `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl From<BackendError> for Error {
    fn from(e: BackendError) -> Self {
        Error::Backend(e)
    }
}

impl Error {
    /// The reasons of the operator's own variants; a [`Error::Backend`] carries one of the
    /// backends' reasons (`crate::backends::all_reasons`) instead.
    pub fn own_reasons() -> impl Iterator<Item = &'static str> {
        <Error as strum::VariantNames>::VARIANTS
            .iter()
            .copied()
            .filter(|v| *v != "Backend")
    }

    /// Condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Backend(e) => e.reason,
            other => other.into(),
        }
    }

    /// Terminal errors need a human; retrying soon would only add load.
    pub fn is_terminal(&self) -> bool {
        match self {
            Error::Backend(e) => e.terminal,
            Error::DependencyMissing { .. } => true,
            _ => false,
        }
    }

    /// A delay the remote side asked for (HTTP 429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Backend(e) => e.retry_after,
            _ => None,
        }
    }

    /// The credential backend failed, so `FederatedCredentialsReady` is False too.
    pub fn is_backend(&self) -> bool {
        matches!(self, Error::Backend(_))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_for_metrics() {
        let listed: Vec<_> = Error::own_reasons()
            .chain(crate::backends::all_reasons())
            .collect();
        let samples = [
            Error::DependencyMissing {
                kind: "k".into(),
                api_version: "v".into(),
            },
            Error::FinalizerError("f".into()),
            Error::IssuerUnavailable("i".into()),
            crate::backends::arm::unavailable().into(),
            Error::Backend(
                crate::azure::ArmError::CredentialLimitExceeded {
                    count: 21,
                    limit: 20,
                }
                .into(),
            ),
        ];
        for e in samples {
            assert!(listed.contains(&e.reason()), "{}", e.reason());
        }
        assert!(listed.contains(&"KubernetesApiError"));
        assert!(!listed.contains(&"Backend"), "not a reason of its own");
        // PascalCase, no spaces: they are condition reasons too.
        assert!(
            listed
                .iter()
                .all(|r| r.chars().next().unwrap().is_ascii_uppercase() && !r.contains(' '))
        );
    }
}
