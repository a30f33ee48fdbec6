//! Verification: after its credentials are Ready, the operator does what a tenant pod and Flux
//! will do and says in status which link of the chain is broken (docs/architecture.md,
//! "Verification").
//!
//! For each subject of the plan: a TokenRequest for the subject's ServiceAccount (the
//! credential's audience, 10 minutes), exchanged at Entra for an ARM token
//! (`IdentityVerified`). For `git.auth: ObjectLevel`: the `<name>-git` token exchanged for Azure
//! DevOps and `GET <url>/info/refs?service=git-upload-pack` with it (`GitAccessVerified`).
//!
//! Layers: `answers` (pure: what Entra's and the git server's answers mean, and the messages)
//! and `schedule` (pure: when to check) around this module's I/O: the schedule, the bounds and
//! the summary of a check here, the calls of one check in `chain`. The schedule is kept in
//! `status.verification`, so a reconcile that is not due makes no call at all.
//!
//! Secrets: the service-account token and the Entra access tokens live only inside
//! [`Verifier::check_subject`] and [`Verifier::check_git`] and are dropped as soon as the answer
//! is read. No log line, error, event, status or metric carries one (the e2e suite checks the
//! operator's log at `RUST_LOG=debug` for every token issued).

pub mod answers;
mod chain;
pub mod schedule;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::jiff::Timestamp;
use kube::Client;
use reqwest::Url;
use tenant_identity_crd::{
    TenantIdentity, VerificationStatus,
    conditions::{self as c, Status},
    reasons,
};
use tokio::sync::Semaphore;
use tracing::debug;

pub use crate::status::Verification;
use crate::{
    metrics::Metrics,
    names,
    plan::{Plan, SubjectKind},
    status::PartState,
};
use answers::{KIND_EXCHANGE, KIND_GIT};
use chain::SubjectCheck;
use schedule::{Decision, Inputs};

/// Lifetime of the service-account tokens the checks request (the shortest the API server
/// accepts): they are used once, within seconds.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 600;
/// Azure DevOps' application id: the resource of the token Flux presents to Azure DevOps.
pub const AZURE_DEVOPS_SCOPE: &str = "499b84ac-1321-427f-aa17-267ca6975798/.default";
/// At most one check of an identity this often, whatever asks for it (reconcile requests in a
/// loop, say).
pub const MIN_GAP_PER_IDENTITY: Duration = Duration::from_secs(5);

/// `run` flags of verification.
#[derive(Clone, Debug)]
pub struct VerifySettings {
    /// `--verify`.
    pub enabled: bool,
    /// `--verify-interval`: how often a verified tenant is checked again.
    pub interval: Duration,
    /// `--verify-grace`: how long after a credential changed a refusal is "Verifying".
    pub grace: Duration,
    /// `--verify-concurrency`: checks in flight at once.
    pub concurrency: usize,
    /// `--authority-host`.
    pub authority_host: Url,
    /// `<--arm-endpoint>/.default`.
    pub arm_scope: String,
    /// `--azure-devops-endpoint`.
    pub devops_endpoint: Option<Url>,
}

/// What the pipeline knows when it asks for a check.
pub struct CheckRequest<'a> {
    pub ti: &'a TenantIdentity,
    pub plan: &'a Plan,
    /// Credentials and host sync are Ready: there is something to check.
    pub prerequisites_ready: bool,
    /// The backend wrote credentials this reconcile.
    pub rewritten: bool,
}

/// Runs the checks, bounded in concurrency and per identity.
pub struct Verifier {
    client: Client,
    http: reqwest::Client,
    settings: VerifySettings,
    slots: Semaphore,
    /// Client id → when its last check started.
    recent: Mutex<HashMap<String, Instant>>,
    metrics: Arc<Metrics>,
}

/// One due check: what it checks against and when.
struct Round<'a> {
    fingerprint: &'a str,
    /// The object's uid: spreads tenants over the interval.
    seed: &'a str,
    /// The propagation grace counts from here.
    since: Timestamp,
    now: Timestamp,
    in_grace: bool,
    recorded: Option<&'a VerificationStatus>,
}

