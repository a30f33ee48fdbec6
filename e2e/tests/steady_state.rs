//! Steady state: once Ready, reconciles write nothing (no status patch, no child update).

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate, wait_for,
};

async fn versions(env: &TestEnv, tenant: &str, host_sa: &str) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = children(&env.client, env.ns(), tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (format!("{}/{}", c.kind, c.name), c.resource_version))
        .collect();
    let sa = service_accounts(&env.client, env.ns())
        .get(host_sa)
        .await
        .unwrap();
    out.insert(
        format!("ServiceAccount/{host_sa} (host)"),
        sa.resource_version().unwrap_or_default(),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_tenants_cause_no_writes() {
    let env = TestEnv::start("steady", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-q",
        with_git(shared_spec(&random_guid(), "vc-q"), true),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-q")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-q", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let tis = tenants(&client, &ns);

    // Flux-style "reconcile now": each request is handled, and the children stay untouched.
    let before = versions(&env, "team-q", "vc-workload-vc-q").await;
    for round in 1..=3 {
        let token = format!("steady-{round}");
        tis.patch(
            "team-q",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}})),
        )
        .await
        .unwrap();
        let ti = wait_for(
            &tis,
            "team-q",
            &format!("lastHandledReconcileAt={token}"),
            DEFAULT_TIMEOUT,
            |t| {
                t.status
                    .as_ref()
                    .and_then(|s| s.last_handled_reconcile_at.as_deref())
                    == Some(token.as_str())
            },
        )
        .await
        .unwrap();
        assert!(is_ready(&ti), "{:?}", ti.status);
    }
    assert_eq!(
        versions(&env, "team-q", "vc-workload-vc-q").await,
        before,
        "children were written in steady state"
    );

    // A reconcile triggered by an unrelated change elsewhere (another manager annotates the host
    // ServiceAccount) writes neither the TenantIdentity nor any child.
    let ti_version = tis.get("team-q").await.unwrap().resource_version();
    let reconciles = env.operator.successful_reconciles().await.unwrap();
    service_accounts(&client, &ns)
        .patch(
            "vc-workload-vc-q",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/audited": "yes"}}})),
        )
        .await
        .unwrap();
    let before = versions(&env, "team-q", "vc-workload-vc-q").await;
    env.operator
        .wait_reconciles_above(reconciles, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        versions(&env, "team-q", "vc-workload-vc-q").await,
        before,
        "a steady-state reconcile wrote to a child"
    );
    assert_eq!(
        tis.get("team-q").await.unwrap().resource_version(),
        ti_version,
        "a steady-state reconcile wrote the TenantIdentity"
    );

    // Nor does it read: everything a converged reconcile needs is in the watches' caches. The
    // operator's own count of its requests (every verb but WATCH) does not move.
    let requests = || async {
        let mut by_verb = std::collections::BTreeMap::new();
        for verb in ["GET", "LIST", "POST", "PUT", "PATCH", "APPLY", "DELETE"] {
            let sent = env
                .operator
                .metric_sum("tenant_identity_api_requests_total", &[("verb", verb)])
                .await
                .unwrap();
            by_verb.insert(verb, sent);
        }
        by_verb
    };
    let sent = requests().await;
    for round in 1..=3 {
        let reconciles = env.operator.successful_reconciles().await.unwrap();
        service_accounts(&client, &ns)
            .patch(
                "vc-workload-vc-q",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"example.com/audited": round.to_string()}}})),
            )
            .await
            .unwrap();
        env.operator
            .wait_reconciles_above(reconciles, DEFAULT_TIMEOUT)
            .await
            .unwrap();
    }
    assert_eq!(
        requests().await,
        sent,
        "three steady-state reconciles sent requests to the API server (by verb)"
    );

    env.finish().await;
}
