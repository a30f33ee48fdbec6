//! Pure: when a tenant's chain is checked again.
//!
//! The schedule lives in `status.verification` (fingerprint, since, lastChecked, failures), so
//! it survives a restart and a change of leader, and a reconcile for any other reason (a child
//! event, the periodic resync) costs no Entra call:
//!
//! - a new fingerprint (the credentials, the issuer or the git URL changed) or credentials the
//!   backend has just (re)written: check now, and the propagation grace starts again;
//! - a reconcile request (`reconcile.fluxcd.io/requestedAt` not handled yet): check now;
//! - after a success: again after the interval, jittered per tenant by ±10 % so that tenants
//!   created together do not all check together an hour later;
//! - after a failure: again after `RETRY_MIN · 2^(failures-1)`, at most `RETRY_MAX`, so a fix
//!   made in Azure DevOps or Entra shows within minutes, at a bounded rate.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use sha2::{Digest, Sha256};
use tenant_identity_crd::VerificationStatus;

use crate::plan::Plan;

/// The first retry after a failed check.
pub const RETRY_MIN: Duration = Duration::from_secs(10);
/// The longest wait between two checks of a failing tenant.
pub const RETRY_MAX: Duration = Duration::from_secs(120);

/// Whether to check now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Check; the propagation grace counts from `since`.
    Check { since: Timestamp },
    /// Not yet: the next check is due in this long.
    Wait(Duration),
}

/// What the schedule looks at.
#[derive(Clone, Copy, Debug)]
pub struct Inputs<'a> {
    pub previous: Option<&'a VerificationStatus>,
    pub fingerprint: &'a str,
    /// The backend wrote credentials this reconcile.
    pub rewritten: bool,
    /// A reconcile request not handled yet.
    pub requested: bool,
    pub now: Timestamp,
    pub interval: Duration,
    /// Spreads the checks of tenants over the interval (the object's uid).
    pub jitter_seed: &'a str,
}

pub fn decide(inputs: Inputs<'_>) -> Decision {
    let now = inputs.now;
    let Some(previous) = inputs.previous else {
        return Decision::Check { since: now };
    };
    let parse = |s: &str| s.parse::<Timestamp>().ok();
    let (Some(since), Some(last)) = (parse(&previous.since), parse(&previous.last_checked)) else {
        return Decision::Check { since: now };
    };
    if previous.fingerprint != inputs.fingerprint || inputs.rewritten {
        return Decision::Check { since: now };
    }
    if inputs.requested {
        return Decision::Check { since };
    }
    let wait = if previous.failures == 0 {
        jittered(inputs.interval, inputs.jitter_seed, &previous.last_checked)
    } else {
        retry_delay(previous.failures)
    };
    let elapsed = now
        .duration_since(last)
        .try_into()
        .unwrap_or(Duration::ZERO);
    match wait.checked_sub(elapsed) {
        Some(left) if !left.is_zero() => Decision::Wait(left),
        _ => Decision::Check { since },
    }
}

/// The wait after `failures` failed checks in a row.
pub fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_MIN.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// `interval` scaled by a factor in [0.9, 1.1) that depends only on `seed` and `salt`: stable
/// across the reconciles that look at the same check, different between tenants.
fn jittered(interval: Duration, seed: &str, salt: &str) -> Duration {
    let digest = Sha256::digest(format!("{seed}/{salt}").as_bytes());
    let unit = f64::from(u16::from_be_bytes([digest[0], digest[1]])) / 65536.0;
    interval.mul_f64(0.9 + 0.2 * unit)
}

