//! The scale goals of the operator, measured side by side in one run and printed as one table:
//! convergence against a bare server-side-apply client, reconciles per tenant, memory and open
//! descriptors, requests per tenant to converge and on a forced resync, and the reconcile
//! duration's p50/p99 once converged. A benchmark: it prints and exits 0, it never asserts.
//!
//! ```text
//! TENANTS=200 cargo bench -p tenant-identity-e2e --bench fleet   # N tenants (default 1,000)
//! FLEET_SMOKE=1 cargo bench -p tenant-identity-e2e --bench fleet # 50 tenants, quick
//! E2E_OPERATOR_BIN=target/release/tenant-identity-operator ...   # a release operator
//! E2E_KUBECONFIG=/path/to/kubeconfig ...                         # a real API server
//! UNRELATED_SERVICE_ACCOUNTS=20000 UNRELATED_CONFIG_MAPS=5000 ... # objects of nobody's
//! FLEET_OPERATOR_ARGS="--reconcile-debounce=100ms" ...            # tuning the operator
//! ```
//!
//! The run, on one API server (the emulator, or `E2E_KUBECONFIG`):
//! 1. **Bare baseline.** In 50 namespaces of its own, N tenants (ASO backend, Shared mode). For
//!    each, with at most [`CONCURRENCY`] tenants in flight, a plain kube-rs client creates the
//!    TenantIdentity, then server-side applies (field manager `bare-baseline`) exactly the
//!    children `tenant-identity-operator render` prints for it (credentials, sync-rules
//!    ConfigMap, the host ServiceAccount's annotations), with the operator's owner reference,
//!    then one status apply. The clock runs from the first create to the last status. The
//!    host ServiceAccounts and ASO identities exist beforehand, as for the operator. Its
//!    namespaces are deleted before the operator starts.
//! 2. **The operator.** The same N tenants in 50 other namespaces, created with the same
//!    concurrency, ASO played as the suite does ([`simulate::converge`]). The clock runs from
//!    the first create to every child existing, and to every tenant Ready. Then the fleet is left
//!    to settle (no reconcile and no request for 2 s), and every tenant is annotated with a
//!    bench-only annotation (a forced resync: a reconcile with nothing to do) until the operator
//!    has reconciled once per tenant.
//!
//! Requests are attributed to the operator by its own counter
//! (`tenant_identity_api_requests_total{verb}`, diffed over each phase). On the emulator its
//! audit record, which keeps each request's `User-Agent`, also gives the operator's requests by
//! verb and resource; the API server's `apiserver_request_total` (which counts every client,
//! the bench's own included) is printed beside them.

mod bare;
mod metrics;
mod operator_phase;
mod procfs;
mod report;
mod tenants;
mod unrelated;

use std::{path::Path, time::Instant};

use tenant_identity_e2e::{
    Cluster, Operator, TestNamespace, namespace::random_hex, operator as harness_operator,
};

