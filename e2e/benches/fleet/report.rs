//! The report: the details and the table of the scale goals.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use crate::metrics::{AuditLog, ByResource, OPERATOR_AGENT, OperatorMetrics, Quantile};
use crate::procfs::ProcSample;

/// The goals of the scale issue.
const TARGET_RATIO: f64 = 1.2;
const TARGET_RECONCILES: f64 = 2.0;
const TARGET_RSS_MIB: f64 = 48.0;
const TARGET_RSS_AT: usize = 5_000;
const TARGET_P99_SECONDS: f64 = 0.05;

/// What one run measured, for [`print`].
pub(crate) struct Report<'a> {
    pub(crate) n: usize,
    pub(crate) build: &'static str,
    pub(crate) audit: Option<&'a AuditLog>,
    pub(crate) bare: Duration,
    pub(crate) bare_requests: ByResource,
    pub(crate) bare_by_agent: Option<HashMap<bool, ByResource>>,
    pub(crate) all_children: Duration,
    pub(crate) all_ready: Duration,
    pub(crate) settled: Duration,
    pub(crate) resynced: Duration,
    pub(crate) idle: Option<ProcSample>,
    pub(crate) converged_proc: Option<ProcSample>,
    pub(crate) peak: Option<ProcSample>,
    pub(crate) m0: OperatorMetrics,
    pub(crate) m1: OperatorMetrics,
    pub(crate) m2: OperatorMetrics,
    pub(crate) op_converge: BTreeMap<String, f64>,
    pub(crate) op_resync: BTreeMap<String, f64>,
    pub(crate) server_converge: ByResource,
    pub(crate) server_resync: ByResource,
    pub(crate) audit_converge: Option<HashMap<bool, ByResource>>,
    pub(crate) audit_resync: Option<HashMap<bool, ByResource>>,
}

/// Print the details, then the table of the goals.
pub(crate) fn print(report: Report<'_>) {
    let Report {
        n,
        build,
        audit,
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
    } = report;
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
