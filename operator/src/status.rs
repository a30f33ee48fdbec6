//! Pure step: from what was observed to conditions and subject states.
//!
//! Rules (kstatus): `Ready` is always written. `Reconciling=True` while the tenant waits on
//! something that will resolve by itself (a credential backend, Flux, a vcluster being
//! installed, a retryable error); `Stalled=True` when only a human can fix it (bad spec, claim
//! conflict, missing grant, Flux stalled, a terminal Azure error). Never both.

use tenant_identity_crd::{
    SubjectStatus,
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
}

impl PartState {
    pub fn ready(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: Status::True,
            reason: reason.into(),
            message: message.into(),
            terminal: false,
        }
    }
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: Status::False,
            reason: reason.into(),
            message: message.into(),
            terminal: false,
        }
    }
    pub fn unknown(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: Status::Unknown,
            reason: reason.into(),
            message: message.into(),
            terminal: false,
        }
    }
    pub fn failed(reason: &str, message: impl Into<String>) -> Self {
        Self {
            status: Status::False,
            reason: reason.into(),
            message: message.into(),
            terminal: true,
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

/// Everything a reconcile observed, for a spec the operator accepted.
#[derive(Clone, Debug)]
pub struct Observed<'a> {
    pub plan: &'a Plan,
    pub credentials: PartState,
    /// Credential state per subject, by credential name.
    pub credential_states: Vec<(String, CredentialState)>,
    pub host_sync: PartState,
    /// None when no git source is configured.
    pub git: Option<PartState>,
    /// Git source stalled upstream (Flux `Stalled=True`): reason and message.
    pub git_stalled: Option<(String, String)>,
    /// A failed apply or API call this reconcile (reason, message, terminal).
    pub error: Option<PartState>,
}

pub struct ComputedStatus {
    pub conditions: Vec<DesiredCondition>,
    pub subjects: Vec<SubjectStatus>,
}

/// Status for a spec the operator refused: nothing was created.
pub fn refused(error: &SpecError) -> ComputedStatus {
    ComputedStatus {
        conditions: vec![
            DesiredCondition::new(c::READY, Status::False, error.reason, &error.message),
            DesiredCondition::new(c::STALLED, Status::True, error.reason, &error.message),
        ],
        subjects: Vec::new(),
    }
}

pub fn compute(o: &Observed<'_>) -> ComputedStatus {
    let mut conditions = Vec::new();
    let part = |type_: &'static str, p: &PartState| {
        DesiredCondition::new(type_, p.status, &p.reason, &p.message)
    };
    let mut parts: Vec<(&'static str, &PartState)> = vec![
        (c::HOST_SYNC_READY, &o.host_sync),
        (c::FEDERATED_CREDENTIALS_READY, &o.credentials),
    ];
    if let Some(git) = &o.git {
        parts.push((c::GIT_SOURCE_READY, git));
    }

    let blocking = o
        .error
        .as_ref()
        .map(|e| (e.reason.clone(), e.message.clone(), e.terminal))
        .or_else(|| {
            o.git_stalled.as_ref().map(|(reason, message)| {
                (
                    reason.clone(),
                    format!(
                        "GitRepository {}/{}: {message}",
                        o.plan.namespace, o.plan.name
                    ),
                    true,
                )
            })
        })
        .or_else(|| {
            parts
                .iter()
                .find(|(_, p)| p.status != Status::True)
                .map(|(type_, p)| {
                    let reason = if *type_ == c::GIT_SOURCE_READY {
                        reasons::GIT_SOURCE_NOT_READY.to_string()
                    } else {
                        p.reason.clone()
                    };
                    let message = if *type_ == c::GIT_SOURCE_READY {
                        format!(
                            "GitRepository {}/{}: {}",
                            o.plan.namespace, o.plan.name, p.message
                        )
                    } else {
                        p.message.clone()
                    };
                    (reason, message, p.terminal)
                })
        });

    match &blocking {
        None => {
            let subjects: Vec<&str> = o.plan.subjects.iter().map(|s| s.subject.as_str()).collect();
            conditions.push(DesiredCondition::new(
                c::READY,
                Status::True,
                reasons::IDENTITY_READY,
                format!(
                    "{} federated credential(s) ready for {}",
                    subjects.len(),
                    subjects.join(", ")
                ),
            ));
        }
        Some((reason, message, terminal)) => {
            conditions.push(DesiredCondition::new(
                c::READY,
                Status::False,
                reason,
                message,
            ));
            let type_ = if *terminal {
                c::STALLED
            } else {
                c::RECONCILING
            };
            conditions.push(DesiredCondition::new(type_, Status::True, reason, message));
        }
    }
    conditions.extend(parts.iter().map(|(t, p)| part(t, p)));

    let subjects = o
        .plan
        .subjects
        .iter()
        .map(|s| {
            let state = o
                .credential_states
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
            }
        })
        .collect();
    ComputedStatus {
        conditions,
        subjects,
    }
}

#[cfg(test)]
mod tests;
