//! Pure step: from how a reconcile ended to the status it reports.
//!
//! [`summarize`] is the one place that derives `Ready`, `Reconciling` and `Stalled` (kstatus):
//! `Ready` is always written; `Reconciling=True` while the tenant waits on something that will
//! resolve by itself (a credential backend, Flux, a vcluster being installed, a retryable error);
//! `Stalled=True` when only a human can fix it (bad spec, claim conflict, missing grant, Flux
//! stalled, a terminal Azure error). Never both.

use std::time::Duration;

use tenant_identity_crd::{
    SubjectStatus, TenantIdentityStatus, VerificationStatus,
    conditions::{self as c, DesiredCondition, Status},
    reasons,
};

use crate::plan::{Plan, SpecError};

/// State of one part (credentials, host sync, git) as observed this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartState {
    pub status: Status,
    pub reason: String,
    pub message: String,
    /// Only a human can move it forward.
    pub terminal: bool,
    /// Ready waits for it while it is not True (false for a part that reports what is not
    /// checked: verification off, or not applicable).
    pub blocks: bool,
}

impl PartState {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Status::True, reason, message, false)
    }
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Status::False, reason, message, false)
    }
    pub fn unknown(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Status::Unknown, reason, message, false)
    }
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self::new(Status::False, reason, message, true)
    }
    /// Unknown, and Ready does not wait for it.
    pub fn informational(reason: &str, message: impl Into<String>) -> Self {
        Self {
            blocks: false,
            ..Self::new(Status::Unknown, reason, message, false)
        }
    }
    /// As reported before (a condition read back from status).
    pub fn carried(status: Status, reason: &str, message: &str, terminal: bool) -> Self {
        let carried = Self::new(status, reason, message, terminal);
        match reason {
            reasons::VERIFICATION_DISABLED | reasons::NOT_APPLICABLE => Self {
                blocks: false,
                ..carried
            },
            _ => carried,
        }
    }
    fn new(status: Status, reason: &str, message: impl Into<String>, terminal: bool) -> Self {
        Self {
            status,
            reason: reason.into(),
            message: message.into(),
            terminal,
            blocks: true,
        }
    }
}

/// Per-credential state reported by the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialState {
    Ready,
    Pending(String),
    Failed(String),
}

/// What a credential backend reports: the part, each credential by name, and the identities
/// the tenant's credentials now live on (ARM ids; empty where garbage collection cleans up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialsObserved {
    pub part: PartState,
    pub states: Vec<(String, CredentialState)>,
    pub written_identities: Vec<String>,
    /// The backend wrote credentials this reconcile (a new propagation grace starts).
    pub rewritten: bool,
}

/// What Flux says about the GitRepository.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GitObserved {
    /// Mirrored into `GitSourceReady`.
    pub part: PartState,
    /// Flux `Stalled=True` (reason, message): terminal for the tenant too.
    pub stalled: Option<(String, String)>,
}

/// Everything a reconcile observed, for a spec the operator accepted.
#[derive(Clone, Debug)]
pub struct Observed {
    pub plan: Plan,
    pub credentials: CredentialsObserved,
    pub host_sync: PartState,
    /// None when no git source is configured.
    pub git: Option<GitObserved>,
    /// The end-to-end checks (carried over from status when not due).
    pub verification: Verification,
}

/// One tenant's verification this reconcile: the two parts, each subject's state, the
/// schedule to record and when to look again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub identity: PartState,
    /// None without a git source.
    pub git: Option<PartState>,
    /// (credential name, reason) for each subject checked or carried over.
    pub subjects: Vec<(String, String)>,
    /// `status.verification` to write.
    pub record: Option<VerificationStatus>,
    /// The next check is due in this long (None: nothing scheduled).
    pub next_check: Option<Duration>,
    /// A reconcile request asked for a check that the per-identity rate limit put off: the
    /// request is not recorded as handled yet, so the next reconcile still sees it.
    pub request_deferred: bool,
}

/// A step that failed this reconcile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
    pub message: String,
    pub terminal: bool,
    /// The credential backend failed: `FederatedCredentialsReady` says so too.
    pub credentials: bool,
}

