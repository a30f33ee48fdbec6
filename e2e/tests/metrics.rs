//! Every metric the chart's dashboard and alerts query is exported by the running binary.

use std::collections::BTreeSet;

use tenant_identity_e2e::{
    Check, DEFAULT_TIMEOUT, TestEnv,
    cluster::workspace_root,
    namespace::random_guid,
    objects::*,
    operator::{sample_names, sum_samples},
    poll_until, simulate,
};

/// Series that exist only once the operator has talked to Azure Resource Manager (labels
/// `operation` and `code` are only known then). Asserted by the ARM scenarios (`tests/arm.rs`,
/// against the fake ARM), not here.
const ONLY_AFTER_AZURE_REQUESTS: &[&str] = &["tenant_identity_azure_requests_total"];

/// Every `tenant_identity_*` name referenced under `dir` (recursively) in files ending in one of
/// `extensions`.
fn referenced(dir: &std::path::Path, extensions: &[&str], out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            referenced(&path, extensions, out);
            continue;
        }
        if !path
            .extension()
            .is_some_and(|e| extensions.iter().any(|x| e == *x))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("tenant_identity_") {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len());
            out.insert(tail[..end].to_string());
            rest = &tail[end..];
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alert_metrics_are_exported() {
    let env = TestEnv::start("metrics", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    // Some work first, so per-object series exist too.
    create_tenant(&client, &ns, "team-m", shared_spec(&random_guid(), "vc-m"))
        .await
        .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-m")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-m", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    // A failing reconcile, so the lazily created error series exist: the ARM backend is not
    // configured for this process (no AZURE_CLIENT_ID), so a managedIdentity tenant fails.
    let mut arm = shared_spec(&random_guid(), "vc-arm");
    arm["azure"]["identity"] = serde_json::json!({"managedIdentity": {
        "subscriptionId": "11111111-2222-4333-8444-555555555555",
        "resourceGroup": "rg-tenants",
        "name": "id-arm",
    }});
    create_tenant(&client, &ns, "team-arm", arm).await.unwrap();
    poll_until("a counted reconcile error", DEFAULT_TIMEOUT, || async {
        let text = env.operator.metrics().await?;
        let n = sum_samples(&text, "tenant_identity_reconcile_errors_total", &[]);
        Ok(if n > 0.0 {
            Check::Done(())
        } else {
            Check::NotYet(format!("{n}"))
        })
    })
    .await
    .unwrap();

    let chart = workspace_root().join("helm/tenant-identity-operator");
    let mut wanted = BTreeSet::new();
    referenced(&chart.join("dashboards"), &["json"], &mut wanted);
    referenced(&chart.join("alerts"), &["yaml", "yml"], &mut wanted);
    referenced(
        &chart.join("templates"),
        &["yaml", "yml", "tpl"],
        &mut wanted,
    );
    assert!(
        wanted.len() >= 4,
        "the chart references suspiciously few metrics: {wanted:?}"
    );

    let text = env.operator.metrics().await.unwrap();
    let exported = sample_names(&text);
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !exported.contains(name.as_str()))
        .filter(|name| !ONLY_AFTER_AZURE_REQUESTS.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "referenced by the chart but not exported: {missing:?}\n/metrics:\n{text}"
    );
    // Histograms are complete (a _bucket without _count would break the dashboard's averages).
    for name in &wanted {
        if let Some(base) = name.strip_suffix("_bucket") {
            for suffix in ["_sum", "_count"] {
                assert!(
                    exported.contains(&format!("{base}{suffix}")),
                    "{base}{suffix} missing"
                );
            }
        }
    }
    assert!(
        env.operator.successful_reconciles().await.unwrap() > 0.0,
        "reconciles are counted"
    );

    // Retain: the tenant goes without the (unconfigured) ARM backend having to delete anything.
    let tis = tenants(&client, &ns);
    tis.patch(
        "team-arm",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(serde_json::json!({"spec": {"deletionPolicy": "Retain"}})),
    )
    .await
    .unwrap();
    tis.delete("team-arm", &Default::default()).await.unwrap();
    tenant_identity_e2e::wait_gone(&tis, "team-arm", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    env.finish().await;
}

/// What the operator costs the API server is visible in production: its own requests, counted
/// by verb as kube-apiserver spells it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_counts_its_api_requests_by_verb() {
    let env = TestEnv::start("api-requests", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    create_tenant(&client, &ns, "team-r", shared_spec(&random_guid(), "vc-r"))
        .await
        .unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-r")
        .await
        .unwrap();
    simulate::converge(&client, &ns, "team-r", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let text = env.operator.metrics().await.unwrap();
    let verb = |v: &str| sum_samples(&text, "tenant_identity_api_requests_total", &[("verb", v)]);
    assert!(verb("WATCH") > 0.0, "the watches are counted");
    assert!(verb("LIST") > 0.0, "the lists are counted");
    assert!(
        verb("APPLY") > 0.0,
        "server-side applies are counted as APPLY"
    );
    assert!(verb("POST") > 0.0, "the creation of each child is counted");
    env.finish().await;
}

/// The operator's `tenant_identity_watch_healthy` series: kind -> value.
async fn watch_health(env: &TestEnv) -> std::collections::BTreeMap<String, f64> {
    let text = env.operator.metrics().await.unwrap();
    tenant_identity_e2e::exposition::parse_exposition(&text)
        .into_iter()
        .filter(|s| s.name == "tenant_identity_watch_healthy")
        .map(|s| (s.labels.get("kind").cloned().unwrap_or_default(), s.value))
        .collect()
}

/// Waits until every exported watch health series is 1 and returns their kinds. A series stuck
/// at 0 (a watch the operator never runs) times out here.
async fn healthy_watches(env: &TestEnv) -> BTreeSet<String> {
    poll_until(
        "every watch_healthy series at 1",
        DEFAULT_TIMEOUT,
        || async {
            let health = watch_health(env).await;
            Ok(
                if !health.is_empty() && health.values().all(|v| *v == 1.0) {
                    Check::Done(health.into_keys().collect())
                } else {
                    Check::NotYet(format!("{health:?}"))
                },
            )
        },
    )
    .await
    .unwrap()
}

/// What the operator watches with every CRD the suite installs (`cluster::install_crds`: Flux's
/// and ASO's): the TenantIdentities, each owned kind, the host ServiceAccounts, the observed
/// HelmRelease and ASO's UserAssignedIdentities.
fn watched_with_every_crd() -> BTreeSet<String> {
    use tenant_identity_crd::kinds::{ChildKind, ObservedKind};
    let mut kinds: BTreeSet<String> = ["TenantIdentity", "ServiceAccount", "UserAssignedIdentity"]
        .map(String::from)
        .into();
    kinds.extend(ChildKind::all().map(|k| k.kind_name().to_string()));
    kinds.extend(ObservedKind::all().map(|k| k.kind_name().to_string()));
    kinds
}

/// In steady state every watch the operator runs is healthy (1), and a watch it does not run
/// has no series: without `--require-namespace-grant` namespaces are not watched, and a 0 for
/// them would fire TenantIdentityWatchFailing on every default install.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_health_has_a_series_for_each_watch_run_and_each_is_healthy() {
    let env = TestEnv::start("watch-health", &[]).await.unwrap();
    create_tenant(
        &env.client,
        env.ns(),
        "team-w",
        shared_spec(&random_guid(), "vc-w"),
    )
    .await
    .unwrap();
    simulate::helm_workload_service_account(&env.client, env.ns(), "vc-w")
        .await
        .unwrap();
    simulate::converge(&env.client, env.ns(), "team-w", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let kinds = healthy_watches(&env).await;
    assert!(!kinds.contains("Namespace"), "{kinds:?}");
    assert_eq!(kinds, watched_with_every_crd());
    env.finish().await;
}

/// With `--require-namespace-grant` the operator watches namespaces too, and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_namespace_grant_the_namespace_watch_has_a_healthy_series() {
    let env = TestEnv::start("watch-health-ns", &["--require-namespace-grant"])
        .await
        .unwrap();
    let kinds = healthy_watches(&env).await;
    let mut wanted = watched_with_every_crd();
    wanted.insert("Namespace".into());
    assert_eq!(kinds, wanted);
    env.finish().await;
}
