//! `ArmBackend` against the in-process fake ARM + Entra token endpoint. Assertions are on the
//! fake's call counters and stored state, not on timing.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake_arm::{DUPLICATE_MESSAGE, FakeArm, Fault, IdentityRef, Operation, StoredCredential};
use tenant_identity_operator::azure::types::FederatedIdentityCredentialProperties;
use tenant_identity_operator::azure::{
    ArmBackend, ArmConfig, ArmError, AzureOperation, AzureRequestMetrics, CredentialChange,
    DesiredCredential, ManagedIdentity,
};

const ISSUER: &str = "https://oidc.prod-aks.azure.com/72f988bf/6b2c4f0e/";
const AUDIENCE: &str = "api://AzureADTokenExchange";

struct Env {
    fake: FakeArm,
    backend: ArmBackend,
    metrics: AzureRequestMetrics,
    token_file: PathBuf,
    identity: ManagedIdentity,
    _dir: tempfile::TempDir,
}

impl Env {
    async fn new() -> Env {
        let fake = FakeArm::start().await.expect("fake ARM starts");
        fake.create_identity("sub-1", "rg-tenants", "shared-identity");
        let dir = tempfile::tempdir().expect("tempdir");
        let token_file = dir.path().join("azure-identity-token");
        std::fs::write(&token_file, "projected-sa-token-1").expect("write token file");
        let metrics = AzureRequestMetrics::unregistered().expect("metrics");
        let backend = backend_for(&fake, &token_file, metrics.clone());
        Env {
            fake,
            backend,
            metrics,
            token_file,
            identity: ManagedIdentity::new("sub-1", "rg-tenants", "shared-identity"),
            _dir: dir,
        }
    }

    fn fake_identity(&self) -> IdentityRef {
        IdentityRef::new("sub-1", "rg-tenants", "shared-identity")
    }

    fn stored(&self) -> Vec<StoredCredential> {
        self.fake
            .credentials(&self.fake_identity())
            .expect("identity exists")
    }

    fn seed_foreign(&self, name: &str, subject: &str) {
        self.fake
            .seed_credential(
                &self.fake_identity(),
                StoredCredential::new(name, ISSUER, subject, AUDIENCE),
            )
            .expect("seed foreign credential");
    }
}

fn backend_for(
    fake: &FakeArm,
    token_file: &std::path::Path,
    metrics: AzureRequestMetrics,
) -> ArmBackend {
    // The operator's own identity: a trusted caller of the fake Entra, whose assertion (a file
    // of this test, not a real service-account token) is accepted unread.
    fake.trust_client("operator-client-id");
    let mut config = ArmConfig::new("operator-client-id", "operator-tenant", token_file);
    config.arm_endpoint = fake.url();
    config.authority_host = format!("{}/", fake.url());
    ArmBackend::new(config, metrics).expect("backend")
}

fn desired(name: &str, subject: &str) -> DesiredCredential {
    DesiredCredential {
        name: name.to_string(),
        issuer: ISSUER.to_string(),
        subject: subject.to_string(),
        audience: AUDIENCE.to_string(),
    }
}

fn sa(name: &str) -> String {
    format!("system:serviceaccount:vcluster-team-a:{name}")
}

#[tokio::test]
async fn creates_then_a_steady_state_makes_no_writes() {
    let env = Env::new().await;
    let want = vec![
        desired("team-a-workload", &sa("vc-workload-team-a")),
        desired("team-a-git", &sa("team-a-git")),
    ];
    let report = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    assert_eq!(report.writes, 2);
    assert_eq!(
        report.credentials,
        vec![
            ("team-a-workload".to_string(), CredentialChange::Created),
            ("team-a-git".to_string(), CredentialChange::Created)
        ]
    );
    assert_eq!(report.total, 2);
    let stored = env.stored();
    assert_eq!(stored.len(), 2);
    assert!(stored.contains(&StoredCredential::new(
        "team-a-git",
        ISSUER,
        sa("team-a-git"),
        AUDIENCE
    )));

    env.fake.reset_calls();
    for _ in 0..3 {
        let report = env
            .backend
            .sync(&env.identity, &want, &[])
            .await
            .expect("sync");
        assert_eq!(report.writes, 0);
        assert!(
            report
                .credentials
                .iter()
                .all(|(_, s)| *s == CredentialChange::Unchanged)
        );
    }
    let calls = env.fake.calls();
    assert_eq!(calls.writes(), 0, "steady state must not write: {calls:?}");
    assert_eq!(calls.list, 3, "one list per sync");
    assert_eq!(calls.get, 0);
    assert_eq!(env.metrics.count(AzureOperation::Put, "201"), 2);
    assert_eq!(env.metrics.count(AzureOperation::List, "200"), 4);
}

