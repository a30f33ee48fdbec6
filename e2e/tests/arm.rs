//! Azure Resource Manager backend scenarios (issue 4): the operator writes federated credentials
//! through ARM itself, here against the fake ARM and Entra endpoints in `e2e/fake-arm`
//! (`--arm-endpoint`, `--authority-host`, `AZURE_*` workload identity environment). The fake runs
//! on 127.0.0.1 like the operator, so these tests run unchanged against a real cluster.
//!
//! What is asserted is what Azure would hold: the credentials on the identity (name, issuer byte
//! for byte, subject, single audience), the calls the operator made (no writes in steady state,
//! none when over the limit), and what the TenantIdentity reports.

use std::time::Duration;

use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, Operator, TestEnv,
    arm::{self, Fault, Operation, OtherClient, StoredCredential},
    objects::*,
    operator::{ArmSettings, OPERATOR_CLIENT_ID, sum_samples},
    poll_until, simulate, wait_for, wait_gone,
};

/// Issuer passed with `--oidc-issuer-url` (AKS style: trailing slash, compared byte for byte).
const AKS_ISSUER: &str = "https://oidc.prod-aks.azure.com/0c5f1b4e-1111-4222-8333-444455556666/";

fn condition_text(ti: &TenantIdentity, type_: &str) -> String {
    condition(ti, type_)
        .map(|c| format!("{type_}={} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| format!("no {type_} condition"))
}

/// Wait until `name` is Ready. PerServiceAccount tenants need their host ServiceAccounts, which
/// vcluster's syncer creates once the tenant created the virtual ones: that is played here (ARM
/// needs no other simulation).
async fn wait_ready(env: &TestEnv, name: &str) -> TenantIdentity {
    let api = tenants(&env.client, env.ns());
    poll_until(&format!("{name} Ready=True"), DEFAULT_TIMEOUT, || async {
        let ti = api.get(name).await?;
        if is_ready(&ti) {
            return Ok(Check::Done(ti));
        }
        simulate::vcluster_syncs_service_accounts(&env.client, env.ns(), &ti).await?;
        Ok(Check::NotYet(condition_text(&ti, "Ready")))
    })
    .await
    .unwrap()
}

async fn wait_credentials_condition(
    env: &TestEnv,
    name: &str,
    status: &str,
    reason: Option<&str>,
) -> TenantIdentity {
    wait_for(
        &tenants(&env.client, env.ns()),
        name,
        &format!("FederatedCredentialsReady={status} reason={reason:?}"),
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "FederatedCredentialsReady", status, reason),
    )
    .await
    .unwrap()
}

/// Subjects of a PerServiceAccount tenant of vcluster `vc` with short names (no hashing).
fn per_sa_subjects(ns: &str, vc: &str, sas: &[(&str, &str)]) -> Vec<String> {
    sas.iter()
        .map(|(vns, name)| subject(ns, &arm::plain_host_service_account(vns, name, vc)))
        .collect()
}

// ------------------------------------------------------------------------------------------
// 1. Credentials in each mode
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_mode_writes_one_credential_to_azure() {
    let env = TestEnv::start_with_arm("arm-shared", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identity = arm::create_identity(fake, "id-team-a");

    create_tenant(
        &client,
        &ns,
        "team-a",
        arm::shared_spec(&identity.default_client_id(), "team-a", &identity),
    )
    .await
    .unwrap();

    // Credentials do not wait for the vcluster: they are written before its SA exists.
    let ti = wait_credentials_condition(&env, "team-a", "True", None).await;
    assert!(
        has_finalizer(&ti),
        "finalizer: {:?}",
        ti.metadata.finalizers
    );
    assert!(
        has_condition(
            &ti,
            "HostSyncReady",
            "False",
            Some("VirtualClusterNotFound")
        ),
        "{}",
        condition_text(&ti, "HostSyncReady")
    );
    let status = ti.status.clone().unwrap();
    assert_eq!(status.issuer.as_deref(), Some(issuer.as_str()));
    let want = subject(&ns, "vc-workload-team-a");
    let expected = arm::expected_credentials(&ti, &issuer, std::slice::from_ref(&want)).unwrap();
    assert!(
        expected[0].name.starts_with(&format!("{ns}-team-a-")),
        "deterministic name: {}",
        expected[0].name
    );
    assert!(fake_arm::is_valid_credential_name(&expected[0].name));
    assert_eq!(
        arm::sorted(arm::credentials(fake, &identity).unwrap()),
        expected,
        "exactly one credential: issuer byte for byte, subject, single audience"
    );
    assert_eq!(fake.calls().put, 1, "one PUT: {:?}", fake.calls());

    // The vcluster appears: Ready.
    simulate::helm_workload_service_account(&client, &ns, "team-a")
        .await
        .unwrap();
    let ti = wait_ready(&env, "team-a").await;
    let status = ti.status.unwrap();
    assert!(
        status.subjects.iter().all(|s| s.state == "Ready"),
        "{:?}",
        status.subjects
    );
    assert_eq!(
        arm::sorted(arm::credentials(fake, &identity).unwrap()),
        expected
    );
    assert_eq!(fake.calls().put, 1, "still one PUT: {:?}", fake.calls());

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_service_account_mode_with_git_writes_a_credential_per_subject() {
    let env = TestEnv::start_with_arm("arm-per-sa", &["--oidc-issuer-url", AKS_ISSUER])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-payments");
    let sas = [("default", "app"), ("batch", "reconciler")];

    let spec = with_git(
        arm::per_service_account_spec(&identity.default_client_id(), "payments", &identity, &sas),
        false,
    );
    create_tenant(&client, &ns, "payments", spec).await.unwrap();

    let ti = wait_credentials_condition(&env, "payments", "True", None).await;
    assert!(
        has_finalizer(&ti),
        "finalizer: {:?}",
        ti.metadata.finalizers
    );
    let mut subjects = per_sa_subjects(&ns, "payments", &sas);
    // ObjectLevel git auth: Flux's source ServiceAccount is federated too.
    subjects.push(subject(&ns, &git_service_account("payments")));
    let expected = arm::expected_credentials(&ti, AKS_ISSUER, &subjects).unwrap();
    assert_eq!(expected.len(), 3);
    assert_eq!(
        arm::sorted(arm::credentials(fake, &identity).unwrap()),
        expected,
        "one credential per subject, issuer byte for byte from --oidc-issuer-url"
    );
    assert_eq!(
        ti.status.as_ref().and_then(|s| s.issuer.as_deref()),
        Some(AKS_ISSUER)
    );

    // Flux reports the GitRepository Ready: the tenant is Ready.
    let ti = simulate::converge(&client, &ns, "payments", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(has_condition(&ti, "GitSourceReady", "True", None));
    assert!(has_condition(
        &ti,
        "FederatedCredentialsReady",
        "True",
        None
    ));
    assert_eq!(
        arm::sorted(arm::credentials(fake, &identity).unwrap()),
        expected
    );
    assert_eq!(fake.calls().put, 3, "{:?}", fake.calls());

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 2. Steady state
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steady_state_makes_no_arm_writes() {
    let env = TestEnv::start_with_arm("arm-steady", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-steady");
    arm::seed_foreign(fake, &identity, 2).unwrap();
    fake.set_page_size(Some(2));
    // Two tenants write to one identity at once: writes must be serialized (no 409).
    fake.set_busy_window(Duration::from_millis(200));
    simulate::helm_workload_service_account(&client, &ns, "vc-s")
        .await
        .unwrap();
    create_tenant(
        &client,
        &ns,
        "shared",
        arm::shared_spec(&identity.default_client_id(), "vc-s", &identity),
    )
    .await
    .unwrap();
    let sas = [("default", "app"), ("jobs", "runner")];
    create_tenant(
        &client,
        &ns,
        "per-sa",
        arm::per_service_account_spec(&identity.default_client_id(), "vc-p", &identity, &sas),
    )
    .await
    .unwrap();
    wait_ready(&env, "shared").await;
    wait_ready(&env, "per-sa").await;
    let before = arm::credentials(fake, &identity).unwrap();
    assert_eq!(before.len(), 5, "2 foreign + 1 + 2: {before:?}");
    assert_eq!(fake.calls().conflicts, 0, "{:?}", fake.calls());
    assert_eq!(fake.calls().put, 3, "{:?}", fake.calls());

    fake.reset_calls();
    for round in 1..=3 {
        for name in ["shared", "per-sa"] {
            let ti = request_reconcile(
                &client,
                &ns,
                name,
                &format!("steady-{round}"),
                DEFAULT_TIMEOUT,
            )
            .await
            .unwrap();
            assert!(is_ready(&ti), "{}", condition_text(&ti, "Ready"));
        }
    }
    let calls = fake.calls();
    assert_eq!(calls.put, 0, "PUT in steady state: {calls:?}");
    assert_eq!(calls.delete, 0, "DELETE in steady state: {calls:?}");
    assert!(
        calls.list >= 6,
        "every requested reconcile reads ARM: {calls:?}"
    );
    assert_eq!(arm::credentials(fake, &identity).unwrap(), before);

    // Reconciles for any other reason (a change that asks for nothing) do not read ARM again
    // within the resync interval: its answer stands until something changes.
    fake.reset_calls();
    for round in 1..=3 {
        for name in ["shared", "per-sa"] {
            let reconciles = env.operator.successful_reconciles().await.unwrap();
            tenants(&client, &ns)
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {"e2e.example/touch": round.to_string()}}})),
                )
                .await
                .unwrap();
            env.operator
                .wait_reconciles_above(reconciles, DEFAULT_TIMEOUT)
                .await
                .unwrap();
        }
    }
    let calls = fake.calls();
    assert_eq!(
        (
            calls.list,
            calls.get,
            calls.get_identity,
            calls.put,
            calls.delete
        ),
        (0, 0, 0, 0, 0),
        "ARM calls by six reconciles of converged tenants: {calls:?}"
    );

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 3. The 20-credential limit counts foreign credentials
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_limit_counts_foreign_credentials() {
    let env = TestEnv::start_with_arm("arm-limit", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identity = arm::create_identity(fake, "id-crowded");
    let foreign = arm::seed_foreign(fake, &identity, 19).unwrap();
    // ARM pages long lists: the count must follow nextLink.
    fake.set_page_size(Some(7));
    let sas = [("default", "app"), ("jobs", "runner")];

    create_tenant(
        &client,
        &ns,
        "crowded",
        arm::per_service_account_spec(&identity.default_client_id(), "vc-c", &identity, &sas),
    )
    .await
    .unwrap();
    let ti =
        wait_credentials_condition(&env, "crowded", "False", Some("CredentialLimitExceeded")).await;
    let message = &condition(&ti, "FederatedCredentialsReady").unwrap().message;
    assert!(
        message.contains("21") && message.contains("20"),
        "names the count and the limit: {message}"
    );
    assert!(
        has_condition(&ti, "Ready", "False", Some("CredentialLimitExceeded")),
        "{}",
        condition_text(&ti, "Ready")
    );
    assert!(
        has_condition(&ti, "Stalled", "True", Some("CredentialLimitExceeded")),
        "{}",
        condition_text(&ti, "Stalled")
    );
    let calls = fake.calls();
    assert_eq!(calls.put, 0, "nothing partial is written: {calls:?}");
    assert_eq!(calls.delete, 0, "{calls:?}");
    assert_eq!(
        arm::credentials(fake, &identity).unwrap(),
        foreign,
        "the 19 foreign credentials are untouched"
    );

    // The other team removes one of theirs. The operator cannot watch Azure, so the tenant
    // owner asks for a reconcile (as `flux reconcile` would).
    OtherClient::sign_in(fake)
        .await
        .unwrap()
        .delete(&identity, &foreign[0].name)
        .await
        .unwrap();
    request_reconcile(&client, &ns, "crowded", "room-freed", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let ti = wait_ready(&env, "crowded").await;
    let subjects = per_sa_subjects(&ns, "vc-c", &sas);
    let ours = arm::expected_credentials(&ti, &issuer, &subjects).unwrap();
    let now = arm::credentials(fake, &identity).unwrap();
    assert_eq!(now.len(), 20, "{now:?}");
    assert_eq!(arm::without(&now, &foreign[1..]), ours);
    assert_eq!(arm::without(&now, &ours), foreign[1..].to_vec());

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 4. A foreign credential holding our subject
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_subject_is_reported_and_never_taken_over() {
    let env = TestEnv::start_with_arm("arm-duplicate", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identity = arm::create_identity(fake, "id-dup");
    let theirs = StoredCredential::new(
        "hand-made-by-ops",
        issuer.clone(),
        subject(&ns, "vc-workload-team-d"),
        DEFAULT_AUDIENCE,
    );
    fake.seed_credential(&identity, theirs.clone()).unwrap();
    simulate::helm_workload_service_account(&client, &ns, "team-d")
        .await
        .unwrap();

    create_tenant(
        &client,
        &ns,
        "team-d",
        arm::shared_spec(&identity.default_client_id(), "team-d", &identity),
    )
    .await
    .unwrap();
    let ti = wait_credentials_condition(&env, "team-d", "False", Some("DuplicateSubject")).await;
    let message = &condition(&ti, "FederatedCredentialsReady").unwrap().message;
    assert!(
        message.contains("hand-made-by-ops"),
        "names the credential holding the subject: {message}"
    );
    assert!(
        has_condition(&ti, "Ready", "False", Some("DuplicateSubject")),
        "{}",
        condition_text(&ti, "Ready")
    );
    assert!(
        has_condition(&ti, "Stalled", "True", Some("DuplicateSubject")),
        "{}",
        condition_text(&ti, "Stalled")
    );
    let calls = fake.calls();
    assert_eq!(calls.put, 0, "{calls:?}");
    assert_eq!(calls.delete, 0, "{calls:?}");
    assert_eq!(
        arm::credentials(fake, &identity).unwrap(),
        vec![theirs],
        "the foreign credential is untouched"
    );

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 5. Retries
// ------------------------------------------------------------------------------------------

/// A Shared tenant whose vcluster exists, so only the credential stands between it and Ready.
async fn shared_tenant(env: &TestEnv, name: &str) -> arm::IdentityRef {
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, &format!("id-{name}"));
    simulate::helm_workload_service_account(&env.client, env.ns(), name)
        .await
        .unwrap();
    create_tenant(
        &env.client,
        env.ns(),
        name,
        arm::shared_spec(&identity.default_client_id(), name, &identity),
    )
    .await
    .unwrap();
    identity
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_writes_honour_retry_after() {
    let env = TestEnv::start_with_arm("arm-429", &[]).await.unwrap();
    let fake = env.arm().unwrap();
    fake.inject_fault(Fault::new(Operation::Put, 429).times(2).retry_after("1"));

    let ((identity, ti), samples) = arm::sample_calls(fake, async {
        let identity = shared_tenant(&env, "team-t").await;
        (identity, wait_ready(&env, "team-t").await)
    })
    .await;
    assert!(fake.pending_faults().is_empty(), "both 429s were served");
    let puts = arm::call_times(&samples, Operation::Put);
    assert_eq!(puts.len(), 3, "two throttled PUTs and the retried one");
    for pair in puts.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(900),
            "a PUT was retried {gap:?} after a 429 with Retry-After: 1"
        );
    }
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let expected =
        arm::expected_credentials(&ti, &issuer, &[subject(env.ns(), "vc-workload-team-t")])
            .unwrap();
    assert_eq!(arm::credentials(fake, &identity).unwrap(), expected);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried() {
    let env = TestEnv::start_with_arm("arm-503", &[]).await.unwrap();
    let fake = env.arm().unwrap();
    fake.inject_fault(Fault::new(Operation::Put, 503).times(2));

    let identity = shared_tenant(&env, "team-u").await;
    wait_ready(&env, "team-u").await;
    assert!(fake.pending_faults().is_empty(), "both 503s were served");
    assert_eq!(fake.calls().put, 3, "{:?}", fake.calls());
    assert_eq!(arm::credentials(fake, &identity).unwrap().len(), 1);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_write_conflict_is_retried() {
    let env = TestEnv::start_with_arm("arm-409", &[]).await.unwrap();
    let fake = env.arm().unwrap();
    // Someone else (another tool) writes to the identity at the same moment.
    fake.inject_fault(Fault::new(Operation::Put, 409));

    let identity = shared_tenant(&env, "team-k").await;
    wait_ready(&env, "team-k").await;
    assert!(fake.pending_faults().is_empty(), "the 409 was served");
    assert_eq!(fake.calls().put, 2, "{:?}", fake.calls());
    assert_eq!(arm::credentials(fake, &identity).unwrap().len(), 1);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_failure_is_reported_then_recovers() {
    let env = TestEnv::start_with_arm("arm-403", &[]).await.unwrap();
    let fake = env.arm().unwrap();
    // A role assignment still propagating: the first writes are refused.
    fake.inject_fault(Fault::new(Operation::Put, 403).times(2));

    let identity = shared_tenant(&env, "team-v").await;
    let ti = wait_credentials_condition(&env, "team-v", "False", Some("AuthorizationFailed")).await;
    let message = &condition(&ti, "FederatedCredentialsReady").unwrap().message;
    assert!(
        message.contains("does not have authorization"),
        "carries ARM's message: {message}"
    );
    assert!(
        has_condition(&ti, "Ready", "False", Some("AuthorizationFailed")),
        "{}",
        condition_text(&ti, "Ready")
    );
    assert!(
        has_condition(&ti, "Reconciling", "True", Some("AuthorizationFailed")),
        "retried, not stalled: {}",
        condition_text(&ti, "Reconciling")
    );
    assert!(condition(&ti, "Stalled").is_none_or(|c| c.status != "True"));

    wait_ready(&env, "team-v").await;
    assert!(fake.pending_faults().is_empty());
    assert_eq!(fake.calls().put, 3, "{:?}", fake.calls());
    assert_eq!(arm::credentials(fake, &identity).unwrap().len(), 1);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_request_stalls_with_arms_message() {
    let env = TestEnv::start_with_arm("arm-400", &[]).await.unwrap();
    let fake = env.arm().unwrap();
    let arm_message = "The issuer 'https://example.invalid/' of Federated Identity Credential is not allowed by policy (e2e).";
    fake.inject_fault(
        Fault::new(Operation::Put, 400)
            .times(1000)
            .error("InvalidRequest", arm_message),
    );

    let identity = shared_tenant(&env, "team-w").await;
    let ti = wait_for(
        &tenants(&env.client, env.ns()),
        "team-w",
        "Stalled=True",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Stalled", "True", None),
    )
    .await
    .unwrap();
    let stalled = condition(&ti, "Stalled").unwrap();
    assert_eq!(stalled.reason, "InvalidRequest", "{stalled:?}");
    assert!(
        stalled.message.contains(arm_message),
        "carries ARM's message: {}",
        stalled.message
    );
    assert!(
        has_condition(
            &ti,
            "FederatedCredentialsReady",
            "False",
            Some("InvalidRequest")
        ),
        "{}",
        condition_text(&ti, "FederatedCredentialsReady")
    );
    assert!(has_condition(&ti, "Ready", "False", Some("InvalidRequest")));
    assert!(
        condition(&ti, "Reconciling").is_none_or(|c| c.status != "True"),
        "never Stalled and Reconciling together"
    );
    assert!(arm::credentials(fake, &identity).unwrap().is_empty());

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 6. Spec change
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_subject_deletes_exactly_its_credential() {
    let env = TestEnv::start_with_arm("arm-spec-change", &[])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identity = arm::create_identity(fake, "id-change");
    let foreign = arm::seed_foreign(fake, &identity, 1).unwrap();
    let sas = [("default", "app"), ("jobs", "runner")];
    create_tenant(
        &client,
        &ns,
        "team-c",
        arm::per_service_account_spec(&identity.default_client_id(), "vc-c", &identity, &sas),
    )
    .await
    .unwrap();
    let ti = wait_ready(&env, "team-c").await;
    let subjects = per_sa_subjects(&ns, "vc-c", &sas);
    let both = arm::expected_credentials(&ti, &issuer, &subjects).unwrap();
    assert_eq!(
        arm::without(&arm::credentials(fake, &identity).unwrap(), &foreign),
        both
    );

    fake.reset_calls();
    tenants(&client, &ns)
        .patch(
            "team-c",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"virtualCluster": {
                "serviceAccounts": [{"namespace": "default", "name": "app"}],
            }}})),
        )
        .await
        .unwrap();
    let ti = wait_for(
        &tenants(&client, &ns),
        "team-c",
        "Ready=True with one subject",
        DEFAULT_TIMEOUT,
        |t| is_ready(t) && t.status.as_ref().is_some_and(|s| s.subjects.len() == 1),
    )
    .await
    .unwrap();
    let kept = arm::expected_credentials(&ti, &issuer, &subjects[..1]).unwrap();
    let removed: Vec<StoredCredential> =
        both.iter().filter(|c| !kept.contains(c)).cloned().collect();
    assert_eq!(removed.len(), 1, "{both:?} vs {kept:?}");
    let now = arm::credentials(fake, &identity).unwrap();
    assert_eq!(
        arm::without(&now, &foreign),
        kept,
        "only the removed subject's credential goes"
    );
    assert_eq!(
        arm::without(&now, &kept),
        foreign,
        "the foreign credential stays"
    );
    let calls = fake.calls();
    assert_eq!(calls.delete, 1, "{calls:?}");
    assert_eq!(
        calls.put, 0,
        "the kept credential is not rewritten: {calls:?}"
    );

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 7. Deletion
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_tenant_deletes_its_credentials_only() {
    let env = TestEnv::start_with_arm("arm-delete", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-delete");
    let foreign = arm::seed_foreign(fake, &identity, 2).unwrap();
    let sas = [("default", "app"), ("jobs", "runner")];
    create_tenant(
        &client,
        &ns,
        "team-x",
        arm::per_service_account_spec(&identity.default_client_id(), "vc-x", &identity, &sas),
    )
    .await
    .unwrap();
    let ti = wait_ready(&env, "team-x").await;
    assert!(has_finalizer(&ti));
    assert_eq!(arm::credentials(fake, &identity).unwrap().len(), 4);

    fake.reset_calls();
    let tis = tenants(&client, &ns);
    tis.delete("team-x", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tis, "team-x", DEFAULT_TIMEOUT).await.unwrap();
    assert_eq!(
        arm::credentials(fake, &identity).unwrap(),
        foreign,
        "ours deleted, foreign untouched"
    );
    assert_eq!(fake.calls().delete, 2, "{:?}", fake.calls());

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retain_policy_keeps_credentials() {
    let env = TestEnv::start_with_arm("arm-retain", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-retain");
    let sas = [("default", "app"), ("jobs", "runner")];
    let mut spec =
        arm::per_service_account_spec(&identity.default_client_id(), "vc-r", &identity, &sas);
    spec["deletionPolicy"] = json!("Retain");
    create_tenant(&client, &ns, "team-r", spec).await.unwrap();
    wait_ready(&env, "team-r").await;
    let before = arm::credentials(fake, &identity).unwrap();
    assert_eq!(before.len(), 2);

    fake.reset_calls();
    let tis = tenants(&client, &ns);
    tis.delete("team-r", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tis, "team-r", DEFAULT_TIMEOUT).await.unwrap();
    assert_eq!(arm::credentials(fake, &identity).unwrap(), before);
    let calls = fake.calls();
    assert_eq!(calls.writes(), 0, "{calls:?}");

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_deleted_in_azure_does_not_block_deletion() {
    let env = TestEnv::start_with_arm("arm-gone", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let identity = arm::create_identity(fake, "id-gone");
    let sas = [("default", "app")];
    create_tenant(
        &client,
        &ns,
        "team-g",
        arm::per_service_account_spec(&identity.default_client_id(), "vc-g", &identity, &sas),
    )
    .await
    .unwrap();
    wait_ready(&env, "team-g").await;

    assert!(
        fake.delete_identity(&identity),
        "someone deletes the identity in Azure"
    );
    let tis = tenants(&client, &ns);
    tis.delete("team-g", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tis, "team-g", DEFAULT_TIMEOUT).await.unwrap();
    assert!(fake.credentials(&identity).is_none());

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 8. Restart
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_mid_convergence_creates_no_duplicate_credentials() {
    let mut env = TestEnv::start_with_arm("arm-restart", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identities = {
        let fake = env.arm().unwrap();
        // Slow writes (ARM takes a while per FIC write), so the kill lands mid-way.
        fake.set_busy_window(Duration::from_millis(250));
        [
            arm::create_identity(fake, "id-blue"),
            arm::create_identity(fake, "id-green"),
        ]
    };
    // Three tenants per identity (they share its client id, in one namespace).
    let tenants_of = |i: usize| i % 2;
    let sas = [("default", "app"), ("jobs", "runner")];
    let client_ids = [
        identities[0].default_client_id(),
        identities[1].default_client_id(),
    ];
    let names: Vec<String> = (0..6).map(|i| format!("tenant-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let which = tenants_of(i);
        create_tenant(
            &client,
            &ns,
            name,
            arm::per_service_account_spec(&client_ids[which], name, &identities[which], &sas),
        )
        .await
        .unwrap();
    }
    {
        let fake = env.arm().unwrap();
        poll_until("the first credentials in Azure", DEFAULT_TIMEOUT, || {
            let calls = fake.calls();
            async move {
                Ok(if calls.put >= 2 {
                    Check::Done(())
                } else {
                    Check::NotYet(format!("{calls:?}"))
                })
            }
        })
        .await
        .unwrap();
        let written: usize = identities
            .iter()
            .map(|id| fake.credentials(id).map(|c| c.len()).unwrap_or_default())
            .sum();
        assert!(written < 12, "killed mid-way, not after: {written} written");
    }
    env.restart_operator(&[]).await.unwrap();

    let mut all_ready = Vec::new();
    for name in &names {
        all_ready.push(wait_ready(&env, name).await);
    }
    let fake = env.arm().unwrap();
    for (which, identity) in identities.iter().enumerate() {
        let found = arm::sorted(arm::credentials(fake, identity).unwrap());
        let mut expected = Vec::new();
        for (i, ti) in all_ready.iter().enumerate() {
            if tenants_of(i) == which {
                expected.extend(
                    arm::expected_credentials(ti, &issuer, &per_sa_subjects(&ns, &names[i], &sas))
                        .unwrap(),
                );
            }
        }
        let expected = arm::sorted(expected);
        assert_eq!(found.len(), 6, "{}: {found:?}", identity.name);
        assert_eq!(
            found, expected,
            "{}: no duplicates, nothing missing",
            identity.name
        );
    }

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 9. Metrics
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_request_metrics_are_exported_without_names() {
    let env = TestEnv::start_with_arm("arm-metrics", &[]).await.unwrap();
    let identity = shared_tenant(&env, "team-m").await;
    let ti = wait_ready(&env, "team-m").await;

    let text = env.operator.metrics().await.unwrap();
    let puts = sum_samples(
        &text,
        "tenant_identity_azure_requests_total",
        &[("operation", "put"), ("code", "200")],
    ) + sum_samples(
        &text,
        "tenant_identity_azure_requests_total",
        &[("operation", "put"), ("code", "201")],
    );
    assert!(puts > 0.0, "successful PUTs counted:\n{text}");
    assert!(
        sum_samples(
            &text,
            "tenant_identity_azure_requests_total",
            &[("operation", "token")]
        ) > 0.0,
        "token exchanges counted:\n{text}"
    );
    let lists = sum_samples(
        &text,
        "tenant_identity_azure_request_duration_seconds_count",
        &[("operation", "list")],
    );
    assert!(lists > 0.0, "list durations observed:\n{text}");

    // Bounded labels only: no identity, credential, tenant or namespace name in any series.
    let mut names = vec![
        identity.name.clone(),
        identity.subscription_id.clone(),
        identity.resource_group.clone(),
        env.ns().to_string(),
    ];
    names.extend(
        ti.status
            .iter()
            .flat_map(|s| s.subjects.iter())
            .map(|s| s.credential_name.clone()),
    );
    for sample in tenant_identity_e2e::operator::parse_exposition(&text)
        .into_iter()
        .filter(|s| s.name.starts_with("tenant_identity_"))
    {
        for (label, value) in &sample.labels {
            for name in &names {
                assert!(
                    !value.contains(name.as_str()),
                    "{name} in label {label} of {}",
                    sample.name
                );
            }
        }
    }

    env.finish().await;
}

// ------------------------------------------------------------------------------------------
// 10. No secret in the logs
// ------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    // Debug logging, short-lived tokens and a revocation: as many chances to leak as possible.
    let fake = arm::FakeArm::start().await.unwrap();
    fake.set_token_expires_in(3);
    let cluster = tenant_identity_e2e::Cluster::connect().await.unwrap();
    let ns = cluster.namespace("arm-secrets").await.unwrap();
    let operator = Operator::spawn(
        &cluster,
        "operator",
        &[],
        Some(ArmSettings::for_fake(&fake)),
        &[("RUST_LOG", "debug")],
    )
    .await
    .unwrap();
    let client = cluster.client();
    let env = TestEnv {
        cluster,
        ns,
        operator,
        client,
        fake_arm: Some(fake),
        issuer_relay: None,
    };
    let fake = env.arm().unwrap();
    // A failure too, so error paths log.
    fake.inject_fault(Fault::new(Operation::Put, 403));
    shared_tenant(&env, "team-s").await;
    wait_ready(&env, "team-s").await;
    fake.revoke_tokens();
    request_reconcile(
        &env.client,
        env.ns(),
        "team-s",
        "after-revoke",
        DEFAULT_TIMEOUT,
    )
    .await
    .unwrap();

    let federated_token = env.operator.federated_token().unwrap().to_string();
    let requests = fake.token_requests();
    assert!(
        requests.len() >= 2,
        "tokens were exchanged more than once: {}",
        requests.len()
    );
    assert!(
        requests
            .iter()
            .all(|r| r.client_assertion == federated_token),
        "the operator presented its token file"
    );
    let issued = fake.issued_tokens();
    let logs = env.operator.logs();
    assert!(logs.contains("ARM"), "debug logs were captured");
    assert!(
        !logs.contains(&federated_token),
        "the federated token file content is in the logs"
    );
    for token in &issued {
        assert!(
            !logs.contains(token.as_str()),
            "access token {token} is in the logs"
        );
    }
    let ti = tenants(&env.client, env.ns()).get("team-s").await.unwrap();
    let status = serde_json::to_string(&ti.status).unwrap();
    assert!(!status.contains(&federated_token));
    assert!(issued.iter().all(|t| !status.contains(t.as_str())));

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_token_file_is_read_again() {
    let mut env = TestEnv::start_with_arm("arm-rotate", &[]).await.unwrap();
    shared_tenant(&env, "team-o").await;
    wait_ready(&env, "team-o").await;
    let first = env.operator.federated_token().unwrap().to_string();
    {
        let fake = env.arm().unwrap();
        assert!(
            fake.token_requests()
                .iter()
                .all(|r| r.client_assertion == first && r.client_id == OPERATOR_CLIENT_ID)
        );
    }

    // kubelet rotates the projected token; Entra revokes the access token: the next exchange
    // must present the new file content.
    let rotated = env.operator.rotate_federated_token().unwrap();
    let fake = env.arm().unwrap();
    fake.revoke_tokens();
    request_reconcile(&env.client, env.ns(), "team-o", "rotated", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let last = fake.token_requests().last().cloned().unwrap();
    assert_eq!(
        last.client_assertion, rotated,
        "the token file was read again"
    );
    let ti = tenants(&env.client, env.ns()).get("team-o").await.unwrap();
    assert!(is_ready(&ti), "{}", condition_text(&ti, "Ready"));

    env.finish().await;
}