use bare::{bare_run, remove_namespaces};
use metrics::{AuditLog, OperatorMetrics, diff, server_counts};
use operator_phase::{converge_fleet, resync, settle};
use procfs::ProcSampler;
use report::Report;
use tenants::{NAMESPACES, fleet, is_service_account, namespaces, prepare, render};
use unrelated::Unrelated;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing to parse.
    let n = tenant_count();
    let cluster = Cluster::connect().await?;
    let client = cluster.client();
    let issuer = cluster.discovered_issuer().await?;
    let binary = harness_operator::binary()?;
    let build = build_of(&binary);
    let audit = AuditLog::find(&cluster);
    println!(
        "fleet: {n} tenants (ASO, Shared) in {NAMESPACES} namespaces, {} API server, {build} \
         operator ({}), {} cores",
        if cluster.is_emulated() {
            "emulated"
        } else {
            "real"
        },
        binary.display(),
        std::thread::available_parallelism().map_or(0, |p| p.get()),
    );

    let unrelated = Unrelated::from_env();
    let unrelated_ns = unrelated.create(&cluster).await?;
    if unrelated_ns.is_some() {
        println!(
            "unrelated objects: {} ServiceAccounts, {} ConfigMaps",
            unrelated.service_accounts, unrelated.config_maps
        );
    }

    // 1. The bare baseline.
    let bare_ns = namespaces(&cluster, "fleet-bare").await?;
    let bare_fleet = fleet(&bare_ns, n);
    prepare(&client, &bare_fleet).await?;
    let bare_children = render(&binary, &bare_fleet, &issuer)?;
    let bare_server_before = server_counts(&cluster).await;
    let bare_audit_before = audit.as_ref().map(AuditLog::offset);
    let start = Instant::now();
    bare_run(&client, &bare_fleet, &bare_children).await?;
    let bare = start.elapsed();
    let bare_requests = diff(&server_counts(&cluster).await, &bare_server_before);
    let bare_by_agent = match (&audit, bare_audit_before) {
        (Some(log), Some(from)) => Some(log.read(from)?),
        _ => None,
    };
    println!("bare baseline: {:.2} s for {n} tenants", bare.as_secs_f64());
    remove_namespaces(&client, bare_ns).await;

    // 2. The operator.
    let op_ns = namespaces(&cluster, "fleet-op").await?;
    let op_fleet = fleet(&op_ns, n);
    prepare(&client, &op_fleet).await?;
    let expected_children: usize = render(&binary, &op_fleet, &issuer)?
        .values()
        .flatten()
        .filter(|o| !is_service_account(o))
        .count();
    // Extra operator flags (tuning runs), e.g. FLEET_OPERATOR_ARGS="--reconcile-debounce=100ms".
    let extra = std::env::var("FLEET_OPERATOR_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();
    if !extra.is_empty() {
        println!("operator flags: {}", extra.join(" "));
    }
    let mut operator = Operator::start(&cluster, &extra).await?;
    let sampler = ProcSampler::start(operator.pid());
    settle(&operator).await?;
    let idle = sampler.now();

    let m0 = OperatorMetrics::scrape(&operator).await?;
    let s0 = server_counts(&cluster).await;
    let a0 = audit.as_ref().map(AuditLog::offset);
    let start = Instant::now();
    let (all_children, all_ready) = converge_fleet(&client, &op_fleet, expected_children).await?;
    settle(&operator).await?;
    let settled = start.elapsed();
    let converged_proc = sampler.now();
    let m1 = OperatorMetrics::scrape(&operator).await?;
    let s1 = server_counts(&cluster).await;
    let a1 = audit.as_ref().map(AuditLog::offset);

    // The forced resync of the converged fleet.
    let token = format!("fleet-{}", random_hex(8));
    let resync_start = Instant::now();
    resync(&client, &op_fleet, &token, &operator).await?;
    let resynced = resync_start.elapsed();
    settle(&operator).await?;
    let m2 = OperatorMetrics::scrape(&operator).await?;
    let s2 = server_counts(&cluster).await;
    let a2 = audit.as_ref().map(AuditLog::offset);
    let peak = sampler.stop();

    let op_converge = m1.requests_since(&m0);
    let op_resync = m2.requests_since(&m1);
    let server_converge = diff(&s1, &s0);
    let server_resync = diff(&s2, &s1);
    let (audit_converge, audit_resync) = match (&audit, a0, a1, a2) {
        (Some(log), Some(a0), Some(a1), Some(a2)) => (
            Some(log.read_between(a0, a1)?),
            Some(log.read_between(a1, a2)?),
        ),
        _ => (None, None),
    };

    // 3. The report.
    report::print(Report {
        n,
        build,
        audit: audit.as_ref(),
        bare,
        bare_requests,
        bare_by_agent,
        all_children,
        all_ready,
        settled,
        resynced,
        idle,
        converged_proc,
        peak,
        m0,
        m1,
        m2,
        op_converge,
        op_resync,
        server_converge,
        server_resync,
        audit_converge,
        audit_resync,
    });

    if !cluster.is_emulated() {
        futures::future::join_all(op_ns.into_iter().map(TestNamespace::cleanup)).await;
        if let Some(ns) = unrelated_ns {
            ns.cleanup().await;
        }
    }
    let _ = operator.stop().await;
    cluster.shutdown().await;
    Ok(())
}

fn tenant_count() -> usize {
    if std::env::var("FLEET_SMOKE").is_ok_and(|v| v == "1") {
        return 50;
    }
    std::env::var("TENANTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

/// `release` or `debug`, from the binary's directory.
fn build_of(binary: &Path) -> &'static str {
    let dir = binary
        .parent()
        .and_then(Path::file_name)
        .and_then(|d| d.to_str());
    match dir {
        Some("release") => "release",
        Some("debug") => "debug",
        _ => "unknown",
    }
}