#[tokio::test]
async fn issuer_or_subject_changes_are_updated_in_place() {
    let env = Env::new().await;
    let mut want = vec![desired("team-a-workload", &sa("vc-workload-team-a"))];
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");

    // Issuers are compared byte for byte: dropping the trailing slash is a change.
    want[0].issuer = ISSUER.trim_end_matches('/').to_string();
    let report = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    assert_eq!(report.writes, 1);
    assert_eq!(report.credentials[0].1, CredentialChange::Updated);
    assert_eq!(env.stored()[0].issuer, ISSUER.trim_end_matches('/'));

    // Subjects are case-sensitive.
    want[0].subject = sa("VC-workload-team-a");
    let report = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    assert_eq!(report.credentials[0].1, CredentialChange::Updated);
    assert_eq!(env.stored()[0].subject, sa("VC-workload-team-a"));
    assert_eq!(env.stored().len(), 1);
    assert_eq!(env.fake.calls().put, 3);
}

#[tokio::test]
async fn limit_counts_foreign_credentials_and_fails_before_any_write() {
    let env = Env::new().await;
    for i in 0..18 {
        env.seed_foreign(&format!("other-team-{i:02}"), &sa(&format!("other-{i}")));
    }
    let want: Vec<_> = (0..3)
        .map(|i| desired(&format!("team-a-{i}"), &sa(&format!("a-{i}"))))
        .collect();
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("over the limit");
    assert_eq!(
        err,
        ArmError::CredentialLimitExceeded {
            count: 21,
            limit: 20
        }
    );
    assert!(err.is_terminal());
    assert_eq!(err.reason(), "CredentialLimitExceeded");
    assert_eq!(env.fake.calls().writes(), 0, "nothing partial");
    assert_eq!(env.stored().len(), 18);

    // Exactly at the limit is fine; deleting owned stale credentials makes room.
    let report = env
        .backend
        .sync(&env.identity, &want[..2], &[])
        .await
        .expect("20 is allowed");
    assert_eq!(report.total, 20);
    let replacement = vec![
        desired("team-a-new-0", &sa("new-0")),
        desired("team-a-new-1", &sa("new-1")),
    ];
    let stale = vec!["team-a-0".to_string(), "team-a-1".to_string()];
    let report = env
        .backend
        .sync(&env.identity, &replacement, &stale)
        .await
        .expect("stale deletions make room");
    assert_eq!(report.deleted, stale);
    assert_eq!(report.total, 20);
    assert_eq!(env.stored().len(), 20);
}

#[tokio::test]
async fn a_foreign_credential_with_our_subject_is_reported_and_left_alone() {
    let env = Env::new().await;
    env.seed_foreign("hand-made-by-ops", &sa("vc-workload-team-a"));
    let want = vec![
        desired("team-a-git", &sa("team-a-git")),
        desired("team-a-workload", &sa("vc-workload-team-a")),
    ];
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("duplicate");
    match &err {
        ArmError::DuplicateSubject {
            subject, existing, ..
        } => {
            assert_eq!(subject, &sa("vc-workload-team-a"));
            assert_eq!(existing.as_deref(), Some("hand-made-by-ops"));
        }
        other => panic!("expected DuplicateSubject, got {other:?}"),
    }
    assert!(err.is_terminal());
    assert!(err.to_string().contains("hand-made-by-ops"));
    assert_eq!(env.fake.calls().writes(), 0);
    assert_eq!(
        env.stored(),
        vec![StoredCredential::new(
            "hand-made-by-ops",
            ISSUER,
            sa("vc-workload-team-a"),
            AUDIENCE
        )]
    );
    // Even if it is passed as "stale", a name we do not own is only deleted if we list it:
    // the backend trusts owned_stale, so the controller must only pass names it created.
}

