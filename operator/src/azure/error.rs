//! Errors of the ARM backend. Variant names are the condition reasons the controller reports
//! (`FederatedCredentialsReady=False, reason=<variant>`), so they are part of the API: stable
//! and PascalCase. Messages are what a person reads in `status.conditions[].message`; they
//! carry ARM's own message when there is one and never a token or an assertion.

use std::time::Duration;

/// How soon to retry after a 409 when ARM gives no `Retry-After`: the competing write is a
/// single FIC PUT/DELETE, which completes in about a second.
pub const CONCURRENT_WRITE_RETRY: Duration = Duration::from_secs(2);

#[derive(
    Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr, strum::VariantNames,
)]
pub enum ArmError {
    /// 429: ARM throttled us. Retry after `retry_after` when ARM said so.
    #[error("Azure Resource Manager throttled the request (HTTP 429){}: {message}", fmt_after(.retry_after))]
    Throttled {
        retry_after: Option<Duration>,
        message: String,
    },
    /// 5xx, a transport failure, or an answer that could not be understood. Retryable.
    #[error("Azure Resource Manager is unavailable{}: {message}", fmt_status(.status))]
    ArmUnavailable {
        status: Option<u16>,
        message: String,
        retry_after: Option<Duration>,
    },
    /// 403: the operator's identity lacks a role on the managed identity. Role assignments
    /// take minutes to propagate, so this is retried with backoff rather than given up on.
    #[error(
        "the operator's Azure identity is not authorized to manage federated credentials on this managed identity (it needs the 'Managed Identity Contributor' role or Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/* actions on it; new role assignments can take several minutes to apply): {message}"
    )]
    AuthorizationFailed { message: String },
    /// 401 even with a freshly exchanged token. Retryable (clock skew, Entra replication).
    #[error("Azure Resource Manager rejected the operator's access token (HTTP 401): {message}")]
    AuthenticationFailed { message: String },
    /// The subject is already federated on the identity by a credential this TenantIdentity
    /// does not own. Terminal: the operator never modifies or deletes someone else's credential.
    #[error(
        "subject '{subject}' is already federated on this managed identity by credential {} which this TenantIdentity does not own; remove that credential or use another managed identity (the operator re-checks every few minutes, or at once on reconcile.fluxcd.io/requestedAt): {message}",
        fmt_existing(.existing)
    )]
    DuplicateSubject {
        subject: String,
        existing: Option<String>,
        message: String,
    },
    /// 400/405 (other than a duplicate subject): the request itself is wrong. Terminal.
    #[error("Azure Resource Manager rejected the request ({code}): {message}")]
    InvalidRequest { code: String, message: String },
    /// 404 on the identity: it does not exist (yet). Retryable, it may be being created.
    #[error("the user-assigned managed identity {identity} was not found: {message}")]
    IdentityNotFound { identity: String, message: String },
    /// 409: another write to the same identity was in flight (maybe by another tool).
    #[error(
        "another write to this managed identity's federated credentials was in progress (HTTP 409): {message}"
    )]
    ConcurrentWrite {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The client-assertion exchange with Microsoft Entra failed (file unreadable, Entra said
    /// no, Entra unreachable). Retryable: the projected token file may simply not exist yet.
    #[error(
        "exchanging the operator's workload identity token with Microsoft Entra failed: {message}"
    )]
    TokenExchangeFailed { message: String },
    /// The identity would carry more than `limit` credentials (ours and foreign) after the
    /// sync. Nothing was written. Terminal until the spec or the identity changes.
    #[error(
        "the managed identity would carry {count} federated identity credentials, more than the limit of {limit} per identity (credentials created by others count too); federate fewer subjects, remove unused credentials or use another managed identity (the operator re-checks every few minutes, or at once on reconcile.fluxcd.io/requestedAt)"
    )]
    CredentialLimitExceeded { count: usize, limit: usize },
    /// The backend's own configuration (endpoints, ids) is unusable. Terminal.
    #[error("invalid Azure Resource Manager backend configuration: {message}")]
    InvalidConfiguration { message: String },
}

fn fmt_after(d: &Option<Duration>) -> String {
    d.map(|d| format!(", retry after {}s", d.as_secs()))
        .unwrap_or_default()
}

fn fmt_status(s: &Option<u16>) -> String {
    s.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}

