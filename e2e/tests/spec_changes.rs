//! Spec changes remove exactly the children no longer wanted; deletion leaves nothing behind.

use std::collections::BTreeMap;

use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, GC_TIMEOUT, TestEnv, objects::*, poll_until, simulate, wait_for,
    wait_gone,
};

async fn patch_spec(env: &TestEnv, name: &str, spec: Value) {
    tenants(&env.client, env.ns())
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
}

/// uid of every child by kind/name.
async fn uids(env: &TestEnv, tenant: &str) -> BTreeMap<String, String> {
    children(&env.client, env.ns(), tenant)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (format!("{}/{}", c.kind, c.name), c.uid))
        .collect()
}

/// Wait until the children of `tenant` are exactly `expected` (kind/name).
async fn wait_children(
    env: &TestEnv,
    tenant: &str,
    expected: &[String],
) -> BTreeMap<String, String> {
    wait_children_for(env, tenant, expected, DEFAULT_TIMEOUT).await
}

/// [`wait_children`] with an explicit timeout ([`GC_TIMEOUT`] when only GC removes them).
async fn wait_children_for(
    env: &TestEnv,
    tenant: &str,
    expected: &[String],
    timeout: std::time::Duration,
) -> BTreeMap<String, String> {
    let mut expected = expected.to_vec();
    expected.sort();
    poll_until(
        &format!("children of {tenant} to be exactly {expected:?}"),
        timeout,
        || async {
            let now = uids(env, tenant).await;
            Ok(if now.keys().cloned().collect::<Vec<_>>() == expected {
                Check::Done(now)
            } else {
                Check::NotYet(format!("{:?}", now.keys().collect::<Vec<_>>()))
            })
        },
    )
    .await
    .unwrap()
}