#[tokio::test]
async fn duplicate_reported_by_arm_is_classified() {
    // ARM can report the duplicate itself when another writer raced our list.
    let env = Env::new().await;
    env.fake
        .inject_fault(Fault::new(Operation::Put, 400).error("BadRequest", DUPLICATE_MESSAGE));
    let err = env
        .backend
        .sync(
            &env.identity,
            &[desired("team-a-git", &sa("team-a-git"))],
            &[],
        )
        .await
        .expect_err("duplicate from ARM");
    assert_eq!(err.reason(), "DuplicateSubject");
    assert!(
        matches!(&err, ArmError::DuplicateSubject { subject, existing: None, .. } if *subject == sa("team-a-git"))
    );
}

#[tokio::test]
async fn only_owned_stale_credentials_are_deleted() {
    let env = Env::new().await;
    env.seed_foreign("someone-else", &sa("someone"));
    let all = vec![
        desired("team-a-one", &sa("one")),
        desired("team-a-two", &sa("two")),
    ];
    env.backend
        .sync(&env.identity, &all, &[])
        .await
        .expect("sync");
    env.fake.reset_calls();

    let stale = vec!["team-a-two".to_string(), "team-a-never-existed".to_string()];
    let report = env
        .backend
        .sync(&env.identity, &all[..1], &stale)
        .await
        .expect("sync");
    assert_eq!(report.deleted, vec!["team-a-two".to_string()]);
    assert_eq!(report.writes, 1);
    let calls = env.fake.calls();
    assert_eq!(
        (calls.delete, calls.put),
        (1, 0),
        "absent stale names cost no call"
    );
    let mut names: Vec<String> = env.stored().into_iter().map(|c| c.name).collect();
    names.sort();
    assert_eq!(names, vec!["someone-else", "team-a-one"]);

    // A name both desired and listed as stale is kept (desired wins).
    let report = env
        .backend
        .sync(&env.identity, &all[..1], &["TEAM-A-ONE".to_string()])
        .await
        .expect("sync");
    assert_eq!(report.writes, 0);
    assert!(env.stored().iter().any(|c| c.name == "team-a-one"));
}

#[tokio::test]
async fn delete_removes_owned_names_and_tolerates_absence() {
    let env = Env::new().await;
    env.seed_foreign("someone-else", &sa("someone"));
    let all = vec![
        desired("team-a-one", &sa("one")),
        desired("team-a-two", &sa("two")),
    ];
    env.backend
        .sync(&env.identity, &all, &[])
        .await
        .expect("sync");
    env.fake.reset_calls();
    let names = vec![
        "team-a-one".to_string(),
        "Team-A-Two".to_string(),
        "team-a-gone".to_string(),
    ];
    env.backend
        .delete(&env.identity, &names)
        .await
        .expect("delete");
    assert_eq!(env.fake.calls().delete, 2);
    assert_eq!(env.stored().len(), 1, "the foreign credential stays");
    // Again: nothing left to delete, no write.
    env.backend
        .delete(&env.identity, &names)
        .await
        .expect("delete again");
    assert_eq!(env.fake.calls().delete, 2);
    // Identity deleted in Azure: the finalizer still completes.
    env.fake.delete_identity(&env.fake_identity());
    env.backend
        .delete(&env.identity, &names)
        .await
        .expect("identity gone is success");
}

#[tokio::test]
async fn missing_identity_is_identity_not_found() {
    let env = Env::new().await;
    let missing = ManagedIdentity::new("sub-1", "rg-tenants", "not-created");
    let err = env
        .backend
        .sync(&missing, &[desired("team-a-git", &sa("git"))], &[])
        .await
        .expect_err("no identity");
    assert_eq!(err.reason(), "IdentityNotFound");
    assert!(
        !err.is_terminal(),
        "the identity may still be being created"
    );
    assert!(err.to_string().contains("not-created"));
}

