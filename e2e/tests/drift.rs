//! Drift: the operator restores what it owns and leaves alone what others own.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, TestEnv,
    namespace::random_guid,
    objects::{self, *},
    poll_until, simulate, wait_for,
};

const FOREIGN: &str = "someone-else";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_children_are_recreated() {
    let env = TestEnv::start("drift-delete", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-d",
        with_git(shared_spec(&random_guid(), "vc-d"), true),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-d")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-d", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let before = children(&client, &ns, "team-d").await.unwrap();
    assert_eq!(before.len(), 6, "{:?}", kind_names(&before));

    // Delete every child at once; each comes back under the same name with a new uid.
    for child in &before {
        let resource = child_kinds()
            .into_iter()
            .find(|r| r.kind == child.kind)
            .unwrap();
        objects::dynamic(&client, &ns, &resource)
            .delete(&child.name, &DeleteParams::background())
            .await
            .unwrap();
    }
    let after = poll_until("every child recreated", DEFAULT_TIMEOUT, || async {
        let now = children(&client, &ns, "team-d").await?;
        let recreated = now.len() == before.len()
            && now
                .iter()
                .zip(&before)
                .all(|(n, b)| n.kind == b.kind && n.name == b.name && n.uid != b.uid);
        Ok(if recreated {
            Check::Done(now)
        } else {
            Check::NotYet(format!("{now:?}"))
        })
    })
    .await
    .unwrap();
    assert_eq!(kind_names(&after), kind_names(&before));

    // And the tenant converges again once ASO/Flux report on the new objects.
    simulate::converge(&client, &ns, "team-d", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_fields_are_reverted_foreign_fields_are_kept() {
    let env = TestEnv::start("drift-edit", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(
        &client,
        &ns,
        "team-e",
        with_git(shared_spec(&random_guid(), "vc-e"), false),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-e")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-e", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    let cms = config_maps(&client, &ns);
    let cm_name = sync_rules_config_map("team-e");
    let original: ConfigMap = cms.get(&cm_name).await.unwrap();
    let original_data = original.data.clone().unwrap();

    // Another manager adds its own label and annotation (server-side apply, no force needed:
    // the fields are not ours).
    cms.patch(
        &cm_name,
        &PatchParams::apply(FOREIGN),
        &Patch::Apply(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {
                "name": cm_name,
                "labels": {"cost-center.example.com/id": "42"},
                "annotations": {"example.com/reviewed-by": "platform"},
            },
        })),
    )
    .await
    .unwrap();

    // Someone edits a field the operator owns (kubectl edit = an update, not an apply).
    cms.patch(
        &cm_name,
        &PatchParams {
            field_manager: Some("kubectl-edit".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"values.yaml": "hacked: true\n"}})),
    )
    .await
    .unwrap();
    let cm = wait_for(
        &cms,
        &cm_name,
        "values.yaml restored",
        DEFAULT_TIMEOUT,
        |cm| cm.data.as_ref() == Some(&original_data),
    )
    .await
    .unwrap();
    assert_eq!(
        cm.labels()
            .get("cost-center.example.com/id")
            .map(String::as_str),
        Some("42"),
        "another manager's label is left alone: {:?}",
        cm.labels()
    );
    assert_eq!(
        cm.annotations()
            .get("example.com/reviewed-by")
            .map(String::as_str),
        Some("platform")
    );
    assert_eq!(
        cm.labels().get(TENANT_LABEL).map(String::as_str),
        Some("team-e")
    );

    // Another manager takes spec.url of the GitRepository by force: the operator takes it back.
    let repos = objects::dynamic(&client, &ns, &git_repository());
    repos
        .patch(
            "team-e",
            &PatchParams::apply(FOREIGN).force(),
            &Patch::Apply(json!({
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": {"name": "team-e"},
                "spec": {"url": "https://dev.azure.com/attacker/x/_git/y"},
            })),
        )
        .await
        .unwrap();
    let repo = wait_for(
        &repos,
        "team-e",
        "spec.url restored",
        DEFAULT_TIMEOUT,
        |r| r.data["spec"]["url"] == json!(GIT_URL),
    )
    .await
    .unwrap();
    assert_eq!(repo.data["spec"]["provider"], json!("azure"));

    // A later reconcile (Flux-style requested) still leaves the foreign fields alone.
    let tis = tenants(&client, &ns);
    tis.patch(
        "team-e",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: "drift-1"}}})),
    )
    .await
    .unwrap();
    wait_for(
        &tis,
        "team-e",
        "lastHandledReconcileAt=drift-1",
        DEFAULT_TIMEOUT,
        |t| {
            t.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some("drift-1")
        },
    )
    .await
    .unwrap();
    let cm = cms.get(&cm_name).await.unwrap();
    assert_eq!(
        cm.labels()
            .get("cost-center.example.com/id")
            .map(String::as_str),
        Some("42")
    );
    assert_eq!(cm.data.as_ref(), Some(&original_data));

    env.finish().await;
}
