//! Verification (issue 12): after its credentials are Ready, the operator does what a tenant pod
//! and Flux do — a TokenRequest per subject exchanged at Entra, and the Flux identity's token at
//! the git server — and says in status which link is broken.
//!
//! Entra and Azure DevOps are the fake's (`e2e/fake-arm`), as strict as the real ones: the
//! fake Entra fetches the cluster's discovery document and keys (through
//! [`tenant_identity_e2e::issuer_relay`]), checks the signature and claims of each token the
//! API server issued, and matches issuer, subject and audience byte for byte against the
//! credentials as Azure holds them (the fake ARM's, or those the ASO simulation created). The
//! API server is whatever the suite runs against: the tokens are its own.

use std::{future::Future, sync::Mutex, time::Duration};

use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv,
    arm::{self, FakeArm},
    namespace::random_guid,
    objects::*,
    simulate,
    test_env::IssuerReach,
    wait_for,
};

/// No propagation grace: a refusal is reported as what it is at once.
const NO_GRACE: &[&str] = &["--verify-grace=0s"];
/// The organization, project and repository of `GIT_URL`.
const ORG: &str = "contoso";
const PROJECT: &str = "platform";
const REPO: &str = "tenants";
/// How soon a fix made outside Kubernetes must show (retries start at 10 s and double).
const FIX_SEEN_WITHIN: Duration = Duration::from_secs(90);

