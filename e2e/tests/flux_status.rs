//! The GitRepository's health as Flux reports it is mirrored into the TenantIdentity.

use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv,
    namespace::random_guid,
    objects::{self, *},
    simulate, wait_for,
};

fn stalled(ti: &tenant_identity_crd::TenantIdentity) -> bool {
    condition(ti, "Stalled").is_some_and(|c| c.status == "True")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_feature_gate_disabled_stalls_the_tenant() {
    let env = TestEnv::start("flux-stalled", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-s",
        with_git(shared_spec(&random_guid(), "vc-s"), false),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-s")
        .await
        .unwrap();
    let repos = objects::dynamic(&client, &ns, &git_repository());
    wait_for(
        &repos,
        "team-s",
        "the GitRepository",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    simulate::aso_all_credentials_ready(&client, &ns, "team-s")
        .await
        .unwrap();

    let message =
        "workload identity at object level requires the feature gate ObjectLevelWorkloadIdentity";
    simulate::flux_git_stalled(&client, &ns, "team-s", "FeatureGateDisabled", message)
        .await
        .unwrap();
    let tis = tenants(&client, &ns);
    let ti = wait_for(
        &tis,
        "team-s",
        "Stalled=True reason=FeatureGateDisabled",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Stalled", "True", Some("FeatureGateDisabled")),
    )
    .await
    .unwrap();
    let ready = condition(&ti, "Ready").unwrap();
    assert_eq!(ready.status, "False", "{ready:?}");
    assert_eq!(ready.reason, "FeatureGateDisabled", "{ready:?}");
    assert!(ready.message.contains(message), "{ready:?}");
    assert!(
        has_condition(&ti, "GitSourceReady", "False", Some("FeatureGateDisabled")),
        "{:?}",
        ti.status
    );
    assert!(
        condition(&ti, "Reconciling").is_none_or(|c| c.status != "True"),
        "Reconciling and Stalled are never both True: {:?}",
        ti.status
    );
    assert_eq!(
        ti.status.as_ref().unwrap().observed_generation,
        ti.metadata.generation
    );

    // Once Flux recovers, so does the tenant.
    simulate::flux_git_ready(&client, &ns, "team-s")
        .await
        .unwrap();
    let ti = wait_for(&tis, "team-s", "Ready=True", DEFAULT_TIMEOUT, is_ready)
        .await
        .unwrap();
    assert!(!stalled(&ti), "{:?}", ti.status);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_authentication_failure_is_reported_with_fluxs_message() {
    let env = TestEnv::start("flux-auth", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-f",
        with_git(shared_spec(&random_guid(), "vc-f"), false),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-f")
        .await
        .unwrap();
    // Everything Ready first, then Flux starts failing to authenticate.
    simulate::converge(&client, &ns, "team-f", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    let message = "failed to checkout and determine revision: unable to clone 'https://dev.azure.com/contoso/platform/_git/tenants': authentication required: AADSTS700213: No matching federated identity record found";
    simulate::flux_git_auth_failed(&client, &ns, "team-f", message)
        .await
        .unwrap();
    let tis = tenants(&client, &ns);
    let ti = wait_for(
        &tis,
        "team-f",
        "Ready=False with GitSourceReady=False reason=AuthenticationFailed",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "GitSourceReady", "False", Some("AuthenticationFailed")),
    )
    .await
    .unwrap();
    let ready = condition(&ti, "Ready").unwrap();
    assert_eq!(ready.status, "False", "{ready:?}");
    assert!(
        ready.message.contains(message),
        "the Ready message carries Flux's: {ready:?}"
    );
    assert!(
        !stalled(&ti),
        "an auth failure is retried, not terminal: {:?}",
        ti.status
    );
    assert!(
        has_condition(&ti, "Reconciling", "True", None),
        "{:?}",
        ti.status
    );
    let git = condition(&ti, "GitSourceReady").unwrap();
    assert!(git.message.contains(message), "{git:?}");

    env.finish().await;
}
