//! Status for every object: a TenantIdentity created with `suspend: true` says so in a status
//! (kstatus tools see it as current, not in progress forever), creates nothing, and one
//! suspended later keeps the status it had.

use kube::api::{Patch, PatchParams};
use serde_json::json;
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate, wait_for,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_from_the_start_gets_a_status_and_nothing_else() {
    let env = TestEnv::start("suspended", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let mut spec = shared_spec(&random_guid(), "team-a");
    spec["suspend"] = json!(true);
    create_tenant(&client, &ns, "team-a", spec).await.unwrap();

    let ti = wait_for(
        &tenants(&client, &ns),
        "team-a",
        "a status saying it is suspended",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some("Suspended")),
    )
    .await
    .unwrap();
    let status = ti.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, ti.metadata.generation);
    assert!(condition(&ti, "Reconciling").is_none() && condition(&ti, "Stalled").is_none());
    assert!(
        children(&client, &ns, "team-a").await.unwrap().is_empty(),
        "a suspended tenant gets nothing"
    );

    // Resumed, it converges; suspended again, it keeps that status.
    tenants(&client, &ns)
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": false}})),
        )
        .await
        .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "team-a")
        .await
        .unwrap();
    let ready = simulate::converge(&client, &ns, "team-a", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let before = env.operator.successful_reconciles().await.unwrap();
    tenants(&client, &ns)
        .patch(
            "team-a",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    let seen = env
        .operator
        .wait_reconciles_above(before, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    // Something that would change the status of a tenant being reconciled: its vcluster's
    // workload ServiceAccount goes away (VirtualClusterNotFound).
    service_accounts(&client, &ns)
        .delete("vc-workload-team-a", &Default::default())
        .await
        .unwrap();
    env.operator
        .wait_reconciles_above(seen, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let later = tenants(&client, &ns).get("team-a").await.unwrap();
    assert!(later.metadata.generation > ready.metadata.generation);
    assert_eq!(
        later.status, ready.status,
        "the status of an object suspended later stays as it was"
    );
    env.finish().await;
}