fn fmt_existing(e: &Option<String>) -> String {
    e.as_deref()
        .map(|n| format!("'{n}'"))
        .unwrap_or_else(|| "(name not reported by ARM)".to_string())
}

impl ArmError {
    /// Every reason [`ArmError::reason`] can return (metrics pre-create these series).
    pub const REASONS: &'static [&'static str] = <ArmError as strum::VariantNames>::VARIANTS;

    /// The same error, telling the caller to wait `delay` (used while honouring a wait ARM
    /// asked for earlier).
    pub fn with_retry_after(&self, delay: Duration) -> ArmError {
        let mut e = self.clone();
        match &mut e {
            ArmError::Throttled { retry_after, .. }
            | ArmError::ConcurrentWrite { retry_after, .. }
            | ArmError::ArmUnavailable { retry_after, .. } => *retry_after = Some(delay),
            _ => {}
        }
        e
    }

    /// The condition reason for this error: the variant name.
    pub fn reason(&self) -> &'static str {
        self.into()
    }

    /// True when retrying the same input cannot succeed: a person must change the spec, the
    /// identity or the configuration. The controller should requeue slowly (or only on
    /// change) instead of backing off exponentially.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            ArmError::DuplicateSubject { .. }
                | ArmError::InvalidRequest { .. }
                | ArmError::CredentialLimitExceeded { .. }
                | ArmError::InvalidConfiguration { .. }
        )
    }

    /// When the service told us (or, for 409, when it is sensible) to retry. `None` means "use
    /// the controller's exponential backoff".
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Throttled { retry_after, .. } => *retry_after,
            ArmError::ArmUnavailable { retry_after, .. } => *retry_after,
            ArmError::ConcurrentWrite { retry_after, .. } => {
                Some(retry_after.unwrap_or(CONCURRENT_WRITE_RETRY))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_and_policies() {
        let cases: Vec<(ArmError, &str, bool, Option<Duration>)> = vec![
            (
                ArmError::Throttled {
                    retry_after: Some(Duration::from_secs(7)),
                    message: "m".into(),
                },
                "Throttled",
                false,
                Some(Duration::from_secs(7)),
            ),
            (
                ArmError::ArmUnavailable {
                    status: Some(503),
                    message: "m".into(),
                    retry_after: None,
                },
                "ArmUnavailable",
                false,
                None,
            ),
            (
                ArmError::AuthorizationFailed {
                    message: "m".into(),
                },
                "AuthorizationFailed",
                false,
                None,
            ),
            (
                ArmError::DuplicateSubject {
                    subject: "s".into(),
                    existing: Some("x".into()),
                    message: "m".into(),
                },
                "DuplicateSubject",
                true,
                None,
            ),
            (
                ArmError::InvalidRequest {
                    code: "BadRequest".into(),
                    message: "m".into(),
                },
                "InvalidRequest",
                true,
                None,
            ),
            (
                ArmError::IdentityNotFound {
                    identity: "i".into(),
                    message: "m".into(),
                },
                "IdentityNotFound",
                false,
                None,
            ),
            (
                ArmError::ConcurrentWrite {
                    message: "m".into(),
                    retry_after: None,
                },
                "ConcurrentWrite",
                false,
                Some(CONCURRENT_WRITE_RETRY),
            ),
            (
                ArmError::TokenExchangeFailed {
                    message: "m".into(),
                },
                "TokenExchangeFailed",
                false,
                None,
            ),
            (
                ArmError::CredentialLimitExceeded {
                    count: 21,
                    limit: 20,
                },
                "CredentialLimitExceeded",
                true,
                None,
            ),
        ];
        for (err, reason, terminal, after) in cases {
            assert_eq!(err.reason(), reason);
            assert_eq!(err.is_terminal(), terminal, "{reason}");
            assert_eq!(err.retry_after(), after, "{reason}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn messages_are_actionable() {
        let e = ArmError::DuplicateSubject {
            subject: "system:serviceaccount:ns:sa".into(),
            existing: Some("someone-elses".into()),
            message: "Issuer and subject combination already exists for this Managed Identity."
                .into(),
        };
        let text = e.to_string();
        assert!(text.contains("'someone-elses'"), "{text}");
        assert!(text.contains("system:serviceaccount:ns:sa"), "{text}");
        let e = ArmError::Throttled {
            retry_after: Some(Duration::from_secs(30)),
            message: "slow down".into(),
        };
        assert!(e.to_string().contains("retry after 30s"));
    }
}