impl Verifier {
    pub fn new(
        client: Client,
        http: reqwest::Client,
        settings: VerifySettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        let slots = Semaphore::new(settings.concurrency.max(1));
        Verifier {
            client,
            http,
            settings,
            slots,
            recent: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub async fn verify(&self, request: CheckRequest<'_>) -> Verification {
        let CheckRequest {
            ti,
            plan,
            prerequisites_ready,
            rewritten,
        } = request;
        let previous = ti.status.as_ref();
        if !self.settings.enabled {
            let disabled = || {
                PartState::informational(
                    reasons::VERIFICATION_DISABLED,
                    "the operator runs with --verify=false (Helm verification.enabled: false)",
                )
            };
            return Verification {
                identity: disabled(),
                git: plan.git.as_ref().map(|_| disabled()),
                subjects: Vec::new(),
                record: None,
                next_check: None,
                request_deferred: false,
            };
        }
        let recorded = previous.and_then(|s| s.verification.clone());
        if !prerequisites_ready {
            let waiting = || {
                PartState::unknown(
                    reasons::VERIFYING,
                    "waits for the federated credentials and the host ServiceAccounts to be ready",
                )
            };
            return Verification {
                identity: waiting(),
                git: self.git_placeholder(plan, waiting),
                subjects: Vec::new(),
                record: recorded,
                next_check: None,
                request_deferred: false,
            };
        }
        let fingerprint = schedule::fingerprint(plan);
        let requested = names::reconcile_requested(ti);
        let now = Timestamp::now();
        let decision = schedule::decide(Inputs {
            previous: recorded.as_ref(),
            fingerprint: &fingerprint,
            rewritten,
            requested,
            now,
            interval: self.settings.interval,
            jitter_seed: ti.metadata.uid.as_deref().unwrap_or_default(),
        });
        let since = match decision {
            Decision::Wait(left) => return self.carried(ti, plan, recorded, left),
            Decision::Check { since } => since,
        };
        if let Some(left) = self.too_soon(&plan.client_id) {
            return Verification {
                request_deferred: requested,
                ..self.carried(ti, plan, recorded, left)
            };
        }
        let _slot = self.slots.acquire().await;
        let in_grace = now
            .duration_since(since)
            .try_into()
            .is_ok_and(|elapsed: Duration| elapsed < self.settings.grace);
        let seed = ti.metadata.uid.as_deref().unwrap_or_default();
        self.check(
            plan,
            Round {
                fingerprint: &fingerprint,
                seed,
                since,
                now,
                in_grace,
                recorded: recorded.as_ref(),
            },
        )
        .await
    }

    /// Not due: what the last check found stays, and the next check is scheduled.
    fn carried(
        &self,
        ti: &TenantIdentity,
        plan: &Plan,
        recorded: Option<VerificationStatus>,
        left: Duration,
    ) -> Verification {
        let previous = ti.status.as_ref();
        let condition = |type_: &str| {
            previous
                .and_then(|s| c::find(&s.conditions, type_))
                .map(|cond| {
                    let status = match cond.status.as_str() {
                        "True" => Status::True,
                        "False" => Status::False,
                        _ => Status::Unknown,
                    };
                    PartState::carried(
                        status,
                        &cond.reason,
                        &cond.message,
                        answers::is_terminal(&cond.reason),
                    )
                })
                .unwrap_or_else(|| PartState::unknown(reasons::VERIFYING, "not checked yet"))
        };
        let subjects = plan
            .subjects
            .iter()
            .filter_map(|s| {
                previous?
                    .subjects
                    .iter()
                    .find(|p| p.credential_name == s.credential_name)?
                    .verified
                    .clone()
                    .map(|v| (s.credential_name.clone(), v))
            })
            .collect();
        Verification {
            identity: condition(c::IDENTITY_VERIFIED),
            git: self.git_placeholder(plan, || condition(c::GIT_ACCESS_VERIFIED)),
            subjects,
            record: recorded,
            next_check: Some(left),
            request_deferred: false,
        }
    }

    /// `GitAccessVerified` when the check itself is not run: NotApplicable for ControllerLevel,
    /// else `otherwise`; None without git.
    fn git_placeholder(
        &self,
        plan: &Plan,
        otherwise: impl FnOnce() -> PartState,
    ) -> Option<PartState> {
        let git = plan.git.as_ref()?;
        Some(if git.object_level() {
            otherwise()
        } else {
            PartState::informational(
                reasons::NOT_APPLICABLE,
                "git.auth is ControllerLevel: Flux's source-controller authenticates as itself, which the operator cannot act as",
            )
        })
    }

    /// The rate limit per identity: the time left before it may be checked again.
    fn too_soon(&self, client_id: &str) -> Option<Duration> {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        recent.retain(|_, started| now.duration_since(*started) < MIN_GAP_PER_IDENTITY);
        if let Some(started) = recent.get(client_id) {
            return Some(MIN_GAP_PER_IDENTITY.saturating_sub(now.duration_since(*started)));
        }
        recent.insert(client_id.to_string(), now);
        None
    }

    async fn check(&self, plan: &Plan, round: Round<'_>) -> Verification {
        let Round {
            fingerprint,
            seed,
            since,
            now,
            in_grace,
            recorded,
        } = round;
        let mut subjects = Vec::with_capacity(plan.subjects.len());
        let mut failed: Option<(String, SubjectCheck)> = None;
        let mut git = None;
        for subject in &plan.subjects {
            let started = Instant::now();
            let (check, git_token) = self.check_subject(plan, subject).await;
            self.count(
                KIND_EXCHANGE,
                grace_reason(check.ok, check.reason, in_grace),
                started,
            );
            if subject.kind == SubjectKind::FluxSource
                && let Some(sa_token) = git_token
            {
                let started = Instant::now();
                let answer = self.check_git(plan, &sa_token).await;
                drop(sa_token);
                let ok = answer.reason == reasons::GIT_ACCESS_GRANTED;
                self.count(KIND_GIT, grace_reason(ok, answer.reason, in_grace), started);
                git = Some(part(
                    ok,
                    answer.reason,
                    answer.message,
                    in_grace,
                    reasons::GIT_ACCESS_GRANTED,
                ));
            }
            subjects.push((
                subject.credential_name.clone(),
                grace_reason(check.ok, check.reason, in_grace).to_string(),
            ));
            if !check.ok && failed.is_none() {
                failed = Some((subject.subject.clone(), check));
            }
        }
        let exchanged = failed.is_none();
        let identity = match failed {
            None => PartState::ready(
                reasons::TOKEN_EXCHANGE_SUCCEEDED,
                format!(
                    "Entra exchanged a token of each of the {} subject(s) for client id {}",
                    plan.subjects.len(),
                    plan.client_id
                ),
            ),
            Some((subject, check)) => part(
                false,
                check.reason,
                format!("{subject}: {}", check.message),
                in_grace,
                reasons::TOKEN_EXCHANGE_SUCCEEDED,
            ),
        };
        let git = self.git_placeholder(plan, || {
            git.unwrap_or_else(|| {
                PartState::unknown(
                    reasons::VERIFYING,
                    "waits for the token exchange of the Flux identity to succeed",
                )
            })
        });
        let all_ok = exchanged
            && git
                .as_ref()
                .is_none_or(|g| g.status == Status::True || !g.blocks);
        let failures = match recorded {
            _ if all_ok => 0,
            Some(r) if r.fingerprint == fingerprint => r.failures.saturating_add(1),
            _ => 1,
        };
        let record = VerificationStatus {
            fingerprint: fingerprint.to_string(),
            since: since.to_string(),
            last_checked: now.to_string(),
            failures,
        };
        let next_check = match schedule::decide(Inputs {
            previous: Some(&record),
            fingerprint,
            rewritten: false,
            requested: false,
            now,
            interval: self.settings.interval,
            jitter_seed: seed,
        }) {
            Decision::Wait(left) => left,
            Decision::Check { .. } => schedule::RETRY_MIN,
        };
        debug!(
            tenant = %format!("{}/{}", plan.namespace, plan.name),
            identity = %identity.reason,
            git = git.as_ref().map(|g| g.reason.as_str()).unwrap_or("-"),
            failures,
            "verified the chain"
        );
        Verification {
            identity,
            git,
            subjects,
            record: Some(record),
            next_check: Some(next_check),
            request_deferred: false,
        }
    }
}

/// A part from one check's result: inside the grace a failure is `Verifying` (Unknown), never
/// False.
fn part(ok: bool, reason: &str, message: String, in_grace: bool, success: &str) -> PartState {
    if ok {
        return PartState::ready(success, message);
    }
    if in_grace {
        return PartState::unknown(
            reasons::VERIFYING,
            format!(
                "Entra can take a few minutes to accept a credential just written; checking again. Last answer: {message}"
            ),
        );
    }
    if answers::is_terminal(reason) {
        PartState::failed(reason, message)
    } else {
        PartState::waiting(reason, message)
    }
}

fn grace_reason(ok: bool, reason: &'static str, in_grace: bool) -> &'static str {
    if !ok && in_grace {
        reasons::VERIFYING
    } else {
        reason
    }
}

#[cfg(test)]
mod tests;