/// How a reconcile ended: the one input of [`summarize`].
#[derive(Clone, Copy, Debug)]
pub enum Outcome<'a> {
    /// The spec was refused: subjects and issuer are cleared; what was written stays recorded
    /// (it still exists and must stay findable).
    Refused(&'a SpecError),
    /// The isolation rules refused the object and everything it had was revoked.
    Revoked(&'a SpecError),
    /// A step failed; what was reported before (subjects, issuer) stays.
    Failed(&'a Failure),
    /// Every child applied; what they and the backend say.
    Converged(&'a Observed),
    /// `spec.suspend` on an object never reconciled: nothing was created. (An object suspended
    /// later keeps the status it had, as Flux's controllers do: fluxcd/source-controller's
    /// `GitRepositoryReconciler::Reconcile` returns on `spec.suspend` before it creates the patch
    /// helper, so nothing of the status changes. Flux gives an object suspended from the start no
    /// status at all; this one gets `Ready=False, reason=Suspended`, so kstatus tools see it as
    /// current instead of in progress forever.)
    Suspended,
}

/// The status a reconcile reports, before timestamps and generation are attached.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    pub conditions: Vec<DesiredCondition>,
    pub subjects: Vec<SubjectStatus>,
    pub issuer: Option<String>,
    pub host_service_accounts: Vec<String>,
    pub written_identities: Vec<String>,
    pub verification: Option<VerificationStatus>,
    /// Part of a reconcile request (`reconcile.fluxcd.io/requestedAt`) is still to do: keep
    /// the request unhandled in status.
    pub request_pending: bool,
}

impl Summary {
    pub fn is_ready(&self) -> bool {
        self.conditions
            .iter()
            .any(|d| d.type_ == c::READY && d.status == Status::True)
    }
}

/// What blocks Ready: (reason, message, terminal).
type Blocking = (String, String, bool);

pub fn summarize(outcome: Outcome<'_>, previous: Option<&TenantIdentityStatus>) -> Summary {
    let previously_written = || {
        previous
            .map(|s| s.written_identities.clone())
            .unwrap_or_default()
    };
    match outcome {
        Outcome::Refused(e) | Outcome::Revoked(e) => Summary {
            conditions: kstatus(
                Some((e.reason.to_string(), e.message.clone(), true)),
                "",
                Vec::new(),
            ),
            subjects: Vec::new(),
            issuer: None,
            host_service_accounts: Vec::new(),
            written_identities: match outcome {
                Outcome::Revoked(_) => Vec::new(),
                _ => previously_written(),
            },
            verification: None,
            request_pending: false,
        },
        Outcome::Failed(f) => {
            let mut parts = Vec::new();
            if f.credentials {
                parts.push(DesiredCondition::new(
                    c::FEDERATED_CREDENTIALS_READY,
                    Status::False,
                    &f.reason,
                    &f.message,
                ));
            }
            Summary {
                conditions: kstatus(
                    Some((f.reason.clone(), f.message.clone(), f.terminal)),
                    "",
                    parts,
                ),
                subjects: previous.map(|s| s.subjects.clone()).unwrap_or_default(),
                issuer: previous.and_then(|s| s.issuer.clone()),
                host_service_accounts: previous
                    .map(|s| s.host_service_accounts.clone())
                    .unwrap_or_default(),
                written_identities: previously_written(),
                verification: previous.and_then(|s| s.verification.clone()),
                request_pending: false,
            }
        }
        Outcome::Converged(o) => converged(o),
        Outcome::Suspended => Summary {
            // Ready=False says what is true (nothing was set up) without Reconciling or
            // Stalled: kstatus sees a current object, not one in progress forever.
            conditions: vec![DesiredCondition::new(
                c::READY,
                Status::False,
                reasons::SUSPENDED,
                "spec.suspend is true: the operator reconciles nothing for this TenantIdentity until it is false",
            )],
            subjects: Vec::new(),
            issuer: None,
            host_service_accounts: Vec::new(),
            written_identities: previously_written(),
            verification: previous.and_then(|s| s.verification.clone()),
            request_pending: false,
        },
    }
}

/// `Ready`, then `Reconciling` or `Stalled` when something blocks it, then the parts.
fn kstatus(
    blocking: Option<Blocking>,
    ready_message: &str,
    parts: Vec<DesiredCondition>,
) -> Vec<DesiredCondition> {
    let mut conditions = Vec::with_capacity(parts.len() + 2);
    match blocking {
        None => conditions.push(DesiredCondition::new(
            c::READY,
            Status::True,
            reasons::IDENTITY_READY,
            ready_message,
        )),
        Some((reason, message, terminal)) => {
            conditions.push(DesiredCondition::new(
                c::READY,
                Status::False,
                &reason,
                &message,
            ));
            let type_ = if terminal { c::STALLED } else { c::RECONCILING };
            conditions.push(DesiredCondition::new(type_, Status::True, reason, message));
        }
    }
    conditions.extend(parts);
    conditions
}

fn converged(o: &Observed) -> Summary {
    let plan = &o.plan;
    let git_message =
        |message: &str| format!("GitRepository {}/{}: {message}", plan.namespace, plan.name);
    let mut parts: Vec<(&'static str, &PartState)> = vec![
        (c::HOST_SYNC_READY, &o.host_sync),
        (c::FEDERATED_CREDENTIALS_READY, &o.credentials.part),
        (c::IDENTITY_VERIFIED, &o.verification.identity),
    ];
    // Git access before Flux's own view: when the operator knows why Flux cannot fetch, that
    // is the reason a person can act on.
    if let Some(access) = &o.verification.git {
        parts.push((c::GIT_ACCESS_VERIFIED, access));
    }
    if let Some(git) = &o.git {
        parts.push((c::GIT_SOURCE_READY, &git.part));
    }
    let stalled_git = o
        .git
        .as_ref()
        .and_then(|g| g.stalled.as_ref())
        .map(|(reason, message)| (reason.clone(), git_message(message), true));
    let blocking = stalled_git.or_else(|| {
        parts
            .iter()
            .find(|(_, p)| p.status != Status::True && p.blocks)
            .map(|(type_, p)| {
                if *type_ == c::GIT_SOURCE_READY {
                    (
                        reasons::GIT_SOURCE_NOT_READY.to_string(),
                        git_message(&p.message),
                        p.terminal,
                    )
                } else {
                    (p.reason.clone(), p.message.clone(), p.terminal)
                }
            })
    });
    let subjects: Vec<&str> = plan.subjects.iter().map(|s| s.subject.as_str()).collect();
    let verified = if o.verification.identity.status == Status::True {
        ", verified at Entra"
    } else {
        ""
    };
    let ready_message = format!(
        "{} federated credential(s) ready for {}{verified}",
        subjects.len(),
        subjects.join(", ")
    );
    let part_conditions = parts
        .iter()
        .map(|(t, p)| DesiredCondition::new(t, p.status, &p.reason, &p.message))
        .collect();

    Summary {
        conditions: kstatus(blocking, &ready_message, part_conditions),
        subjects: subject_states(o),
        issuer: Some(plan.issuer.clone()),
        host_service_accounts: plan.host_service_accounts(),
        written_identities: o.credentials.written_identities.clone(),
        verification: o.verification.record.clone(),
        request_pending: o.verification.request_deferred,
    }
}

fn subject_states(o: &Observed) -> Vec<SubjectStatus> {
    o.plan
        .subjects
        .iter()
        .map(|s| {
            let state = o
                .credentials
                .states
                .iter()
                .find(|(name, _)| *name == s.credential_name)
                .map(|(_, st)| st.clone())
                .unwrap_or(CredentialState::Pending("not created yet".into()));
            let (state, message) = match state {
                CredentialState::Ready => ("Ready", None),
                CredentialState::Pending(m) => ("Pending", Some(m)),
                CredentialState::Failed(m) => ("Failed", Some(m)),
            };
            SubjectStatus {
                subject: s.subject.clone(),
                credential_name: s.credential_name.clone(),
                state: state.into(),
                message,
                verified: o
                    .verification
                    .subjects
                    .iter()
                    .find(|(name, _)| *name == s.credential_name)
                    .map(|(_, reason)| reason.clone()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
