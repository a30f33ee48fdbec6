//! Issue 11, items 3 and 4: the vcluster really carries the rules. When the vcluster's Flux
//! HelmRelease exists, `HostSyncReady` is True only when its `valuesFrom` takes the sync rules
//! ConfigMap, its inline values do not override them, its chart is 0.21 or later in
//! single-namespace mode, and it is Ready for its generation; without one the operator says it
//! cannot check and what to verify by hand. The ConfigMap carries `reconcile.fluxcd.io/watch:
//! Enabled`, the label helm-controller selects the `valuesFrom` sources it watches by.
//!
//! helm-controller is played (`simulate::helm_release_*`), with the HelmRelease CRD pinned from
//! Flux installed. The operator learns about each change through its HelmRelease watch: a Ready
//! tenant is otherwise only looked at again after ten minutes. Before this change `HostSyncReady`
//! was True as soon as the ConfigMap existed, whatever the release said, and the ConfigMap had no
//! watch label: the first HelmRelease step and the label assertions fail there.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
};
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate, wait_for,
};

const ENTRY: &str = "{kind: ConfigMap, name: team-r-vcluster-identity, valuesKey: values.yaml}";

/// Wait until `HostSyncReady` has `status` and `reason`; returns the TenantIdentity.
async fn host_sync(tis: &Api<TenantIdentity>, status: &str, reason: &str) -> TenantIdentity {
    wait_for(
        tis,
        "team-r",
        &format!("HostSyncReady={status} reason={reason}"),
        DEFAULT_TIMEOUT,
        |t| {
            has_condition(t, "HostSyncReady", status, Some(reason))
                && t.status.as_ref().and_then(|s| s.observed_generation) == t.metadata.generation
        },
    )
    .await
    .unwrap()
}

