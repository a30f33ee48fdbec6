//! Two replicas with leader election: only the leader reconciles; the standby takes over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, ResourceExt};
use tenant_identity_e2e::{
    Cluster, DEFAULT_TIMEOUT, Operator, namespace::random_guid, objects::*, simulate, wait_for,
};

const LEASE: &str = "tenant-identity-operator";
/// Lease duration is 15 s: a takeover after a release is quick, after a crash it waits it out.
const TAKEOVER: Duration = Duration::from_secs(45);

fn args<'a>(ns: &'a str, identity: &'a str) -> Vec<&'a str> {
    vec![
        "--leader-elect",
        "--leader-election-namespace",
        ns,
        "--leader-election-identity",
        identity,
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_reconciles_and_the_standby_takes_over() {
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("leader").await.unwrap();
    let client = cluster.client();
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns.name());

    let mut a = Operator::start_named(&cluster, "a", &args(ns.name(), "a"))
        .await
        .unwrap();
    wait_for(&leases, LEASE, "a holds the lease", DEFAULT_TIMEOUT, |l| {
        l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("a")
    })
    .await
    .unwrap();
    let b = Operator::start_named(&cluster, "b", &args(ns.name(), "b"))
        .await
        .unwrap();

    create_tenant(
        &client,
        ns.name(),
        "one",
        shared_spec(&random_guid(), "vc-1"),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, ns.name(), "vc-1")
        .await
        .unwrap();
    simulate::converge(&client, ns.name(), "one", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    let a_count = a.successful_reconciles().await.unwrap();
    let b_count = b
        .metric_sum("tenant_identity_reconcile_total", &[])
        .await
        .unwrap();
    assert!(a_count > 0.0, "the leader reconciled");
    assert_eq!(
        b_count,
        0.0,
        "the standby must not reconcile; b logs:\n{}",
        b.logs()
    );

    // Every write to the children is by the operator's one field manager (status writes come
    // from the simulated ASO through the status subresource).
    for child in children(&client, ns.name(), "one").await.unwrap() {
        let resource = child_kinds()
            .into_iter()
            .find(|r| r.kind == child.kind)
            .unwrap();
        let obj = tenant_identity_e2e::objects::dynamic(&client, ns.name(), &resource)
            .get(&child.name)
            .await
            .unwrap();
        for entry in obj.managed_fields() {
            let manager = entry.manager.as_deref().unwrap_or_default();
            let is_status = entry.subresource.as_deref() == Some("status");
            assert!(
                manager == OPERATOR_MANAGER || (is_status && manager == simulate::ASO_MANAGER),
                "{}/{}: unexpected writer {manager:?} ({:?})",
                child.kind,
                child.name,
                entry.subresource
            );
        }
    }

    // The leader stops gracefully (releases the lease); b takes over and reconciles new work.
    a.stop().await.unwrap();
    wait_for(&leases, LEASE, "b holds the lease", TAKEOVER, |l| {
        l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some("b")
    })
    .await
    .unwrap();
    create_tenant(
        &client,
        ns.name(),
        "two",
        shared_spec(&random_guid(), "vc-2"),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, ns.name(), "vc-2")
        .await
        .unwrap();
    simulate::converge(&client, ns.name(), "two", TAKEOVER)
        .await
        .unwrap();
    assert!(b.successful_reconciles().await.unwrap() > 0.0);
    let lease = leases.get(LEASE).await.unwrap();
    assert_eq!(lease.name_any(), LEASE);

    ns.cleanup().await;
    drop(b);
    cluster.shutdown().await;
}
