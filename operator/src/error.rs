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
    /// The managedIdentity backend is requested but the operator has no Azure identity.
    #[error("{0}")]
    ArmBackendUnavailable(String),
    /// An Azure Resource Manager call failed; the ARM error's own variant is the reason.
    #[error("{0}")]
    Azure(#[from] crate::azure::ArmError),
}

impl Error {
    /// Every reason [`Error::reason`] can return, for pre-created metric series.
    pub fn all_reasons() -> impl Iterator<Item = &'static str> {
        [
            "KubernetesApiError",
            "DependencyMissing",
            "FinalizerError",
            "IssuerUnavailable",
            "ArmBackendUnavailable",
        ]
        .into_iter()
        .chain(crate::azure::ArmError::REASONS)
    }

    /// Condition reason and metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::KubernetesApiError(_) => "KubernetesApiError",
            Error::DependencyMissing { .. } => "DependencyMissing",
            Error::FinalizerError(_) => "FinalizerError",
            Error::IssuerUnavailable(_) => "IssuerUnavailable",
            Error::ArmBackendUnavailable(_) => "ArmBackendUnavailable",
            Error::Azure(e) => e.reason(),
        }
    }

    /// Terminal errors need a human; retrying soon would only add load.
    pub fn is_terminal(&self) -> bool {
        match self {
            Error::Azure(e) => e.is_terminal(),
            Error::DependencyMissing { .. } | Error::ArmBackendUnavailable(_) => true,
            _ => false,
        }
    }

    /// A delay the remote side asked for (HTTP 429 `Retry-After`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Azure(e) => e.retry_after(),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_listed_for_metrics() {
        let listed: Vec<_> = Error::all_reasons().collect();
        let samples = [
            Error::DependencyMissing {
                kind: "k".into(),
                api_version: "v".into(),
            },
            Error::FinalizerError("f".into()),
            Error::IssuerUnavailable("i".into()),
            Error::ArmBackendUnavailable("a".into()),
            Error::Azure(crate::azure::ArmError::CredentialLimitExceeded {
                count: 21,
                limit: 20,
            }),
        ];
        for e in samples {
            assert!(listed.contains(&e.reason()), "{}", e.reason());
        }
        assert!(listed.contains(&"KubernetesApiError"));
        // PascalCase, no spaces: they are condition reasons too.
        assert!(
            listed
                .iter()
                .all(|r| r.chars().next().unwrap().is_ascii_uppercase() && !r.contains(' '))
        );
    }
}