fn message(ti: &TenantIdentity, type_: &str) -> String {
    condition(ti, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default()
}

/// Ready has the HostSyncReady reason, and Reconciling or Stalled says who moves it forward.
fn blocked_by(ti: &TenantIdentity, reason: &str, terminal: bool) {
    assert!(
        has_condition(ti, "Ready", "False", Some(reason)),
        "{:?}",
        ti.status
    );
    let (yes, no) = if terminal {
        ("Stalled", "Reconciling")
    } else {
        ("Reconciling", "Stalled")
    };
    assert!(
        has_condition(ti, yes, "True", Some(reason)),
        "{yes}: {:?}",
        ti.status
    );
    assert!(condition(ti, no).is_none(), "never both: {:?}", ti.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_sync_follows_the_vcluster_helm_release() {
    let env = TestEnv::start("vcluster-release", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let tis = tenants(&client, &ns);
    simulate::helm_workload_service_account(&client, &ns, "vc-r")
        .await
        .unwrap();
    create_tenant(&client, &ns, "team-r", shared_spec(&random_guid(), "vc-r"))
        .await
        .unwrap();

    // No HelmRelease (installed with helm, Argo CD, ...): the operator cannot check; it says so
    // and what to verify by hand, and does not hold the tenant back.
    let ti = simulate::converge(&client, &ns, "team-r", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(
        has_condition(&ti, "HostSyncReady", "True", Some("SyncRulesUnverified")),
        "{:?}",
        ti.status
    );
    let text = message(&ti, "HostSyncReady");
    for part in [
        format!("no Flux HelmRelease {ns}/vc-r"),
        format!("helm get values vc-r -n {ns}"),
        "ConfigMap team-r-vcluster-identity key values.yaml".to_string(),
        "0.21 or later".to_string(),
    ] {
        assert!(text.contains(&part), "{part:?} in {text}");
    }

    // A HelmRelease that does not take the ConfigMap: the exact entry to add; only a person can
    // fix it.
    simulate::apply_vcluster_release(&client, &ns, "vc-r", vec![], Value::Null)
        .await
        .unwrap();
    simulate::helm_release_ready(&client, &ns, "vc-r", "0.24.1")
        .await
        .unwrap();
    let ti = host_sync(&tis, "False", "SyncRulesNotReferenced").await;
    assert!(
        message(&ti, "HostSyncReady").contains(ENTRY),
        "{}",
        message(&ti, "HostSyncReady")
    );
    blocked_by(&ti, "SyncRulesNotReferenced", true);

    // The entry is added: a new generation Flux has not rolled out yet.
    let hr = simulate::apply_vcluster_release(
        &client,
        &ns,
        "vc-r",
        vec![simulate::sync_rules_values_from("team-r")],
        Value::Null,
    )
    .await
    .unwrap();
    let generation = hr.metadata.generation.unwrap();
    let ti = host_sync(&tis, "False", "VirtualClusterUpgrading").await;
    assert!(
        message(&ti, "HostSyncReady").contains(&format!("not Ready for generation {generation}")),
        "{}",
        message(&ti, "HostSyncReady")
    );
    blocked_by(&ti, "VirtualClusterUpgrading", false);
    simulate::helm_release_progressing(&client, &ns, "vc-r")
        .await
        .unwrap();
    let ti = wait_for(
        &tis,
        "team-r",
        "Flux's progress in the message",
        DEFAULT_TIMEOUT,
        |t| message(t, "HostSyncReady").contains("Running 'upgrade' action"),
    )
    .await
    .unwrap();
    assert!(has_condition(
        &ti,
        "HostSyncReady",
        "False",
        Some("VirtualClusterUpgrading")
    ));

    // The upgrade fails: Flux retries (Reconciling), then gives up (Stalled).
    simulate::helm_release_failed(&client, &ns, "vc-r", false)
        .await
        .unwrap();
    let ti = host_sync(&tis, "False", "VirtualClusterReleaseFailed").await;
    assert!(
        message(&ti, "HostSyncReady").contains("UpgradeFailed"),
        "{}",
        message(&ti, "HostSyncReady")
    );
    blocked_by(&ti, "VirtualClusterReleaseFailed", false);
    simulate::helm_release_failed(&client, &ns, "vc-r", true)
        .await
        .unwrap();
    let ti = wait_for(&tis, "team-r", "Stalled=True", DEFAULT_TIMEOUT, |t| {
        has_condition(t, "Stalled", "True", Some("VirtualClusterReleaseFailed"))
    })
    .await
    .unwrap();
    blocked_by(&ti, "VirtualClusterReleaseFailed", true);

    // Flux upgrades it: the vcluster carries the rules.
    simulate::helm_release_ready(&client, &ns, "vc-r", "0.24.1")
        .await
        .unwrap();
    let ti = host_sync(&tis, "True", "HostSyncApplied").await;
    let text = message(&ti, "HostSyncReady");
    assert!(
        text.contains(&format!(
            "HelmRelease {ns}/vc-r takes ConfigMap team-r-vcluster-identity"
        )) && text.contains("chart 0.24.1"),
        "{text}"
    );
    wait_for(&tis, "team-r", "Ready=True", DEFAULT_TIMEOUT, is_ready)
        .await
        .unwrap();

    // Inline values win over valuesFrom: naming another workload ServiceAccount there defeats
    // the rules.
    simulate::apply_vcluster_release(
        &client,
        &ns,
        "vc-r",
        vec![simulate::sync_rules_values_from("team-r")],
        json!({"controlPlane": {"advanced": {"workloadServiceAccount": {"name": "other"}}}}),
    )
    .await
    .unwrap();
    simulate::helm_release_ready(&client, &ns, "vc-r", "0.24.1")
        .await
        .unwrap();
    let ti = host_sync(&tis, "False", "SyncRulesOverridden").await;
    assert!(
        message(&ti, "HostSyncReady").contains("controlPlane.advanced.workloadServiceAccount.name"),
        "{}",
        message(&ti, "HostSyncReady")
    );
    blocked_by(&ti, "SyncRulesOverridden", true);

    // A chart below 0.21, then multi-namespace mode: this vcluster cannot carry the identity.
    simulate::apply_vcluster_release(
        &client,
        &ns,
        "vc-r",
        vec![simulate::sync_rules_values_from("team-r")],
        Value::Null,
    )
    .await
    .unwrap();
    simulate::helm_release_ready(&client, &ns, "vc-r", "0.20.3")
        .await
        .unwrap();
    let ti = host_sync(&tis, "False", "VirtualClusterUnsupported").await;
    assert!(
        message(&ti, "HostSyncReady").contains("chart 0.20.3"),
        "{}",
        message(&ti, "HostSyncReady")
    );
    blocked_by(&ti, "VirtualClusterUnsupported", true);
    simulate::apply_vcluster_release(
        &client,
        &ns,
        "vc-r",
        vec![simulate::sync_rules_values_from("team-r")],
        json!({"sync": {"toHost": {"namespaces": {"enabled": true}}}}),
    )
    .await
    .unwrap();
    simulate::helm_release_ready(&client, &ns, "vc-r", "0.24.1")
        .await
        .unwrap();
    let ti = wait_for(
        &tis,
        "team-r",
        "multi-namespace mode refused",
        DEFAULT_TIMEOUT,
        |t| {
            has_condition(
                t,
                "HostSyncReady",
                "False",
                Some("VirtualClusterUnsupported"),
            ) && message(t, "HostSyncReady").contains("sync.toHost.namespaces.enabled")
        },
    )
    .await
    .unwrap();
    blocked_by(&ti, "VirtualClusterUnsupported", true);

    // The release goes away: back to "cannot check".
    dynamic(&client, &ns, &helm_release())
        .delete("vc-r", &DeleteParams::default())
        .await
        .unwrap();
    let ti = host_sync(&tis, "True", "SyncRulesUnverified").await;
    assert!(has_condition(&ti, "Ready", "True", None), "{:?}", ti.status);

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helm_controller_watches_the_sync_rules_config_map() {
    let env = TestEnv::start("watch-label", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let tis = tenants(&client, &ns);
    create_tenant(&client, &ns, "team-w", shared_spec(&random_guid(), "vc-w"))
        .await
        .unwrap();
    let config_maps = config_maps(&client, &ns);
    let name = sync_rules_config_map("team-w");
    wait_for(
        &config_maps,
        &name,
        "the sync-rules ConfigMap",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();

    // helm-controller selects the valuesFrom sources it watches by this label.
    let watched = |cms: &[ConfigMap]| cms.iter().map(|c| c.name_any()).collect::<Vec<_>>();
    let selected = config_maps
        .list(&ListParams::default().labels("reconcile.fluxcd.io/watch=Enabled"))
        .await
        .unwrap();
    assert_eq!(watched(&selected.items), vec![name.clone()]);

    // The content changes with the spec (what makes helm-controller upgrade); the label stays.
    tis.patch(
        "team-w",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"virtualCluster": {"workloadServiceAccount": "workloads"}}})),
    )
    .await
    .unwrap();
    let cm = wait_for(
        &config_maps,
        &name,
        "the new workload ServiceAccount in the fragment",
        DEFAULT_TIMEOUT,
        |cm| {
            sync_rules_values(cm).is_ok_and(|v| {
                v["controlPlane"]["advanced"]["workloadServiceAccount"]["name"] == "workloads"
            })
        },
    )
    .await
    .unwrap();
    assert_eq!(
        cm.labels()
            .get("reconcile.fluxcd.io/watch")
            .map(String::as_str),
        Some("Enabled")
    );

    // Someone removes the label: the operator puts it back (it is part of the child).
    config_maps
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"reconcile.fluxcd.io/watch": null}}})),
        )
        .await
        .unwrap();
    wait_for(
        &config_maps,
        &name,
        "the watch label restored",
        DEFAULT_TIMEOUT,
        |cm| {
            cm.labels()
                .get("reconcile.fluxcd.io/watch")
                .map(String::as_str)
                == Some("Enabled")
        },
    )
    .await
    .unwrap();

    env.finish().await;
}
