//! Throughput of the real operator binary: how long N tenants take from `kubectl apply` to
//! Ready, how many reconciles that costs, and that a fully converged fleet makes no writes.
//!
//! Runs against the API emulator (or `E2E_KUBECONFIG`). Targets, for 50 Shared-mode tenants on a
//! 2-core machine: all Ready within 60 s of creation, and zero writes to any child on a forced
//! re-reconcile of the whole fleet. `TENANTS=200 make bench` for a bigger fleet.

use std::time::{Duration, Instant};

use kube::{ResourceExt, api::ListParams};
use tenant_identity_e2e::{
    TestEnv,
    namespace::random_guid,
    objects::{self, create_tenant, is_ready, shared_spec},
    simulate,
};

const TARGET_CONVERGE: Duration = Duration::from_secs(60);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let tenants: usize = std::env::var("TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let env = TestEnv::start("bench", &[]).await?;
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let names: Vec<String> = (0..tenants).map(|i| format!("tenant-{i}")).collect();

    let start = Instant::now();
    for name in &names {
        simulate::helm_workload_service_account(&client, &ns, name).await?;
        create_tenant(&client, &ns, name, shared_spec(&random_guid(), name)).await?;
    }
    let created = start.elapsed();
    for name in &names {
        simulate::converge(&client, &ns, name, TARGET_CONVERGE * 2).await?;
    }
    let converged = start.elapsed();
    let reconciles = env.operator.successful_reconciles().await?;
    let metrics = env.operator.metrics().await?;
    let mean = mean_duration(&metrics);

    // Steady state: touch every tenant (requestedAt) and check no child changed.
    let before = child_versions(&env).await?;
    for name in &names {
        objects::request_reconcile(&client, &ns, name, "bench", TARGET_CONVERGE).await?;
    }
    let after = child_versions(&env).await?;
    let writes = before.iter().zip(&after).filter(|(a, b)| a != b).count();
    let all_ready = objects::tenants(&client, &ns)
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|t| is_ready(t))
        .count();

    println!("tenants:                       {tenants}");
    println!(
        "created in:                    {:.2} s",
        created.as_secs_f64()
    );
    println!(
        "all Ready after:               {:.2} s (target < {} s)",
        converged.as_secs_f64(),
        TARGET_CONVERGE.as_secs()
    );
    println!(
        "successful reconciles:         {reconciles} ({:.1} per tenant)",
        reconciles / tenants as f64
    );
    println!("mean reconcile duration:       {:.1} ms", mean * 1000.0);
    println!(
        "children changed on resync:    {writes} of {} (target 0)",
        before.len()
    );
    env.finish().await;

    anyhow::ensure!(
        all_ready == tenants,
        "{all_ready} of {tenants} tenants Ready"
    );
    anyhow::ensure!(converged < TARGET_CONVERGE, "convergence missed its target");
    anyhow::ensure!(writes == 0, "a forced re-reconcile wrote {writes} children");
    Ok(())
}

fn mean_duration(metrics: &str) -> f64 {
    let samples = tenant_identity_e2e::operator::parse_exposition(metrics);
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.value)
            .unwrap_or(0.0)
    };
    let count = value("tenant_identity_reconcile_duration_seconds_count");
    if count > 0.0 {
        value("tenant_identity_reconcile_duration_seconds_sum") / count
    } else {
        0.0
    }
}

/// (kind/name, resourceVersion) of every child of every tenant, sorted.
async fn child_versions(env: &TestEnv) -> anyhow::Result<Vec<(String, Option<String>)>> {
    let mut out = Vec::new();
    for resource in objects::child_kinds() {
        let api = objects::dynamic(&env.client, env.ns(), &resource);
        let list = api
            .list(&ListParams::default().labels(objects::TENANT_LABEL))
            .await?;
        for obj in list.items {
            out.push((
                format!("{}/{}", resource.kind, obj.name_any()),
                obj.resource_version(),
            ));
        }
    }
    out.sort();
    Ok(out)
}