fn fic_names(creds: &BTreeMap<String, kube::api::DynamicObject>) -> Vec<String> {
    creds
        .keys()
        .map(|k| format!("FederatedIdentityCredential/{k}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_subject_deletes_only_its_credential() {
    let env = TestEnv::start("spec-subject", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let sa = |name: &str| json!({"namespace": "default", "name": name});
    let mut spec = shared_spec(&tenant_identity_e2e::namespace::random_guid(), "vc");
    spec["virtualCluster"] = json!({
        "name": "vc", "mode": "PerServiceAccount",
        "serviceAccounts": [sa("app"), sa("worker"), sa("batch")],
    });
    create_tenant(&client, &ns, "team-p", spec).await.unwrap();
    simulate::converge(&client, &ns, "team-p", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let before = uids(&env, "team-p").await;
    let creds = credentials(&client, &ns, "team-p").await.unwrap();
    assert_eq!(creds.len(), 3);
    let worker = subject(&ns, "worker-x-default-x-vc");
    let (worker_fic, _) = creds
        .iter()
        .find(|(_, o)| o.data["spec"]["subject"] == json!(worker))
        .unwrap();
    let worker_key = format!("FederatedIdentityCredential/{worker_fic}");

    patch_spec(
        &env,
        "team-p",
        json!({"virtualCluster": {"serviceAccounts": [sa("app"), sa("batch")]}}),
    )
    .await;
    let expected: Vec<String> = before
        .keys()
        .filter(|k| **k != worker_key)
        .cloned()
        .collect();
    let after = wait_children(&env, "team-p", &expected).await;
    for (key, uid) in &after {
        assert_eq!(Some(uid), before.get(key), "{key} must not be recreated");
    }
    let ti = simulate::converge(&client, &ns, "team-p", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let subjects: Vec<String> = ti
        .status
        .unwrap()
        .subjects
        .into_iter()
        .map(|s| s.subject)
        .collect();
    assert!(!subjects.contains(&worker), "{subjects:?}");
    assert_eq!(subjects.len(), 2, "{subjects:?}");

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_git_deletes_the_flux_children() {
    let env = TestEnv::start("spec-git", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = tenant_identity_e2e::namespace::random_guid();
    create_tenant(
        &client,
        &ns,
        "team-g",
        with_git(shared_spec(&client_id, "vc-g"), true),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-g")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-g", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let before = uids(&env, "team-g").await;
    assert_eq!(before.len(), 6, "{before:?}");
    let creds = credentials(&client, &ns, "team-g").await.unwrap();
    let workload = subject(&ns, "vc-workload-vc-g");
    let (workload_fic, _) = creds
        .iter()
        .find(|(_, o)| o.data["spec"]["subject"] == json!(workload))
        .unwrap();

    patch_spec(&env, "team-g", json!({"git": null})).await;
    let expected = vec![
        format!("ConfigMap/{}", sync_rules_config_map("team-g")),
        format!("FederatedIdentityCredential/{workload_fic}"),
    ];
    let after = wait_children(&env, "team-g", &expected).await;
    for (key, uid) in &after {
        assert_eq!(Some(uid), before.get(key), "{key} must not be recreated");
    }
    // The values no longer point Flux at the vcluster.
    let cm = wait_for(
        &config_maps(&client, &ns),
        &sync_rules_config_map("team-g"),
        "values without exportKubeConfig",
        DEFAULT_TIMEOUT,
        |cm| {
            sync_rules_values(cm)
                .map(|v| v.get("exportKubeConfig").is_none())
                .unwrap_or(false)
        },
    )
    .await
    .unwrap();
    assert!(sync_rules_values(&cm).unwrap()["controlPlane"].is_object());
    let ti = simulate::converge(&client, &ns, "team-g", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(
        condition(&ti, "GitSourceReady").is_none_or(|c| c.status != "False"),
        "{:?}",
        ti.status
    );

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_mode_releases_the_host_service_account() {
    let env = TestEnv::start("spec-mode", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = tenant_identity_e2e::namespace::random_guid();
    create_tenant(&client, &ns, "team-m", shared_spec(&client_id, "vc-m"))
        .await
        .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-m")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-m", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let sas = service_accounts(&client, &ns);
    let host = sas.get("vc-workload-vc-m").await.unwrap();
    assert_eq!(
        host.annotations().get(CLIENT_ID_ANNOTATION),
        Some(&client_id)
    );
    let shared_fics = credentials(&client, &ns, "team-m").await.unwrap();

    patch_spec(
        &env,
        "team-m",
        json!({"virtualCluster": {
            "mode": "PerServiceAccount",
            "serviceAccounts": [{"namespace": "default", "name": "app"}],
        }}),
    )
    .await;

    // Our two annotations leave the host SA; Helm's metadata stays; the SA itself stays.
    let (helm_labels, helm_annotations) = simulate::helm_metadata("vc-m", &ns);
    let host = wait_for(
        &sas,
        "vc-workload-vc-m",
        "the workload identity annotations released",
        DEFAULT_TIMEOUT,
        |sa| !sa.annotations().contains_key(CLIENT_ID_ANNOTATION),
    )
    .await
    .unwrap();
    assert_eq!(host.annotations(), &helm_annotations);
    assert_eq!(host.labels(), &helm_labels);

    // The credential set is replaced.
    let expected = vec![subject(&ns, "app-x-default-x-vc-m")];
    let creds = poll_until(
        "the per-ServiceAccount credential only",
        DEFAULT_TIMEOUT,
        || async {
            let creds = credentials(&client, &ns, "team-m").await?;
            Ok(if credential_subjects(&creds) == expected {
                Check::Done(creds)
            } else {
                Check::NotYet(format!("{:?}", credential_subjects(&creds)))
            })
        },
    )
    .await
    .unwrap();
    for name in shared_fics.keys() {
        assert!(!creds.contains_key(name), "{name} should be gone");
    }
    let mut expected_children = fic_names(&creds);
    expected_children.push(format!("ConfigMap/{}", sync_rules_config_map("team-m")));
    wait_children(&env, "team-m", &expected_children).await;
    let ti = simulate::converge(&client, &ns, "team-m", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(
        ti.status.unwrap().host_service_accounts,
        vec!["app-x-default-x-vc-m"]
    );

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_tenant_leaves_nothing_behind() {
    let env = TestEnv::start("spec-delete", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let client_id = tenant_identity_e2e::namespace::random_guid();
    create_tenant(
        &client,
        &ns,
        "team-x",
        with_git(shared_spec(&client_id, "vc-x"), true),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-x")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-x", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(uids(&env, "team-x").await.len(), 6);

    let tis = tenants(&client, &ns);
    tis.delete("team-x", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&tis, "team-x", DEFAULT_TIMEOUT).await.unwrap();
    // Owned children go through the garbage collector: asynchronous on a real cluster.
    wait_children_for(&env, "team-x", &[], GC_TIMEOUT).await;

    let sas = service_accounts(&client, &ns);
    let host = sas.get("vc-workload-vc-x").await.unwrap();
    let (helm_labels, helm_annotations) = simulate::helm_metadata("vc-x", &ns);
    assert_eq!(
        host.annotations(),
        &helm_annotations,
        "the finalizer releases our annotations and nothing else"
    );
    assert_eq!(host.labels(), &helm_labels);

    env.finish().await;
}
