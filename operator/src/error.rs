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
    /// An object named like one of the children already exists and is not this TenantIdentity's
    /// (`controller::owned` decides whose it is). It is never written: our controller reference
    /// would make garbage collection delete it with the TenantIdentity. Only a person can resolve
    /// it, so it is terminal.
    #[error(
        "{kind} {namespace}/{name} already exists and is not this TenantIdentity's ({holder}); the operator never takes over an object it did not create: remove or rename the existing {kind}, or give the TenantIdentity another name (its children are named after it)"
    )]
    ChildConflict {
        kind: String,
        namespace: String,
        name: String,
        /// Whose it is, as its metadata says (controller reference or field managers).
        holder: String,
    },
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
            Error::DependencyMissing { .. } | Error::ChildConflict { .. } => true,
            _ => false,
        }
    }

    /// A failure of the moment that a retry usually clears: the API server timed out, was
    /// overloaded (429), unavailable (5xx), lost the connection, or the object changed under us
    /// (409). Not reported until it persists (`controller::TRANSIENT_FAILURES_BEFORE_REPORT`).
    /// (kube's client already retries 429, 503 and 504 with backoff before answering.)
    pub fn is_transient(&self) -> bool {
        match self {
            Error::KubernetesApiError(kube::Error::Api(status)) => {
                matches!(status.code, 408 | 409 | 429 | 500 | 502 | 503 | 504)
            }
            Error::KubernetesApiError(
                kube::Error::HyperError(_)
                | kube::Error::Service(_)
                | kube::Error::ReadEvents(_)
                | kube::Error::HttpError(_),
            ) => true,
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

    fn child_conflict() -> Error {
        Error::ChildConflict {
            kind: "Kustomization".into(),
            namespace: "tenants".into(),
            name: "team-a".into(),
            holder: "managed by platform-team".into(),
        }
    }

    #[test]
    fn a_child_conflict_names_the_object_and_needs_a_person() {
        let e = child_conflict();
        assert_eq!(e.reason(), tenant_identity_crd::reasons::CHILD_CONFLICT);
        assert!(e.is_terminal(), "a person must rename or remove an object");
        assert!(!e.is_backend(), "not a credential failure");
        assert_eq!(e.retry_after(), None);
        let message = e.to_string();
        for part in [
            "Kustomization tenants/team-a",
            "managed by platform-team",
            "remove or rename",
        ] {
            assert!(message.contains(part), "{part:?} in {message}");
        }
    }

    #[test]
    fn only_failures_of_the_moment_are_transient() {
        let api = |code: u16| {
            Error::KubernetesApiError(kube::Error::Api(
                kube::core::Status::failure("x", "Reason")
                    .with_code(code)
                    .boxed(),
            ))
        };
        for code in [408, 409, 429, 500, 502, 503, 504] {
            assert!(api(code).is_transient(), "{code}");
        }
        for code in [400, 403, 404, 410, 422] {
            assert!(!api(code).is_transient(), "{code}");
        }
        assert!(!child_conflict().is_transient());
        assert!(!Error::IssuerUnavailable("x".into()).is_transient());
    }

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
            child_conflict(),
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
