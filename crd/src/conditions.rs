//! kstatus-compatible conditions.
//!
//! `Ready` is always present. `Reconciling` and `Stalled` appear only while true and never
//! together (kstatus abnormal-true polarity), so tools like Flux health checks and Argo CD can
//! tell "working on it" from "needs a human". Per-part conditions say which step is not working.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const RECONCILING: &str = "Reconciling";
pub const STALLED: &str = "Stalled";
pub const FEDERATED_CREDENTIALS_READY: &str = "FederatedCredentialsReady";
pub const HOST_SYNC_READY: &str = "HostSyncReady";
pub const GIT_SOURCE_READY: &str = "GitSourceReady";
/// A token of each subject was exchanged at Entra (the chain a tenant pod uses works).
pub const IDENTITY_VERIFIED: &str = "IdentityVerified";
/// The Flux identity's token opened the git repository (the chain Flux uses works).
pub const GIT_ACCESS_VERIFIED: &str = "GitAccessVerified";

/// Every condition type the operator writes, in the order it writes them.
pub const ALL_TYPES: [&str; 8] = [
    READY,
    RECONCILING,
    STALLED,
    FEDERATED_CREDENTIALS_READY,
    HOST_SYNC_READY,
    IDENTITY_VERIFIED,
    GIT_ACCESS_VERIFIED,
    GIT_SOURCE_READY,
];

/// Condition status as Kubernetes spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    True,
    False,
    Unknown,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::True => "True",
            Status::False => "False",
            Status::Unknown => "Unknown",
        }
    }

    pub fn from_bool(ok: bool) -> Self {
        if ok { Status::True } else { Status::False }
    }
}

/// A condition the reconciler wants to report, before timestamps are attached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredCondition {
    pub type_: &'static str,
    pub status: Status,
    pub reason: String,
    pub message: String,
}

impl DesiredCondition {
    pub fn new(
        type_: &'static str,
        status: Status,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Replace `current` with `desired`, keeping `lastTransitionTime` of every condition whose status
/// did not change (a reason or message change is not a transition). Types in `ALL_TYPES` that are
/// absent from `desired` are removed; unknown types written by others are kept.
pub fn merge(
    current: &[Condition],
    desired: &[DesiredCondition],
    observed_generation: Option<i64>,
    now: &Time,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = desired
        .iter()
        .map(|d| {
            let previous = current.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match previous {
                Some(p) if p.status == d.status.as_str() => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status: d.status.as_str().to_string(),
                reason: d.reason.clone(),
                message: d.message.clone(),
                observed_generation,
                last_transition_time,
            }
        })
        .collect();
    out.extend(
        current
            .iter()
            .filter(|c| !ALL_TYPES.contains(&c.type_.as_str()))
            .cloned(),
    );
    out
}

pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    #[test]
    fn transition_time_kept_when_status_unchanged() {
        let first = merge(
            &[],
            &[DesiredCondition::new(
                READY,
                Status::False,
                "Progressing",
                "a",
            )],
            Some(1),
            &at(100),
        );
        let second = merge(
            &first,
            &[DesiredCondition::new(
                READY,
                Status::False,
                "IssuerUnavailable",
                "b",
            )],
            Some(2),
            &at(200),
        );
        assert_eq!(second[0].last_transition_time, at(100));
        assert_eq!(second[0].reason, "IssuerUnavailable");
        assert_eq!(second[0].observed_generation, Some(2));
        let third = merge(
            &second,
            &[DesiredCondition::new(
                READY,
                Status::True,
                "IdentityReady",
                "c",
            )],
            Some(2),
            &at(300),
        );
        assert_eq!(third[0].last_transition_time, at(300));
    }

    #[test]
    fn our_absent_types_removed_foreign_types_kept() {
        let current = merge(
            &[],
            &[
                DesiredCondition::new(READY, Status::False, "X", "x"),
                DesiredCondition::new(RECONCILING, Status::True, "Progressing", "y"),
            ],
            Some(1),
            &at(1),
        );
        let mut with_foreign = current.clone();
        with_foreign.push(Condition {
            type_: "example.com/Audited".into(),
            status: "True".into(),
            reason: "Audited".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: at(1),
        });
        let next = merge(
            &with_foreign,
            &[DesiredCondition::new(
                READY,
                Status::True,
                "IdentityReady",
                "ok",
            )],
            Some(1),
            &at(2),
        );
        let types: Vec<_> = next.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(types, vec![READY, "example.com/Audited"]);
        assert!(is_true(&next, READY));
        assert!(find(&next, RECONCILING).is_none());
    }
}
