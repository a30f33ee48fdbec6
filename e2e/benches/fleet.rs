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

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource as _, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde::Deserialize as _;
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    Cluster, Operator, TestNamespace,
    cluster::audit_dir,
    namespace::{random_guid, random_hex},
    objects::{self, TENANT_LABEL},
    operator::{self as harness_operator, parse_exposition},
    simulate,
};

/// Namespaces the tenants are spread across, for the baseline and for the operator.
const NAMESPACES: usize = 50;
/// Tenants in flight at once, for the bare client and for the bench creating tenants and playing
/// ASO.
const CONCURRENCY: usize = 32;
/// Field manager of the bare baseline client.
const BARE_MANAGER: &str = "bare-baseline";
/// The operator's `User-Agent` starts with this.
const OPERATOR_AGENT: &str = "tenant-identity-operator/";
/// Settled: this long without a reconcile or a request of the operator.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a phase may take at most.
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);

/// The goals of the scale issue.
const TARGET_RATIO: f64 = 1.2;
const TARGET_RECONCILES: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 48.0;
const TARGET_RSS_AT: usize = 5_000;
const TARGET_P99_SECONDS: f64 = 0.05;

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
    let mut operator = Operator::start(&cluster, &[]).await?;
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
    let per = |x: f64| x / n as f64;
    let reconciles = m1.reconciles - m0.reconciles;
    let failed = (m1.reconciles - m1.successes) - (m0.reconciles - m0.successes);
    let resync_reconciles = m2.reconciles - m1.reconciles;
    let mutating = |r: &BTreeMap<String, f64>| {
        ["POST", "PUT", "PATCH", "APPLY", "DELETE"]
            .iter()
            .map(|v| r.get(*v).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let reads = |r: &BTreeMap<String, f64>| {
        ["GET", "LIST"]
            .iter()
            .map(|v| r.get(*v).copied().unwrap_or(0.0))
            .sum::<f64>()
    };
    let converge_total: f64 = op_converge.values().sum();
    let converged_hist = m2.histogram_since(&m1);
    let converging_hist = m1.histogram_since(&m0);
    let ready_ratio = all_ready.as_secs_f64() / bare.as_secs_f64();
    let children_ratio = all_children.as_secs_f64() / bare.as_secs_f64();
    let rss = converged_proc.map(|p| p.rss_kib as f64 / 1024.0);

    println!();
    println!("details");
    println!("  bare client:            {:.2} s", bare.as_secs_f64());
    println!(
        "  operator:               all children {:.2} s, all Ready {:.2} s, settled {:.2} s",
        all_children.as_secs_f64(),
        all_ready.as_secs_f64(),
        settled.as_secs_f64()
    );
    println!(
        "  reconciles:             {reconciles} to converge ({failed} failed), {resync_reconciles} on resync ({:.2} s)",
        resynced.as_secs_f64()
    );
    if let Some(p) = idle {
        println!(
            "  operator at rest, N=0:  VmRSS {:.1} MiB, {} fds",
            p.rss_kib as f64 / 1024.0,
            p.fds
        );
    }
    if let (Some(p), Some(peak)) = (converged_proc, peak) {
        println!(
            "  operator converged:     VmRSS {:.1} MiB, VmHWM {:.1} MiB, {} fds now, {} fds at peak",
            p.rss_kib as f64 / 1024.0,
            p.hwm_kib.max(peak.hwm_kib) as f64 / 1024.0,
            p.fds,
            peak.fds
        );
    }
    println!(
        "  reconcile duration:     converging p50 {} p99 {}; converged (resync) p50 {} p99 {}",
        show_quantile(converging_hist.quantile(0.5)),
        show_quantile(converging_hist.quantile(0.99)),
        show_quantile(converged_hist.quantile(0.5)),
        show_quantile(converged_hist.quantile(0.99)),
    );
    println!(
        "  operator requests (its tenant_identity_api_requests_total), per tenant:\n    converge: {}\n    resync:   {}",
        show_verbs(&op_converge, n),
        show_verbs(&op_resync, n)
    );
    if let (Some(c), Some(r)) = (&audit_converge, &audit_resync) {
        println!(
            "  operator requests by verb and resource (emulator's audit record, User-Agent {OPERATOR_AGENT}*), per tenant:"
        );
        println!("    converge: {}", show_resources(c.get(&true), n));
        println!("    resync:   {}", show_resources(r.get(&true), n));
        println!(
            "  the bench's own requests (ASO played, tenants created and annotated), per tenant:"
        );
        println!("    converge: {}", show_resources(c.get(&false), n));
        println!("    resync:   {}", show_resources(r.get(&false), n));
    }
    if let Some(b) = &bare_by_agent {
        println!(
            "  bare client requests by verb and resource, per tenant: {}",
            show_resources(b.get(&false), n)
        );
    }
    println!(
        "  API server apiserver_request_total (every client), per tenant:\n    bare:     {}\n    converge: {}\n    resync:   {}",
        show_server(&bare_requests, n),
        show_server(&server_converge, n),
        show_server(&server_resync, n)
    );

    let bare_per_tenant = bare_requests.values().sum::<u64>() as f64 / n as f64;
    println!();
    println!("{:<46} {:<22} {:<30} met", "goal", "target", "measured");
    let row = |goal: &str, target: &str, measured: String, met: Option<bool>| {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!("{goal:<46} {target:<22} {measured:<30} {met}");
    };
    row(
        "convergence vs bare client: all Ready",
        &format!("<= {TARGET_RATIO}x"),
        format!(
            "{ready_ratio:.2}x ({:.1} s / {:.1} s)",
            all_ready.as_secs_f64(),
            bare.as_secs_f64()
        ),
        Some(ready_ratio <= TARGET_RATIO),
    );
    row(
        "convergence vs bare client: all children",
        &format!("<= {TARGET_RATIO}x"),
        format!(
            "{children_ratio:.2}x ({:.1} s / {:.1} s)",
            all_children.as_secs_f64(),
            bare.as_secs_f64()
        ),
        Some(children_ratio <= TARGET_RATIO),
    );
    row(
        "reconciles per tenant to converge",
        &format!("<= {TARGET_RECONCILES}"),
        format!("{:.2}", per(reconciles)),
        Some(per(reconciles) <= TARGET_RECONCILES),
    );
    row(
        &format!("operator RSS at N={n}"),
        &format!("<= {TARGET_RSS_MIB} MiB at {TARGET_RSS_AT}"),
        rss.map_or("unknown".into(), |r| format!("{r:.1} MiB")),
        rss.filter(|_| n >= TARGET_RSS_AT)
            .map(|r| r <= TARGET_RSS_MIB),
    );
    row(
        "requests per tenant to converge",
        &format!("bare: {bare_per_tenant:.1}"),
        format!("{:.1}", per(converge_total)),
        None,
    );
    row(
        "mutating requests per tenant on resync",
        "0",
        format!("{:.2}", per(mutating(&op_resync))),
        Some(mutating(&op_resync) == 0.0),
    );
    row(
        "reads per tenant on resync (GET, LIST)",
        "0 beyond watches",
        format!("{:.2}", per(reads(&op_resync))),
        Some(reads(&op_resync) == 0.0),
    );
    row(
        "reconcile p99 once converged",
        &format!("<= {} ms", TARGET_P99_SECONDS * 1000.0),
        show_quantile(converged_hist.quantile(0.99)),
        converged_hist
            .quantile(0.99)
            .map(|q| q.upper <= TARGET_P99_SECONDS && !q.open),
    );
    println!(
        "(requests: the operator's own tenant_identity_api_requests_total; {}; {build} operator build)",
        if audit.is_some() {
            "by resource from the emulator's audit record, by User-Agent"
        } else {
            "the API server's counts include every client"
        }
    );

    if !cluster.is_emulated() {
        futures::future::join_all(op_ns.into_iter().map(TestNamespace::cleanup)).await;
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

/// One tenant of a fleet.
#[derive(Clone, Debug)]
struct Tenant {
    ns: String,
    name: String,
    client_id: String,
}

impl Tenant {
    fn spec(&self) -> Value {
        objects::shared_spec(&self.client_id, &self.name)
    }

    fn key(&self) -> (String, String) {
        (self.ns.clone(), self.name.clone())
    }
}

async fn namespaces(cluster: &Cluster, prefix: &str) -> anyhow::Result<Vec<TestNamespace>> {
    stream::iter(0..NAMESPACES)
        .map(|i| async move { cluster.namespace(&format!("{prefix}-{i}")).await })
        .buffered(8)
        .try_collect()
        .await
}

fn fleet(namespaces: &[TestNamespace], n: usize) -> Vec<Tenant> {
    (0..n)
        .map(|i| Tenant {
            ns: namespaces[i % namespaces.len()].name().to_string(),
            name: format!("tenant-{i}"),
            client_id: random_guid(),
        })
        .collect()
}

/// What exists before a tenant: the vcluster's workload ServiceAccount (its Helm release) and
/// the platform team's ASO identity.
async fn prepare(client: &Client, fleet: &[Tenant]) -> anyhow::Result<()> {
    stream::iter(fleet)
        .map(|t| async move {
            simulate::helm_workload_service_account(client, &t.ns, &t.name).await?;
            objects::aso_identity(client, &t.ns, &format!("{}-identity", t.name), &t.client_id)
                .await?;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// The objects `tenant-identity-operator render` prints for each tenant of `fleet`, by tenant.
fn render(
    binary: &Path,
    fleet: &[Tenant],
    issuer: &str,
) -> anyhow::Result<HashMap<(String, String), Vec<DynamicObject>>> {
    let mut input = String::new();
    for t in fleet {
        let ti = objects::tenant_identity(&t.ns, &t.name, t.spec())?;
        input.push_str("---\n");
        input.push_str(&serde_yaml::to_string(&ti)?);
    }
    let dir = tempfile::tempdir().context("cannot create a temp dir")?;
    let file: PathBuf = dir.path().join("tenants.yaml");
    std::fs::write(&file, input).with_context(|| format!("cannot write {}", file.display()))?;
    let out = std::process::Command::new(binary)
        .arg("render")
        .arg("-f")
        .arg(&file)
        .arg("--issuer")
        .arg(issuer)
        .output()
        .with_context(|| format!("cannot run {} render", binary.display()))?;
    anyhow::ensure!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).context("render printed no UTF-8")?;
    // Each tenant's documents follow its `# TenantIdentity <ns>/<name>: ...` line.
    let mut groups: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TenantIdentity ") {
            let id = rest.split(':').next().unwrap_or_default().to_string();
            groups.push((id, String::new()));
        } else if let Some((_, body)) = groups.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    let mut out = HashMap::new();
    for (id, body) in groups {
        let (ns, name) = id
            .split_once('/')
            .with_context(|| format!("render names no namespace/name: {id}"))?;
        let mut docs = Vec::new();
        for document in serde_yaml::Deserializer::from_str(&body) {
            let value = serde_yaml::Value::deserialize(document)?;
            if value.is_null() {
                continue;
            }
            docs.push(serde_yaml::from_value::<DynamicObject>(value)?);
        }
        out.insert((ns.to_string(), name.to_string()), docs);
    }
    anyhow::ensure!(
        out.len() == fleet.len(),
        "render printed {} tenants of {}",
        out.len(),
        fleet.len()
    );
    Ok(out)
}

fn is_service_account(obj: &DynamicObject) -> bool {
    obj.types
        .as_ref()
        .is_some_and(|t| t.kind == "ServiceAccount")
}

/// The API resource of a rendered object: a child kind, or the host ServiceAccount.
fn resource_of(obj: &DynamicObject) -> anyhow::Result<ApiResource> {
    let types = obj
        .types
        .as_ref()
        .context("a rendered object has no kind")?;
    if types.kind == "ServiceAccount" {
        return Ok(ApiResource::erase::<ServiceAccount>(&()));
    }
    objects::child_kinds()
        .into_iter()
        .find(|r| r.kind == types.kind && r.api_version == types.api_version)
        .with_context(|| format!("render printed an unknown kind {}", types.kind))
}

/// The bare client: per tenant, create it, apply its children, apply its status once.
async fn bare_run(
    client: &Client,
    fleet: &[Tenant],
    children: &HashMap<(String, String), Vec<DynamicObject>>,
) -> anyhow::Result<()> {
    let apply = PatchParams::apply(BARE_MANAGER).force();
    stream::iter(fleet)
        .map(|t| {
            let apply = apply.clone();
            async move {
                let tenants = objects::tenants(client, &t.ns);
                let ti = tenants
                    .create(
                        &PostParams::default(),
                        &objects::tenant_identity(&t.ns, &t.name, t.spec())?,
                    )
                    .await?;
                let owner = ti.controller_owner_ref(&());
                let mut subjects = Vec::new();
                let docs = children.get(&t.key()).map(Vec::as_slice).unwrap_or(&[]);
                for doc in docs {
                    let mut obj = doc.clone();
                    if !is_service_account(&obj) {
                        obj.metadata.owner_references = owner.clone().map(|o| vec![o]);
                    }
                    if let Some(subject) = obj.data.pointer("/spec/subject") {
                        subjects.push(json!({
                            "subject": subject,
                            "credentialName": obj.name_any(),
                            "state": "Ready",
                        }));
                    }
                    objects::dynamic(client, &t.ns, &resource_of(&obj)?)
                        .patch(&obj.name_any(), &apply, &Patch::Apply(&obj))
                        .await
                        .with_context(|| format!("bare apply of {}", obj.name_any()))?;
                }
                let generation = ti.metadata.generation.unwrap_or(1);
                let condition = |type_: &str| {
                    json!({
                        "type": type_, "status": "True", "reason": "Succeeded",
                        "message": "", "observedGeneration": generation,
                        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                };
                let conditions =
                    ["Ready", "HostSyncReady", "FederatedCredentialsReady", "GitSourceReady"]
                        .map(condition);
                let status = json!({
                    "apiVersion": TenantIdentity::api_version(&()),
                    "kind": TenantIdentity::kind(&()),
                    "status": {
                        "observedGeneration": generation,
                        "conditions": conditions,
                        "subjects": subjects,
                        "hostServiceAccounts": [format!("vc-workload-{}", t.name)],
                    },
                });
                tenants
                    .patch_status(&t.name, &apply, &Patch::Apply(&status))
                    .await
                    .with_context(|| format!("bare status of {}/{}", t.ns, t.name))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Delete the baseline's namespaces (and so its tenants and children) and wait until they are
/// gone, so the operator never sees them.
async fn remove_namespaces(client: &Client, namespaces: Vec<TestNamespace>) {
    let names: Vec<String> = namespaces.iter().map(|n| n.name().to_string()).collect();
    futures::future::join_all(namespaces.into_iter().map(TestNamespace::cleanup)).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    for name in names {
        while let Ok(Some(_)) = api.get_opt(&name).await {
            if Instant::now() > deadline {
                eprintln!("warning: namespace {name} is still there; the operator will see it");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Children with the tenant label, in every namespace.
async fn count_children(client: &Client) -> anyhow::Result<usize> {
    let mut count = 0;
    for resource in objects::child_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        count += api
            .list_metadata(&ListParams::default().labels(TENANT_LABEL))
            .await?
            .items
            .len();
    }
    Ok(count)
}

/// Create every tenant (at most [`CONCURRENCY`] at once) and play ASO for each once it exists;
/// returns the time until every child exists and until every tenant is Ready.
async fn converge_fleet(
    client: &Client,
    fleet: &[Tenant],
    expected_children: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let (created_tx, created_rx) = tokio::sync::mpsc::unbounded_channel::<Tenant>();
    // The sender lives in the stream: once every tenant is created, the ASO player's stream ends.
    let create = stream::iter(fleet.iter().cloned())
        .map(move |t| {
            let created_tx = created_tx.clone();
            async move {
                objects::tenants(client, &t.ns)
                    .create(
                        &PostParams::default(),
                        &objects::tenant_identity(&t.ns, &t.name, t.spec())?,
                    )
                    .await
                    .with_context(|| format!("cannot create {}/{}", t.ns, t.name))?;
                let _ = created_tx.send(t);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>();
    let ready = stream::unfold(created_rx, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    })
    .map(|t| async move {
        simulate::converge(client, &t.ns, &t.name, PHASE_TIMEOUT).await?;
        anyhow::Ok(())
    })
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>();
    let children = async {
        loop {
            if count_children(client).await? >= expected_children {
                return anyhow::Ok(start.elapsed());
            }
            anyhow::ensure!(
                start.elapsed() < PHASE_TIMEOUT,
                "children never all appeared"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let ready = async {
        ready.await?;
        anyhow::Ok(start.elapsed())
    };
    let (created, all_children, all_ready) = tokio::join!(create, children, ready);
    created?;
    Ok((all_children?, all_ready?))
}

/// Force a reconcile of every tenant with nothing to do, as the periodic resync (or any change
/// that alters neither spec nor children) does: annotate each with a bench-only annotation and
/// wait until the operator has reconciled as many times as there are tenants. (A
/// `reconcile.fluxcd.io/requestedAt` request would cost one status write per tenant on top,
/// by design: `status.lastHandledReconcileAt` records it.)
async fn resync(
    client: &Client,
    fleet: &[Tenant],
    token: &str,
    operator: &Operator,
) -> anyhow::Result<()> {
    let before = OperatorMetrics::scrape(operator).await?.reconciles;
    stream::iter(fleet)
        .map(|t| async move {
            objects::tenants(client, &t.ns)
                .patch(
                    &t.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {RESYNC_ANNOTATION: token}}})),
                )
                .await
                .with_context(|| format!("cannot annotate {}/{}", t.ns, t.name))?;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let start = Instant::now();
    loop {
        let done = OperatorMetrics::scrape(operator).await?.reconciles - before;
        if done >= fleet.len() as f64 {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < PHASE_TIMEOUT,
            "only {done} reconciles for {} tenants on resync",
            fleet.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The bench's own annotation: a change of the object that asks for nothing.
const RESYNC_ANNOTATION: &str = "bench.identity.tenancy.dev/resync";

/// Wait until the operator neither reconciles nor sends a request for [`SETTLE`].
async fn settle(operator: &Operator) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = OperatorMetrics::scrape(operator).await?.activity();
    let mut since = Instant::now();
    while since.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = OperatorMetrics::scrape(operator).await?.activity();
        if now != last {
            last = now;
            since = Instant::now();
        }
        if start.elapsed() > PHASE_TIMEOUT {
            eprintln!("warning: the operator never settled");
            break;
        }
    }
    Ok(())
}

/// What the bench reads from the operator's `/metrics`.
struct OperatorMetrics {
    reconciles: f64,
    successes: f64,
    requests: BTreeMap<String, f64>,
    /// `(le, cumulative count)` of the reconcile duration histogram.
    buckets: Vec<(f64, f64)>,
}

impl OperatorMetrics {
    async fn scrape(operator: &Operator) -> anyhow::Result<Self> {
        let samples = parse_exposition(&operator.metrics().await?);
        let mut metrics = Self {
            reconciles: 0.0,
            successes: 0.0,
            requests: BTreeMap::new(),
            buckets: Vec::new(),
        };
        for s in samples {
            match s.name.as_str() {
                "tenant_identity_reconcile_total" => {
                    metrics.reconciles += s.value;
                    if s.labels.get("result").map(String::as_str) == Some("success") {
                        metrics.successes += s.value;
                    }
                }
                "tenant_identity_api_requests_total" => {
                    if let Some(verb) = s.labels.get("verb") {
                        *metrics.requests.entry(verb.clone()).or_default() += s.value;
                    }
                }
                "tenant_identity_reconcile_duration_seconds_bucket" => {
                    let le = s
                        .labels
                        .get("le")
                        .and_then(|l| l.replace("+Inf", "inf").parse::<f64>().ok());
                    if let Some(le) = le {
                        metrics.buckets.push((le, s.value));
                    }
                }
                _ => {}
            }
        }
        metrics.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(metrics)
    }

    /// Changes whenever the operator reconciles or sends a request.
    fn activity(&self) -> (u64, u64) {
        (
            self.reconciles as u64,
            self.requests.values().sum::<f64>() as u64,
        )
    }

    fn requests_since(&self, before: &Self) -> BTreeMap<String, f64> {
        self.requests
            .iter()
            .map(|(verb, n)| {
                let was = before.requests.get(verb).copied().unwrap_or(0.0);
                (verb.clone(), n - was)
            })
            .collect()
    }

    fn histogram_since(&self, before: &Self) -> Histogram {
        Histogram(
            self.buckets
                .iter()
                .map(|(le, n)| {
                    let was = before
                        .buckets
                        .iter()
                        .find(|(l, _)| l == le)
                        .map_or(0.0, |(_, n)| *n);
                    (*le, n - was)
                })
                .collect(),
        )
    }
}

/// Cumulative buckets `(le, count)`, sorted by `le`, the last `+Inf`.
struct Histogram(Vec<(f64, f64)>);

/// A quantile from buckets: interpolated within its bucket (as PromQL's `histogram_quantile`),
/// with the bucket's upper bound; `open` when it falls in the `+Inf` bucket.
#[derive(Clone, Copy, Debug)]
struct Quantile {
    estimate: f64,
    upper: f64,
    open: bool,
}

impl Histogram {
    fn quantile(&self, q: f64) -> Option<Quantile> {
        let total = self.0.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.0 {
            if count >= rank {
                if le.is_infinite() {
                    return Some(Quantile {
                        estimate: lower.0,
                        upper: lower.0,
                        open: true,
                    });
                }
                let in_bucket = count - lower.1;
                let fraction = if in_bucket > 0.0 {
                    (rank - lower.1) / in_bucket
                } else {
                    1.0
                };
                return Some(Quantile {
                    estimate: lower.0 + (le - lower.0) * fraction,
                    upper: le,
                    open: false,
                });
            }
            lower = (le, count);
        }
        None
    }
}

fn show_quantile(q: Option<Quantile>) -> String {
    match q {
        None => "no reconciles".into(),
        Some(q) if q.open => format!("> {:.0} ms", q.upper * 1000.0),
        Some(q) => format!(
            "~{:.0} ms (<= {:.0} ms)",
            q.estimate * 1000.0,
            q.upper * 1000.0
        ),
    }
}

fn show_verbs(requests: &BTreeMap<String, f64>, n: usize) -> String {
    let total: f64 = requests.values().sum();
    let parts: Vec<String> = requests
        .iter()
        .filter(|(_, v)| **v > 0.0)
        .map(|(verb, v)| format!("{verb} {:.2}", v / n as f64))
        .collect();
    format!("{:.2} total: {}", total / n as f64, parts.join(", "))
}

/// `verb resource` → count.
type ByResource = BTreeMap<(String, String), u64>;

fn show_resources(counts: Option<&ByResource>, n: usize) -> String {
    let Some(counts) = counts else {
        return "none".into();
    };
    let total: u64 = counts.values().sum();
    let parts: Vec<String> = counts
        .iter()
        .map(|((verb, resource), v)| format!("{verb} {resource} {:.2}", *v as f64 / n as f64))
        .collect();
    format!("{:.2} total: {}", total as f64 / n as f64, parts.join(", "))
}

fn show_server(counts: &ByResource, n: usize) -> String {
    show_resources(Some(counts), n)
}

/// The API server's `apiserver_request_total` by `(verb, resource[/subresource])`.
async fn server_counts(cluster: &Cluster) -> ByResource {
    let mut out = ByResource::new();
    match cluster.api_request_counts().await {
        Ok(counts) => {
            for (labels, n) in counts.iter() {
                if labels.resource.is_empty() {
                    continue;
                }
                let resource = if labels.subresource.is_empty() {
                    labels.resource.clone()
                } else {
                    format!("{}/{}", labels.resource, labels.subresource)
                };
                *out.entry((labels.verb.clone(), resource)).or_default() += n;
            }
        }
        Err(e) => eprintln!("warning: no API server request counts: {e:#}"),
    }
    out
}

fn diff(after: &ByResource, before: &ByResource) -> ByResource {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The emulator's audit record of this process: every request with its `User-Agent`.
struct AuditLog(PathBuf);

impl AuditLog {
    fn find(cluster: &Cluster) -> Option<Self> {
        if !cluster.is_emulated() {
            return None;
        }
        let prefix = format!("audit-{}-", std::process::id());
        std::fs::read_dir(audit_dir())
            .ok()?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&prefix))
            })
            .max()
            .map(Self)
    }

    fn offset(&self) -> u64 {
        std::fs::metadata(&self.0).map_or(0, |m| m.len())
    }

    fn read(&self, from: u64) -> anyhow::Result<HashMap<bool, ByResource>> {
        self.read_between(from, u64::MAX)
    }

    /// Requests recorded between two offsets, the operator's (`true`) and the others'.
    fn read_between(&self, from: u64, to: u64) -> anyhow::Result<HashMap<bool, ByResource>> {
        let bytes =
            std::fs::read(&self.0).with_context(|| format!("cannot read {}", self.0.display()))?;
        let end = usize::try_from(to).unwrap_or(usize::MAX).min(bytes.len());
        let start = usize::try_from(from).unwrap_or(usize::MAX).min(end);
        let mut out: HashMap<bool, ByResource> = HashMap::new();
        for line in bytes[start..end].split(|b| *b == b'\n') {
            let Ok(entry) = serde_json::from_slice::<Value>(line) else {
                continue;
            };
            let Some(object) = entry.get("objectRef") else {
                continue;
            };
            let mut resource = text(object.get("resource")).to_string();
            let sub = text(object.get("subresource"));
            if !sub.is_empty() {
                resource = format!("{resource}/{sub}");
            }
            let verb = text(entry.get("verb")).to_string();
            let operator = text(entry.get("userAgent")).starts_with(OPERATOR_AGENT);
            *out.entry(operator)
                .or_default()
                .entry((verb, resource))
                .or_default() += 1;
        }
        Ok(out)
    }
}

fn text(v: Option<&Value>) -> &str {
    v.and_then(Value::as_str).unwrap_or_default()
}

/// The operator process as `/proc` shows it.
#[derive(Clone, Copy, Debug, Default)]
struct ProcSample {
    rss_kib: u64,
    hwm_kib: u64,
    fds: usize,
}

fn proc_sample(pid: u32) -> Option<ProcSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    Some(ProcSample {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        fds,
    })
}

/// Samples `/proc/<pid>` every 100 ms and keeps the peaks.
struct ProcSampler {
    pid: Option<u32>,
    peak: Arc<Mutex<Option<ProcSample>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ProcSampler {
    fn start(pid: Option<u32>) -> Self {
        let peak = Arc::new(Mutex::new(None));
        let task = pid.map(|pid| {
            let peak = peak.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(s) = proc_sample(pid) {
                        let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
                        let p = peak.get_or_insert(s);
                        p.rss_kib = p.rss_kib.max(s.rss_kib);
                        p.hwm_kib = p.hwm_kib.max(s.hwm_kib);
                        p.fds = p.fds.max(s.fds);
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        });
        Self { pid, peak, task }
    }

    fn now(&self) -> Option<ProcSample> {
        self.pid.and_then(proc_sample)
    }

    fn stop(mut self) -> Option<ProcSample> {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        *self.peak.lock().unwrap_or_else(|p| p.into_inner())
    }
}