#[tokio::test]
async fn concurrent_syncs_on_one_identity_are_serialized() {
    let env = Env::new().await;
    // Each accepted write keeps the identity busy; an overlapping write would get 409.
    env.fake.set_busy_window(Duration::from_millis(100));
    let tenants: Vec<Vec<DesiredCredential>> = (0..4)
        .map(|i| {
            vec![desired(
                &format!("tenant-{i}-workload"),
                &sa(&format!("vc-workload-{i}")),
            )]
        })
        .collect();
    // Other clones and another-cased identity ref must share the same lock.
    let upper = ManagedIdentity::new("SUB-1", "RG-TENANTS", "Shared-Identity");
    let results = futures::future::join_all(tenants.iter().enumerate().map(|(i, want)| {
        let backend = env.backend.clone();
        let identity = if i % 2 == 0 {
            env.identity.clone()
        } else {
            upper.clone()
        };
        async move { backend.sync(&identity, want, &[]).await }
    }))
    .await;
    for r in &results {
        assert!(r.is_ok(), "{r:?}");
    }
    let calls = env.fake.calls();
    assert_eq!(
        calls.conflicts, 0,
        "the per-identity lock prevents 409s: {calls:?}"
    );
    assert_eq!(calls.put, 4);
    assert_eq!(env.stored().len(), 4);
}

#[tokio::test]
async fn without_the_lock_arm_answers_409_and_it_maps_to_concurrent_write() {
    let env = Env::new().await;
    env.fake.set_busy_window(Duration::from_millis(750));
    let client = env.backend.client();
    // Warm the token cache so both PUTs leave at once.
    client.list(&env.identity).await.expect("list");
    let props = |s: &str| FederatedIdentityCredentialProperties {
        issuer: ISSUER.to_string(),
        subject: sa(s),
        audiences: vec![AUDIENCE.to_string()],
    };
    let (one, two) = (props("one"), props("two"));
    let (a, b) = tokio::join!(
        client.put(&env.identity, "raw-one", &one),
        client.put(&env.identity, "raw-two", &two),
    );
    let errors: Vec<ArmError> = [a, b].into_iter().filter_map(Result::err).collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one of two overlapping raw PUTs is refused"
    );
    assert_eq!(errors[0].reason(), "ConcurrentWrite");
    assert!(!errors[0].is_terminal());
    assert!(errors[0].retry_after().is_some(), "409 is retried soon");
    assert_eq!(env.fake.calls().conflicts, 1);
}

#[tokio::test]
async fn throttling_honours_retry_after() {
    let env = Env::new().await;
    env.fake
        .inject_fault(Fault::new(Operation::List, 429).retry_after("1"));
    let want = [desired("team-a-git", &sa("git"))];
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("throttled");
    assert!(
        matches!(err, ArmError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(1))
    );
    assert!(!err.is_terminal());

    // Any reconcile during the wait ARM asked for gets the same answer without calling ARM.
    let lists = env.fake.calls().list;
    let again = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("still waiting");
    assert_eq!(again.reason(), "Throttled");
    let remaining = again.retry_after().expect("remaining wait");
    assert!(remaining <= Duration::from_secs(1), "{remaining:?}");
    assert_eq!(
        env.fake.calls().list,
        lists,
        "no ARM call while holding off"
    );
    assert!(
        env.backend
            .delete(&env.identity, &["x".to_string()])
            .await
            .is_err()
    );
    assert_eq!(env.fake.calls().list, lists, "deletes wait too");

    // Once the wait is over the sync goes through (waiting exactly as long as ARM asked).
    let mut attempts = 0;
    loop {
        match env.backend.sync(&env.identity, &want, &[]).await {
            Ok(_) => break,
            Err(e) => {
                attempts += 1;
                assert!(attempts < 5, "never recovered: {e}");
                tokio::time::sleep(e.retry_after().expect("throttled says how long")).await;
            }
        }
    }
    assert_eq!(env.metrics.count(AzureOperation::List, "429"), 1);
}

