//! Bad input: the API server rejects what the schema can judge; the operator refuses, with the
//! documented reason and without creating anything, what only it can judge.

use std::collections::BTreeMap;

use tenant_identity_e2e::{
    Check, Cluster, DEFAULT_TIMEOUT, TestEnv, cluster::workspace_root, manifests,
    namespace::random_guid, objects::*, poll_until, wait_for,
};

/// The field each invalid example must be rejected on (the path of the object a CEL rule sits
/// on when the rule names no field). A new file without an entry fails the test.
fn expected_fields() -> BTreeMap<&'static str, &'static str> {
    BTreeMap::from([
        ("bad-client-id.yaml", "spec.azure.clientId"),
        ("bad-interval.yaml", "spec.git.interval"),
        (
            "deploy-account-is-git-account.yaml",
            "spec.git.deploy.serviceAccountName",
        ),
        ("credentials-in-url.yaml", "spec.git.url"),
        (
            "dot-dot-resource-group.yaml",
            "spec.azure.identity.managedIdentity.resourceGroup",
        ),
        ("non-azure-devops-url-controller-level.yaml", "spec.git.url"),
        (
            "trailing-dot-resource-group.yaml",
            "spec.azure.identity.managedIdentity.resourceGroup",
        ),
        (
            "bad-namespace-name.yaml",
            "spec.virtualCluster.serviceAccounts[0].namespace",
        ),
        ("github-url-object-level.yaml", "spec.git.url"),
        ("http-issuer.yaml", "spec.azure.issuer"),
        ("no-backend.yaml", "spec.azure.identity"),
        (
            "per-sa-without-accounts.yaml",
            "spec.virtualCluster.serviceAccounts",
        ),
        (
            "shared-with-service-accounts.yaml",
            "spec.virtualCluster.serviceAccounts",
        ),
        (
            "too-many-subjects.yaml",
            "spec.virtualCluster.serviceAccounts",
        ),
        (
            "twenty-plus-flux.yaml",
            "spec.virtualCluster.serviceAccounts",
        ),
        ("two-backends.yaml", "spec.azure.identity"),
        ("two-git-refs.yaml", "spec.git.ref"),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_examples_are_rejected_by_the_api_server() {
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("invalid").await.unwrap();
    let client = cluster.client();
    let dir = workspace_root().join("examples/invalid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no examples in {}", dir.display());
    let expected = expected_fields();
    let mut failures = Vec::new();
    for file in &files {
        let file_name = file.file_name().unwrap().to_string_lossy().to_string();
        let Some(field) = expected.get(file_name.as_str()) else {
            failures.push(format!(
                "{file_name}: no expected field in this test; add one"
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for doc in manifests::documents(&text).unwrap() {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            match manifests::create(&client, doc, "kubectl", Some(ns.name()))
                .await
                .unwrap()
            {
                Ok(_) => failures.push(format!("{file_name}: accepted by the API server")),
                Err(kube::Error::Api(status)) => {
                    if status.code != 422 || status.reason != "Invalid" {
                        failures.push(format!(
                            "{file_name}: expected 422 Invalid, got {} {}: {}",
                            status.code, status.reason, status.message
                        ));
                    } else if !status.message.contains(&format!("{field}:")) {
                        failures.push(format!(
                            "{file_name}: message does not name {field}: {}",
                            status.message
                        ));
                    }
                }
                Err(e) => failures.push(format!("{file_name}: {e}")),
            }
            let exists = tenants(&client, ns.name()).get_opt(&name).await.unwrap();
            if exists.is_some() {
                failures.push(format!("{file_name}: {name} exists after rejection"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_id_claimed_by_another_namespace_is_refused() {
    // Namespace names sort "claim-a" before "claim-b": the tie-break when both objects were
    // created within the same second.
    let env = TestEnv::start("claim-a", &[]).await.unwrap();
    let client = env.client.clone();
    let other = env.cluster.namespace("claim-b").await.unwrap();
    let client_id = random_guid();

    create_tenant(&client, env.ns(), "first", shared_spec(&client_id, "vc-1"))
        .await
        .unwrap();
    wait_for(
        &config_maps(&client, env.ns()),
        &sync_rules_config_map("first"),
        "the first claimer's children",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();

    create_tenant(
        &client,
        other.name(),
        "second",
        shared_spec(&client_id, "vc-2"),
    )
    .await
    .unwrap();
    let ti = wait_for(
        &tenants(&client, other.name()),
        "second",
        "Ready=False reason=IdentityClaimConflict",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some("IdentityClaimConflict")),
    )
    .await
    .unwrap();
    let ready = condition(&ti, "Ready").unwrap();
    assert!(
        ready.message.contains(&format!("{}/first", env.ns())),
        "the message names the claim holder: {ready:?}"
    );
    assert!(has_condition(
        &ti,
        "Stalled",
        "True",
        Some("IdentityClaimConflict")
    ));
    assert_eq!(
        ti.status.as_ref().unwrap().observed_generation,
        ti.metadata.generation
    );
    let created = children(&client, other.name(), "second").await.unwrap();
    assert!(
        created.is_empty(),
        "nothing is created: {:?}",
        kind_names(&created)
    );
    // The first claimer is unaffected.
    assert!(
        !children(&client, env.ns(), "first")
            .await
            .unwrap()
            .is_empty()
    );

    other.cleanup().await;
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_namespace_grant_nothing_is_created() {
    let env = TestEnv::start("grant", &["--require-namespace-grant"])
        .await
        .unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = random_guid();
    create_tenant(&client, &ns, "team-g", shared_spec(&client_id, "vc-g"))
        .await
        .unwrap();
    let tis = tenants(&client, &ns);
    let ti = wait_for(
        &tis,
        "team-g",
        "Ready=False reason=IdentityNotGranted",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some("IdentityNotGranted")),
    )
    .await
    .unwrap();
    let ready = condition(&ti, "Ready").unwrap();
    assert!(ready.message.contains(GRANT_ANNOTATION), "{ready:?}");
    let created = children(&client, &ns, "team-g").await.unwrap();
    assert!(
        created.is_empty(),
        "nothing is created: {:?}",
        kind_names(&created)
    );

    // A grant for another identity is not enough (the namespace change triggers a reconcile).
    let reconciles = env.operator.successful_reconciles().await.unwrap();
    env.ns
        .annotate(GRANT_ANNOTATION, Some(&random_guid()))
        .await
        .unwrap();
    env.operator
        .wait_reconciles_above(reconciles, DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let ti = tis.get("team-g").await.unwrap();
    assert!(has_condition(
        &ti,
        "Ready",
        "False",
        Some("IdentityNotGranted")
    ));
    assert!(children(&client, &ns, "team-g").await.unwrap().is_empty());
    // The platform team grants the identity: the tenant proceeds.
    env.ns
        .annotate(
            GRANT_ANNOTATION,
            Some(&format!("{}, {client_id}", random_guid())),
        )
        .await
        .unwrap();
    poll_until("the granted tenant's children", DEFAULT_TIMEOUT, || async {
        let now = children(&client, &ns, "team-g").await?;
        Ok(if now.len() == 2 {
            Check::Done(())
        } else {
            Check::NotYet(format!("{:?}", kind_names(&now)))
        })
    })
    .await
    .unwrap();
    let ti = wait_for(
        &tis,
        "team-g",
        "a reason other than IdentityNotGranted",
        DEFAULT_TIMEOUT,
        |t| condition(t, "Ready").is_some_and(|c| c.reason != "IdentityNotGranted"),
    )
    .await
    .unwrap();
    assert!(
        condition(&ti, "Stalled").is_none_or(|c| c.status != "True"),
        "{:?}",
        ti.status
    );

    // Revoking the grant revokes what was created.
    env.ns.annotate(GRANT_ANNOTATION, None).await.unwrap();
    wait_for(
        &tis,
        "team-g",
        "IdentityNotGranted again",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "Ready", "False", Some("IdentityNotGranted")),
    )
    .await
    .unwrap();
    poll_until("children revoked", DEFAULT_TIMEOUT, || async {
        let now = children(&client, &ns, "team-g").await?;
        Ok(if now.is_empty() {
            Check::Done(())
        } else {
            Check::NotYet(format!("{:?}", kind_names(&now)))
        })
    })
    .await
    .unwrap();

    env.finish().await;
}
