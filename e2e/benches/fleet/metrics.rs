//! What the bench reads: the operator's `/metrics`, the API server's request counts and the
//! emulator's audit record.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
};

use anyhow::Context as _;
use serde_json::Value;
use tenant_identity_e2e::{Cluster, Operator, cluster::audit_dir, operator::parse_exposition};

/// The operator's `User-Agent` starts with this.
pub(crate) const OPERATOR_AGENT: &str = "tenant-identity-operator/";

/// What the bench reads from the operator's `/metrics`.
pub(crate) struct OperatorMetrics {
    pub(crate) reconciles: f64,
    pub(crate) successes: f64,
    requests: BTreeMap<String, f64>,
    /// `(le, cumulative count)` of the reconcile duration histogram.
    buckets: Vec<(f64, f64)>,
}

impl OperatorMetrics {
    pub(crate) async fn scrape(operator: &Operator) -> anyhow::Result<Self> {
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
    pub(crate) fn activity(&self) -> (u64, u64) {
        (
            self.reconciles as u64,
            self.requests.values().sum::<f64>() as u64,
        )
    }

    pub(crate) fn requests_since(&self, before: &Self) -> BTreeMap<String, f64> {
        self.requests
            .iter()
            .map(|(verb, n)| {
                let was = before.requests.get(verb).copied().unwrap_or(0.0);
                (verb.clone(), n - was)
            })
            .collect()
    }

    pub(crate) fn histogram_since(&self, before: &Self) -> Histogram {
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
pub(crate) struct Histogram(Vec<(f64, f64)>);

/// A quantile from buckets: interpolated within its bucket (as PromQL's `histogram_quantile`),
/// with the bucket's upper bound; `open` when it falls in the `+Inf` bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quantile {
    pub(crate) estimate: f64,
    pub(crate) upper: f64,
    pub(crate) open: bool,
}

impl Histogram {
    pub(crate) fn quantile(&self, q: f64) -> Option<Quantile> {
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

/// `verb resource` → count.
pub(crate) type ByResource = BTreeMap<(String, String), u64>;

/// The API server's `apiserver_request_total` by `(verb, resource[/subresource])`.
pub(crate) async fn server_counts(cluster: &Cluster) -> ByResource {
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

pub(crate) fn diff(after: &ByResource, before: &ByResource) -> ByResource {
    after
        .iter()
        .filter_map(|(k, n)| {
            let d = n.saturating_sub(before.get(k).copied().unwrap_or(0));
            (d > 0).then(|| (k.clone(), d))
        })
        .collect()
}

/// The emulator's audit record of this process: every request with its `User-Agent`.
pub(crate) struct AuditLog(PathBuf);

impl AuditLog {
    pub(crate) fn find(cluster: &Cluster) -> Option<Self> {
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

    pub(crate) fn offset(&self) -> u64 {
        std::fs::metadata(&self.0).map_or(0, |m| m.len())
    }

    pub(crate) fn read(&self, from: u64) -> anyhow::Result<HashMap<bool, ByResource>> {
        self.read_between(from, u64::MAX)
    }

    /// Requests recorded between two offsets, the operator's (`true`) and the others'.
    pub(crate) fn read_between(
        &self,
        from: u64,
        to: u64,
    ) -> anyhow::Result<HashMap<bool, ByResource>> {
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