/// A digest of everything a check depends on: any change makes the next reconcile check again.
pub fn fingerprint(plan: &Plan) -> String {
    let mut hasher = Sha256::new();
    let mut field = |value: &str| {
        hasher.update(value.len().to_be_bytes());
        hasher.update(value.as_bytes());
    };
    field(&plan.client_id);
    field(&plan.tenant_id);
    field(&plan.issuer);
    for subject in &plan.subjects {
        field(&subject.subject);
        field(&subject.audience);
        field(&subject.credential_name);
        field(&subject.service_account);
    }
    if let Some(git) = &plan.git {
        field(&git.url);
        field(if git.object_level() {
            "object"
        } else {
            "controller"
        });
    }
    hex::encode(&hasher.finalize()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("timestamp")
    }

    fn status(fingerprint: &str, since: i64, last: i64, failures: u32) -> VerificationStatus {
        VerificationStatus {
            fingerprint: fingerprint.into(),
            since: at(since).to_string(),
            last_checked: at(last).to_string(),
            failures,
        }
    }

    fn inputs<'a>(previous: Option<&'a VerificationStatus>, now: i64) -> Inputs<'a> {
        Inputs {
            previous,
            fingerprint: "f1",
            rewritten: false,
            requested: false,
            now: at(now),
            interval: Duration::from_secs(3600),
            jitter_seed: "uid-1",
        }
    }

    #[test]
    fn first_check_is_now_and_starts_the_grace() {
        assert_eq!(
            decide(inputs(None, 1000)),
            Decision::Check { since: at(1000) }
        );
    }

    #[test]
    fn a_verified_tenant_waits_for_the_jittered_interval() {
        let previous = status("f1", 0, 1000, 0);
        let Decision::Wait(left) = decide(inputs(Some(&previous), 1060)) else {
            panic!("a check a minute after a success");
        };
        assert!(
            left >= Duration::from_secs(3240 - 60) && left < Duration::from_secs(3960 - 60),
            "{left:?}"
        );
        // The same answer on every reconcile in between: the jitter is not random per call.
        assert_eq!(decide(inputs(Some(&previous), 1060)), Decision::Wait(left));
        assert_eq!(
            decide(inputs(Some(&previous), 1000 + 3960)),
            Decision::Check { since: at(0) }
        );
    }

    #[test]
    fn tenants_spread_over_the_interval() {
        let waits: std::collections::BTreeSet<u64> = (0..50)
            .map(|i| jittered(Duration::from_secs(3600), &format!("uid-{i}"), "t").as_secs())
            .collect();
        assert!(waits.len() > 30, "{waits:?}");
        assert!(waits.iter().all(|w| (3240..3960).contains(w)), "{waits:?}");
    }

    #[test]
    fn a_change_or_a_rewrite_checks_now_with_a_new_grace() {
        let previous = status("f0", 0, 1000, 0);
        assert_eq!(
            decide(inputs(Some(&previous), 1001)),
            Decision::Check { since: at(1001) }
        );
        let previous = status("f1", 0, 1000, 0);
        let rewritten = Inputs {
            rewritten: true,
            ..inputs(Some(&previous), 1001)
        };
        assert_eq!(decide(rewritten), Decision::Check { since: at(1001) });
    }

    #[test]
    fn a_reconcile_request_checks_now_keeping_the_grace() {
        let previous = status("f1", 500, 1000, 0);
        let requested = Inputs {
            requested: true,
            ..inputs(Some(&previous), 1001)
        };
        assert_eq!(decide(requested), Decision::Check { since: at(500) });
    }

    #[test]
    fn failures_back_off_up_to_the_bound() {
        assert_eq!(retry_delay(1), Duration::from_secs(10));
        assert_eq!(retry_delay(2), Duration::from_secs(20));
        assert_eq!(retry_delay(4), Duration::from_secs(80));
        assert_eq!(retry_delay(5), RETRY_MAX);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
        let previous = status("f1", 0, 1000, 2);
        assert_eq!(
            decide(inputs(Some(&previous), 1005)),
            Decision::Wait(Duration::from_secs(15))
        );
        assert_eq!(
            decide(inputs(Some(&previous), 1020)),
            Decision::Check { since: at(0) }
        );
    }

    #[test]
    fn an_unreadable_schedule_checks_now() {
        let mut previous = status("f1", 0, 1000, 0);
        previous.last_checked = "yesterday".into();
        assert_eq!(
            decide(inputs(Some(&previous), 1001)),
            Decision::Check { since: at(1001) }
        );
    }
}