fn text(ti: &TenantIdentity, type_: &str) -> String {
    condition(ti, type_)
        .map(|c| format!("{type_}={} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| format!("no {type_} condition"))
}

fn fake(env: &TestEnv) -> &FakeArm {
    env.arm().expect("a verified TestEnv has the fake")
}

/// Play ASO, Flux and vcluster for `tenant` (credentials created in the fake Entra too) while
/// `until` runs; returns what `until` returns.
async fn with_platform<F: Future>(env: &TestEnv, tenant: &str, until: F) -> F::Output {
    let platform = simulate::converge_in_entra(
        &env.client,
        env.ns(),
        tenant,
        Duration::from_secs(600),
        fake(env),
    );
    tokio::pin!(until);
    tokio::pin!(platform);
    tokio::select! {
        out = &mut until => out,
        _ = &mut platform => until.await,
    }
}

async fn wait_condition(
    env: &TestEnv,
    name: &str,
    type_: &str,
    status: &str,
    reason: &str,
    timeout: Duration,
) -> TenantIdentity {
    let api = tenants(&env.client, env.ns());
    let what = format!("{type_}={status} reason={reason}");
    let wait = wait_for(&api, name, &what, timeout, |t| {
        has_condition(t, type_, status, Some(reason))
    });
    with_platform(env, name, wait).await.unwrap()
}

async fn wait_verified_ready(env: &TestEnv, name: &str) -> TenantIdentity {
    let ti = wait_condition(env, name, "Ready", "True", "IdentityReady", DEFAULT_TIMEOUT).await;
    assert!(
        has_condition(
            &ti,
            "IdentityVerified",
            "True",
            Some("TokenExchangeSucceeded")
        ),
        "{}",
        text(&ti, "IdentityVerified")
    );
    ti
}

/// An ARM-backend Shared tenant `name` of its own identity; with an ObjectLevel git source
/// when `git`. Returns the identity's client id.
async fn arm_tenant(env: &TestEnv, name: &str, git: bool) -> String {
    let identity = arm::create_identity(fake(env), &format!("id-{name}"));
    simulate::helm_workload_service_account(&env.client, env.ns(), name)
        .await
        .unwrap();
    let client_id = identity.default_client_id();
    let mut spec = arm::shared_spec(&client_id, name, &identity);
    if git {
        spec = with_git(spec, false);
    }
    create_tenant(&env.client, env.ns(), name, spec)
        .await
        .unwrap();
    client_id
}

fn devops_repository(env: &TestEnv) {
    fake(env).create_devops_repository(ORG, PROJECT, REPO);
}

fn subjects_verified(ti: &TenantIdentity) -> Vec<(String, Option<String>)> {
    ti.status
        .iter()
        .flat_map(|s| s.subjects.iter())
        .map(|s| (s.subject.clone(), s.verified.clone()))
        .collect()
}

fn all_subjects(ti: &TenantIdentity, reason: &str) -> bool {
    let subjects = subjects_verified(ti);
    !subjects.is_empty() && subjects.iter().all(|(_, v)| v.as_deref() == Some(reason))
}

// ------------------------------------------------------------------------------------------
// The chain works: Shared, PerServiceAccount, ASO and git tenants are verified.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_per_service_account_aso_and_git_tenants_are_verified() {
    let env = TestEnv::start_verified("verify-ok", IssuerReach::Reachable, &[])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    devops_repository(&env);

    // Shared, ARM backend, ObjectLevel git: two subjects and the repository.
    let git_client = arm_tenant(&env, "team-g", true).await;
    fake(&env).add_devops_member(ORG, &git_client);
    let ti = wait_verified_ready(&env, "team-g").await;
    assert!(
        has_condition(&ti, "GitAccessVerified", "True", Some("GitAccessGranted")),
        "{}",
        text(&ti, "GitAccessVerified")
    );
    assert!(
        all_subjects(&ti, "TokenExchangeSucceeded"),
        "{:?}",
        subjects_verified(&ti)
    );
    assert_eq!(
        subjects_verified(&ti).len(),
        2,
        "workload and Flux subjects"
    );
    // What Entra saw: a token of each subject for ARM, the Flux one for Azure DevOps.
    let issued: Vec<_> = fake(&env)
        .issued_tokens()
        .iter()
        .filter_map(|t| fake(&env).issued_token(t))
        .filter(|t| t.client_id == git_client)
        .collect();
    let flux_subject = subject(&ns, &git_service_account("team-g"));
    let workload_subject = subject(&ns, "vc-workload-team-g");
    for wanted in [&workload_subject, &flux_subject] {
        assert!(
            issued
                .iter()
                .any(|t| t.assertion_subject.as_ref() == Some(wanted)
                    && t.resource != fake_arm::DEVOPS_RESOURCE),
            "an ARM token for {wanted}: {issued:?}"
        );
    }
    assert!(
        issued
            .iter()
            .any(|t| t.assertion_subject.as_ref() == Some(&flux_subject)
                && t.resource == fake_arm::DEVOPS_RESOURCE),
        "an Azure DevOps token for the Flux identity: {issued:?}"
    );
    assert!(fake(&env).calls().git >= 1, "the repository was asked");

    // PerServiceAccount, ARM backend: each synced host ServiceAccount is a subject.
    let identity = arm::create_identity(fake(&env), "id-team-p");
    create_tenant(
        &client,
        &ns,
        "team-p",
        arm::per_service_account_spec(
            &identity.default_client_id(),
            "team-p",
            &identity,
            &[("apps", "api"), ("jobs", "worker")],
        ),
    )
    .await
    .unwrap();
    let ti = wait_verified_ready(&env, "team-p").await;
    assert_eq!(subjects_verified(&ti).len(), 2);
    assert!(
        all_subjects(&ti, "TokenExchangeSucceeded"),
        "{:?}",
        subjects_verified(&ti)
    );

    // Shared, ASO backend: the credential ASO created in Azure is the one exchanged against.
    simulate::helm_workload_service_account(&client, &ns, "team-s")
        .await
        .unwrap();
    create_tenant(
        &client,
        &ns,
        "team-s",
        shared_spec(&random_guid(), "team-s"),
    )
    .await
    .unwrap();
    let ti = wait_verified_ready(&env, "team-s").await;
    assert!(
        all_subjects(&ti, "TokenExchangeSucceeded"),
        "{:?}",
        subjects_verified(&ti)
    );
    assert!(
        condition(&ti, "GitAccessVerified").is_none(),
        "no git source, no GitAccessVerified"
    );

    let exchanged = env
        .operator
        .metric_sum(
            "tenant_identity_verifications_total",
            &[("kind", "exchange"), ("result", "TokenExchangeSucceeded")],
        )
        .await
        .unwrap();
    assert!(exchanged >= 5.0, "five subjects exchanged: {exchanged}");
    let git = env
        .operator
        .metric_sum(
            "tenant_identity_verifications_total",
            &[("kind", "git"), ("result", "GitAccessGranted")],
        )
        .await
        .unwrap();
    assert!(git >= 1.0, "git access counted: {git}");
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// A credential edited or deleted in Azure behind the operator's back.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_edited_behind_the_operators_back_are_a_federation_mismatch() {
    let env = TestEnv::start_verified("verify-mismatch", IssuerReach::Reachable, NO_GRACE)
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = random_guid();
    simulate::helm_workload_service_account(&client, &ns, "team-m")
        .await
        .unwrap();
    create_tenant(&client, &ns, "team-m", shared_spec(&client_id, "team-m"))
        .await
        .unwrap();
    let ti = wait_verified_ready(&env, "team-m").await;
    let issuer = ti.status.as_ref().and_then(|s| s.issuer.clone()).unwrap();
    let workload = subject(&ns, "vc-workload-team-m");
    let audience = "api://AzureADTokenExchange";
    let entra = fake(&env);
    let edit = |issuer_now: &str, subject_now: &str, issuer_new: &str, subject_new: &str| {
        assert!(entra.unregister_federated_credential(&client_id, issuer_now, subject_now));
        entra.register_federated_credential(&client_id, issuer_new, subject_new, audience);
    };

    // Someone "fixes" the issuer in the portal: the trailing slash differs.
    let other_issuer = match issuer.strip_suffix('/') {
        Some(without) => without.to_string(),
        None => format!("{issuer}/"),
    };
    edit(&issuer, &workload, &other_issuer, &workload);
    let ti = request_reconcile(&client, &ns, "team-m", "edited-issuer", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let verified = condition(&ti, "IdentityVerified").unwrap();
    assert_eq!(
        (verified.status.as_str(), verified.reason.as_str()),
        ("False", "FederationMismatch"),
        "{}",
        text(&ti, "IdentityVerified")
    );
    for part in [
        "AADSTS700211",
        &format!("presented issuer '{issuer}'"),
        "in the issuer",
        &workload,
    ] {
        assert!(
            verified.message.contains(part),
            "{part:?} in {}",
            verified.message
        );
    }
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("FederationMismatch")
    ));
    assert!(has_condition(
        &ti,
        "Stalled",
        "True",
        Some("FederationMismatch")
    ));
    assert!(
        all_subjects(&ti, "FederationMismatch"),
        "{:?}",
        subjects_verified(&ti)
    );

    // The issuer is put back, but the subject now differs in case.
    let shouting = workload.replace("vc-workload", "VC-Workload");
    edit(&other_issuer, &workload, &issuer, &shouting);
    let ti = request_reconcile(&client, &ns, "team-m", "edited-subject", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let verified = condition(&ti, "IdentityVerified").unwrap();
    assert_eq!(
        verified.reason,
        "FederationMismatch",
        "{}",
        text(&ti, "IdentityVerified")
    );
    assert!(
        verified.message.contains("AADSTS7002138"),
        "{}",
        verified.message
    );
    assert!(
        verified.message.contains("case of the subject"),
        "{}",
        verified.message
    );

    // Deleted in Azure (ASO still says Ready): nothing matches the issuer any more.
    assert!(entra.unregister_federated_credential(&client_id, &issuer, &shouting));
    let ti = request_reconcile(&client, &ns, "team-m", "deleted", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(
        has_condition(&ti, "IdentityVerified", "False", Some("FederationMismatch")),
        "{}",
        text(&ti, "IdentityVerified")
    );

    // Put right: verified again, Ready again.
    entra.register_federated_credential(&client_id, &issuer, &workload, audience);
    let ti = request_reconcile(&client, &ns, "team-m", "repaired", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(is_ready(&ti), "{}", text(&ti, "Ready"));
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// Entra cannot reach the issuer.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuer_entra_cannot_reach_is_issuer_unreachable() {
    let env = TestEnv::start_verified("verify-issuer", IssuerReach::Unreachable, NO_GRACE)
        .await
        .unwrap();
    arm_tenant(&env, "team-u", false).await;
    let ti = wait_condition(
        &env,
        "team-u",
        "IdentityVerified",
        "False",
        "IssuerUnreachable",
        DEFAULT_TIMEOUT,
    )
    .await;
    let message = &condition(&ti, "IdentityVerified").unwrap().message;
    assert!(message.contains("--enable-oidc-issuer"), "{message}");
    assert!(message.contains("AADSTS50166"), "{message}");
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("IssuerUnreachable")
    ));
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// Azure DevOps: denied until the identity joins the organization, with no restart.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_access_is_denied_until_the_identity_joins_the_organization() {
    let env = TestEnv::start_verified("verify-git", IssuerReach::Reachable, NO_GRACE)
        .await
        .unwrap();
    devops_repository(&env);
    let client_id = arm_tenant(&env, "team-d", true).await;
    let ti = wait_condition(
        &env,
        "team-d",
        "GitAccessVerified",
        "False",
        "GitAccessDenied",
        DEFAULT_TIMEOUT,
    )
    .await;
    let message = &condition(&ti, "GitAccessVerified").unwrap().message;
    assert!(message.contains("Azure DevOps organization"), "{message}");
    assert!(message.contains(&client_id), "{message}");
    assert!(
        has_condition(
            &ti,
            "IdentityVerified",
            "True",
            Some("TokenExchangeSucceeded")
        ),
        "the exchange itself works: {}",
        text(&ti, "IdentityVerified")
    );
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("GitAccessDenied")
    ));

    // The platform team adds the service principal; the operator sees it on its own.
    fake(&env).add_devops_member(ORG, &client_id);
    let added = std::time::Instant::now();
    let ti = wait_condition(
        &env,
        "team-d",
        "GitAccessVerified",
        "True",
        "GitAccessGranted",
        FIX_SEEN_WITHIN,
    )
    .await;
    eprintln!("access granted seen {:?} after the fix", added.elapsed());
    assert!(is_ready(&ti), "{}", text(&ti, "Ready"));

    // A wrong repository is a 404, said as such.
    tenants(&env.client, env.ns())
        .patch(
            "team-d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"git": {"url": format!("https://dev.azure.com/{ORG}/{PROJECT}/_git/missing")}}})),
        )
        .await
        .unwrap();
    wait_condition(
        &env,
        "team-d",
        "GitAccessVerified",
        "False",
        "RepositoryNotFound",
        DEFAULT_TIMEOUT,
    )
    .await;
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// Propagation: Entra refuses a new credential for a while; the tenant is Verifying, never failed.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_still_propagating_is_verifying_then_ready() {
    let env = TestEnv::start_verified("verify-propagation", IssuerReach::Reachable, &[])
        .await
        .unwrap();
    let identity = arm::create_identity(fake(&env), "id-team-w");
    let client_id = identity.default_client_id();
    fake(&env).set_propagation_delay(&client_id, Duration::from_secs(8));
    simulate::helm_workload_service_account(&env.client, env.ns(), "team-w")
        .await
        .unwrap();
    create_tenant(
        &env.client,
        env.ns(),
        "team-w",
        arm::shared_spec(&client_id, "team-w", &identity),
    )
    .await
    .unwrap();
    let seen = Mutex::new(Vec::<String>::new());
    let api = tenants(&env.client, env.ns());
    let wait = wait_for(&api, "team-w", "Ready=True", DEFAULT_TIMEOUT, |t| {
        let mut seen = seen.lock().unwrap();
        for type_ in ["IdentityVerified", "Ready", "Stalled"] {
            if let Some(c) = condition(t, type_) {
                let state = format!("{type_}={} {}", c.status, c.reason);
                if !seen.contains(&state) {
                    seen.push(state);
                }
            }
        }
        is_ready(t)
    });
    with_platform(&env, "team-w", wait).await.unwrap();
    let seen = seen.into_inner().unwrap();
    assert!(
        seen.iter()
            .any(|s| s == "IdentityVerified=Unknown Verifying"),
        "Verifying while Entra propagates: {seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.starts_with("IdentityVerified=False") || s.starts_with("Stalled")),
        "never a failure inside the grace: {seen:?}"
    );
    assert!(
        seen.iter().any(|s| s == "Ready=False Verifying"),
        "{seen:?}"
    );
    let refused = env
        .operator
        .metric_sum(
            "tenant_identity_verifications_total",
            &[("kind", "exchange"), ("result", "Verifying")],
        )
        .await
        .unwrap();
    assert!(
        refused >= 1.0,
        "the refused exchange was counted as Verifying"
    );
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// Off, and the steady state.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_verification_off_the_conditions_say_so_and_ready_does_not_wait() {
    let env = TestEnv::start_with_arm("verify-off", &["--verify=false"])
        .await
        .unwrap();
    let client_id = arm_tenant(&env, "team-o", true).await;
    let ti = wait_condition(
        &env,
        "team-o",
        "Ready",
        "True",
        "IdentityReady",
        DEFAULT_TIMEOUT,
    )
    .await;
    for type_ in ["IdentityVerified", "GitAccessVerified"] {
        assert!(
            has_condition(&ti, type_, "Unknown", Some("VerificationDisabled")),
            "{}",
            text(&ti, type_)
        );
    }
    assert!(
        fake(&env)
            .token_requests()
            .iter()
            .all(|r| r.client_id != client_id),
        "no exchange for the tenant's identity"
    );
    assert!(ti.status.as_ref().unwrap().verification.is_none());
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verified_steady_state_makes_no_entra_calls() {
    let env = TestEnv::start_verified("verify-steady", IssuerReach::Reachable, &[])
        .await
        .unwrap();
    devops_repository(&env);
    let client_id = arm_tenant(&env, "team-q", true).await;
    fake(&env).add_devops_member(ORG, &client_id);
    wait_verified_ready(&env, "team-q").await;

    let reconciles = || async {
        env.operator
            .metric_sum("tenant_identity_reconcile_total", &[])
            .await
            .unwrap()
    };
    fake(&env).reset_calls();
    let before = reconciles().await;
    // Reconciles for other reasons: changes to the object that are not requests, each one
    // waited for.
    let mut seen = before;
    for i in 0..3 {
        tenants(&env.client, env.ns())
            .patch(
                "team-q",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"e2e.example/touch": i.to_string()}}}),
                ),
            )
            .await
            .unwrap();
        let after = seen;
        seen = tenant_identity_e2e::poll_until("one more reconcile", DEFAULT_TIMEOUT, || async {
            let now = reconciles().await;
            Ok(if now > after {
                tenant_identity_e2e::Check::Done(now)
            } else {
                tenant_identity_e2e::Check::NotYet(format!("{now} reconciles"))
            })
        })
        .await
        .unwrap();
    }
    assert!(seen >= before + 3.0);
    let calls = fake(&env).calls();
    assert_eq!(
        (calls.token, calls.git),
        (0, 0),
        "no Entra or git call between intervals: {calls:?}"
    );

    // A reconcile request checks at once: one exchange per subject, one for Azure DevOps and
    // one git request. That is also what one check per interval costs.
    let ti = request_reconcile(
        &env.client,
        env.ns(),
        "team-q",
        "check-now",
        DEFAULT_TIMEOUT,
    )
    .await
    .unwrap();
    assert!(is_ready(&ti), "{}", text(&ti, "Ready"));
    let calls = fake(&env).calls();
    eprintln!(
        "one check of a Shared tenant with ObjectLevel git: {} token requests, {} git requests",
        calls.token, calls.git
    );
    assert_eq!((calls.token, calls.git), (3, 1), "{calls:?}");
    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// Secrets.
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_the_logs_events_or_status_at_debug() {
    let env = TestEnv::start_verified_with_env(
        "verify-secrets",
        IssuerReach::Reachable,
        NO_GRACE,
        &[("RUST_LOG", "debug")],
    )
    .await
    .unwrap();
    devops_repository(&env);
    let client_id = arm_tenant(&env, "team-x", true).await;
    fake(&env).add_devops_member(ORG, &client_id);
    wait_verified_ready(&env, "team-x").await;
    // A failure path too: access removed.
    assert!(fake(&env).remove_devops_member(ORG, &client_id));
    let ti = request_reconcile(&env.client, env.ns(), "team-x", "denied", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(has_condition(
        &ti,
        "GitAccessVerified",
        "False",
        Some("GitAccessDenied")
    ));

    let presented: Vec<String> = fake(&env)
        .token_requests()
        .into_iter()
        .filter(|r| r.client_id == client_id)
        .map(|r| r.client_assertion)
        .collect();
    assert!(
        presented.len() >= 4,
        "service-account tokens were presented: {}",
        presented.len()
    );
    let issued = fake(&env).issued_tokens();
    let logs = env.operator.logs();
    assert!(logs.contains("DEBUG"), "debug logs were captured");
    let events =
        kube::Api::<k8s_openapi::api::events::v1::Event>::namespaced(env.client.clone(), env.ns())
            .list(&ListParams::default())
            .await
            .unwrap();
    let events = serde_json::to_string(&events.items).unwrap();
    let status = serde_json::to_string(&ti.status).unwrap();
    for token in presented.iter().chain(issued.iter()) {
        // The signature alone is enough to be a leak of the token.
        let signature = token.rsplit('.').next().unwrap_or(token);
        for (place, text) in [("logs", &logs), ("events", &events), ("status", &status)] {
            assert!(
                !text.contains(signature),
                "a token is in the operator's {place}"
            );
        }
    }
    let exposition = env.operator.metrics().await.unwrap();
    assert!(
        presented
            .iter()
            .all(|t| !exposition.contains(t.rsplit('.').next().unwrap_or(t)))
    );
    env.finish().await;
}
