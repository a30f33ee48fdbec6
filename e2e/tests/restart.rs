//! Restart: killing the operator mid-reconcile and starting it again creates no duplicates.

use std::collections::BTreeMap;

use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, Operator, TestEnv, namespace::random_guid, objects::*, poll_until,
    simulate,
};

const TENANTS: usize = 6;
/// ConfigMap, `<name>-git`, GitRepository, 2 per-SA credentials + the Flux credential.
const CHILDREN_PER_TENANT: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_reconcile_restarts_without_duplicates() {
    let mut env = TestEnv::start("restart", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let names: Vec<String> = (0..TENANTS).map(|i| format!("tenant-{i}")).collect();
    for name in &names {
        let mut spec = with_git(shared_spec(&random_guid(), name), false);
        spec["virtualCluster"] = serde_json::json!({
            "name": name, "mode": "PerServiceAccount",
            "serviceAccounts": [
                {"namespace": "default", "name": "app"},
                {"namespace": "jobs", "name": "runner"},
            ],
        });
        create_tenant(&client, &ns, name, spec).await.unwrap();
    }
    // Kill as soon as some, but not necessarily all, children exist.
    poll_until("the first children", DEFAULT_TIMEOUT, || async {
        let mut total = 0;
        for name in &names {
            total += children(&client, &ns, name).await?.len();
        }
        Ok(if total > 0 {
            Check::Done(total)
        } else {
            Check::NotYet("no children yet".into())
        })
    })
    .await
    .unwrap();
    env.operator.kill().await.unwrap();

    env.operator = Operator::start(&env.cluster, &[]).await.unwrap();
    for name in &names {
        simulate::converge(&client, &ns, name, DEFAULT_TIMEOUT)
            .await
            .unwrap();
    }
    let mut counts = BTreeMap::new();
    for name in &names {
        let found = children(&client, &ns, name).await.unwrap();
        let mut kinds: Vec<String> = kind_names(&found);
        kinds.dedup();
        assert_eq!(
            found.len(),
            CHILDREN_PER_TENANT,
            "{name}: {:?}",
            kind_names(&found)
        );
        assert_eq!(kinds.len(), found.len(), "{name}: duplicate names");
        counts.insert(name.clone(), found.len());
    }
    // Every credential name is unique across the namespace, one per subject.
    let all = tenant_identity_e2e::objects::dynamic(&client, &ns, &federated_credential())
        .list(&Default::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), TENANTS * 3, "{counts:?}");

    env.finish().await;
}