#[tokio::test]
async fn retry_after_as_an_http_date() {
    let env = Env::new().await;
    let want = [desired("team-a-git", &sa("git"))];
    let when = chrono::Utc::now() + chrono::TimeDelta::seconds(120);
    env.fake.inject_fault(
        Fault::new(Operation::Put, 429)
            .retry_after(when.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
    );
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("throttled");
    let after = err.retry_after().expect("retry-after from HTTP date");
    assert!(
        after > Duration::from_secs(100) && after <= Duration::from_secs(120),
        "{after:?}"
    );
    assert_eq!(env.metrics.count(AzureOperation::Put, "429"), 1);
}

#[tokio::test]
async fn server_errors_and_authorization_failures_are_retryable_reasons() {
    let env = Env::new().await;
    let want = [desired("team-a-git", &sa("git"))];
    let cases = [
        (Fault::new(Operation::Put, 503).retry_after("4"), "ArmUnavailable", Some(Duration::from_secs(4))),
        (Fault::new(Operation::List, 500), "ArmUnavailable", None),
        (Fault::new(Operation::Put, 403), "AuthorizationFailed", None),
        (
            Fault::new(Operation::Put, 405).error(
                "MethodNotAllowed",
                "The request format was unexpected: Support for federated identity credentials not enabled.",
            ),
            "InvalidRequest",
            None,
        ),
        // Last: a 409 makes the backend hold off this identity for the retry delay.
        (Fault::new(Operation::Put, 409), "ConcurrentWrite", Some(Duration::from_secs(2))),
    ];
    for (fault, reason, after) in cases {
        env.fake.inject_fault(fault);
        let err = env
            .backend
            .sync(&env.identity, &want, &[])
            .await
            .expect_err("fault");
        assert_eq!(err.reason(), reason, "{err}");
        assert_eq!(err.is_terminal(), reason == "InvalidRequest", "{reason}");
        assert_eq!(err.retry_after(), after, "{reason}");
    }
    assert!(env.stored().is_empty());
}

#[tokio::test]
async fn the_token_is_cached_and_shared() {
    let env = Env::new().await;
    let want = [desired("team-a-git", &sa("git"))];
    for _ in 0..5 {
        env.backend
            .sync(&env.identity, &want, &[])
            .await
            .expect("sync");
    }
    assert_eq!(env.fake.calls().token, 1, "one exchange for many requests");
    assert_eq!(env.metrics.count(AzureOperation::Token, "200"), 1);
    let requests = env.fake.token_requests();
    assert_eq!(requests[0].client_id, "operator-client-id");
    assert_eq!(requests[0].tenant, "operator-tenant");
    assert_eq!(requests[0].scope, format!("{}/.default", env.fake.url()));
    assert_eq!(requests[0].client_assertion, "projected-sa-token-1");

    // Concurrent first callers of a cold backend share one exchange.
    let cold = backend_for(
        &env.fake,
        &env.token_file,
        AzureRequestMetrics::unregistered().expect("m"),
    );
    let lists = futures::future::join_all((0..8).map(|_| cold.client().list(&env.identity))).await;
    assert!(lists.iter().all(Result::is_ok));
    assert_eq!(env.fake.calls().token, 2);
}

#[tokio::test]
async fn the_token_file_is_reread_on_every_refresh() {
    let env = Env::new().await;
    // Tokens that expire at once force a refresh on every request.
    env.fake.set_token_expires_in(0);
    let want = [desired("team-a-git", &sa("git"))];
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    std::fs::write(&env.token_file, "projected-sa-token-2\n").expect("rotate");
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    let assertions: Vec<String> = env
        .fake
        .token_requests()
        .into_iter()
        .map(|r| r.client_assertion)
        .collect();
    assert_eq!(
        assertions.first().map(String::as_str),
        Some("projected-sa-token-1")
    );
    assert_eq!(
        assertions.last().map(String::as_str),
        Some("projected-sa-token-2"),
        "rotated file is used (trimmed)"
    );
    assert!(assertions.len() >= 2);
}

#[tokio::test]
async fn a_revoked_token_is_exchanged_again_once() {
    let env = Env::new().await;
    let want = [desired("team-a-git", &sa("git"))];
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    env.fake.revoke_tokens();
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("401 then fresh token");
    assert_eq!(env.fake.calls().token, 2);
    assert_eq!(env.metrics.count(AzureOperation::List, "401"), 1);
}

#[tokio::test]
async fn token_exchange_failures_are_reported_without_secrets() {
    let env = Env::new().await;
    env.fake
        .inject_fault(Fault::new(Operation::Token, 400).error(
        "invalid_client",
        "AADSTS700213: No matching federated identity record found for presented assertion subject",
    ));
    let want = [desired("team-a-git", &sa("git"))];
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("token fails");
    assert_eq!(err.reason(), "TokenExchangeFailed");
    assert!(!err.is_terminal());
    let text = err.to_string();
    assert!(text.contains("AADSTS700213"), "{text}");
    assert!(!text.contains("projected-sa-token-1"), "{text}");
    assert_eq!(env.metrics.count(AzureOperation::Token, "400"), 1);
    assert_eq!(env.fake.calls().list, 0, "no ARM call without a token");

    std::fs::remove_file(&env.token_file).expect("remove");
    let err = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect_err("no file");
    assert_eq!(err.reason(), "TokenExchangeFailed");
    assert!(err.to_string().contains("azure-identity-token"));
}

#[tokio::test]
async fn lists_are_followed_across_pages() {
    let env = Env::new().await;
    env.fake.set_page_size(Some(5));
    for i in 0..12 {
        env.seed_foreign(&format!("other-{i:02}"), &sa(&format!("other-{i}")));
    }
    let want: Vec<_> = (0..3)
        .map(|i| desired(&format!("team-a-{i}"), &sa(&format!("a-{i}"))))
        .collect();
    let report = env
        .backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    assert_eq!(report.total, 15);
    assert_eq!(env.fake.calls().list, 3, "12 credentials in pages of 5");
    // The foreign credential on the last page still counts and is still detected.
    env.fake.reset_calls();
    let too_many: Vec<_> = (0..9)
        .map(|i| desired(&format!("team-a-{i}"), &sa(&format!("a-{i}"))))
        .collect();
    let err = env
        .backend
        .sync(&env.identity, &too_many, &[])
        .await
        .expect_err("limit");
    assert_eq!(
        err,
        ArmError::CredentialLimitExceeded {
            count: 21,
            limit: 20
        }
    );
    assert_eq!(
        env.fake.calls().list,
        3,
        "15 credentials in three full pages of 5"
    );
    assert_eq!(env.fake.calls().writes(), 0);
    let err = env
        .backend
        .sync(&env.identity, &[desired("team-a-x", &sa("other-11"))], &[])
        .await
        .expect_err("duplicate on the last page");
    assert!(
        matches!(err, ArmError::DuplicateSubject { existing: Some(ref n), .. } if n == "other-11")
    );
}

#[tokio::test]
async fn get_distinguishes_a_missing_credential_from_a_missing_identity() {
    let env = Env::new().await;
    let client = env.backend.client();
    assert_eq!(
        client.get(&env.identity, "team-a-git").await.expect("get"),
        None
    );
    env.backend
        .sync(&env.identity, &[desired("team-a-git", &sa("git"))], &[])
        .await
        .expect("sync");
    let got = client
        .get(&env.identity, "TEAM-A-GIT")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(got.properties.subject, sa("git"));
    assert_eq!(
        got.type_.as_deref(),
        Some("Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials")
    );
    let missing = ManagedIdentity::new("sub-1", "rg-tenants", "nope");
    let err = client
        .get(&missing, "team-a-git")
        .await
        .expect_err("identity missing");
    assert_eq!(err.reason(), "IdentityNotFound");
}

/// A `MakeWriter` collecting every formatted log line.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("capture lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_a_debug_string() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let env = Env::new().await;
    env.fake.set_token_expires_in(0);
    let want = [desired("team-a-git", &sa("git"))];
    env.backend
        .sync(&env.identity, &want, &[])
        .await
        .expect("sync");
    env.fake.revoke_tokens();
    env.backend
        .sync(&env.identity, &want, &["team-a-old".to_string()])
        .await
        .expect("sync");
    env.fake.inject_fault(Fault::new(Operation::Put, 403));
    let err = env
        .backend
        .sync(&env.identity, &[desired("team-a-new", &sa("new"))], &[])
        .await
        .expect_err("403");

    let logs = String::from_utf8(capture.0.lock().expect("lock").clone()).expect("utf8");
    assert!(
        logs.contains("writing federated identity credential"),
        "logging is on: {logs}"
    );
    let tokens = env.fake.issued_tokens();
    assert!(tokens.len() >= 2);
    let debug = format!(
        "{:?} {:?} {err:?} {err}",
        env.backend,
        env.backend.client().credential()
    );
    for secret in tokens
        .iter()
        .map(String::as_str)
        .chain(["projected-sa-token-1"])
    {
        assert!(!logs.contains(secret), "secret in logs");
        assert!(!debug.contains(secret), "secret in Debug/Display: {debug}");
    }
}
