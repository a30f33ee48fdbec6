//! kube-lease-manager leader election (server-side apply conflicts on a Lease) as the operator
//! uses it: one holder at a time, and a released lease is taken over.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use kube_lease_manager::LeaseManagerBuilder;

use crate::common::start;

async fn wait_leader(rx: &mut tokio::sync::watch::Receiver<bool>) {
    tokio::time::timeout(Duration::from_secs(15), rx.wait_for(|leader| *leader))
        .await
        .expect("became leader in time")
        .expect("manager running");
}

#[tokio::test]
async fn one_leader_then_takeover() {
    let (emu, client) = start().await;
    let build = |identity: &str| {
        LeaseManagerBuilder::new(client.clone(), "operator-leader")
            .with_namespace("default")
            .with_identity(identity)
            .with_duration(3)
            .with_grace(1)
            .build()
    };
    let a = build("replica-a").await.expect("manager a");
    let (mut rx_a, task_a) = a.watch().await;
    wait_leader(&mut rx_a).await;

    let b = build("replica-b").await.expect("manager b");
    let (mut rx_b, task_b) = b.watch().await;
    // While a renews, b must not become leader (bounded observation window).
    let stolen = tokio::time::timeout(Duration::from_secs(4), rx_b.wait_for(|leader| *leader))
        .await
        .is_ok();
    assert!(!stolen, "b took the lease while a held it");
    assert!(*rx_a.borrow());

    // a steps down (dropping its receiver releases the lease); b takes over.
    drop(rx_a);
    task_a.await.expect("join").expect("a released cleanly");
    wait_leader(&mut rx_b).await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease = leases.get("operator-leader").await.expect("lease");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("replica-b")
    );
    drop(rx_b);
    task_b.await.expect("join").expect("b released cleanly");
    emu.shutdown().await;
}
