//! Prometheus metrics. Label values are bounded sets (results, reasons, condition types,
//! operations, HTTP codes); never object names.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tenant_identity_crd::conditions::ALL_TYPES;

use crate::azure::AzureRequestMetrics;

pub struct Metrics {
    registry: Registry,
    pub reconcile_total: IntCounterVec,
    pub reconcile_errors: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    pub objects: IntGaugeVec,
    pub watch_errors: IntCounterVec,
    pub watch_healthy: IntGaugeVec,
    pub azure: AzureRequestMetrics,
}

/// Every kind the controller watches: the metric label of its watch.
pub fn watched_kinds() -> Vec<&'static str> {
    let mut kinds = vec!["TenantIdentity", "ServiceAccount", "Namespace"];
    for kind in tenant_identity_crd::kinds::ChildKind::all() {
        if !kinds.contains(&kind.kind_name()) {
            kinds.push(kind.kind_name());
        }
    }
    for kind in tenant_identity_crd::kinds::ObservedKind::all() {
        if !kinds.contains(&kind.kind_name()) {
            kinds.push(kind.kind_name());
        }
    }
    kinds
}

pub const RESULT_SUCCESS: &str = "success";
pub const RESULT_ERROR: &str = "error";

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let reconcile_total = IntCounterVec::new(
            Opts::new(
                "tenant_identity_reconcile_total",
                "Reconciliations by result.",
            ),
            &["result"],
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "tenant_identity_reconcile_errors_total",
                "Failed reconciliations by error reason.",
            ),
            &["reason"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "tenant_identity_reconcile_duration_seconds",
                "Duration of one reconciliation.",
            )
            .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &[],
        )?;
        let objects = IntGaugeVec::new(
            Opts::new(
                "tenant_identity_objects",
                "TenantIdentities by condition type and status.",
            ),
            &["condition", "status"],
        )?;
        registry.register(Box::new(reconcile_total.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(objects.clone()))?;
        let watch_errors = IntCounterVec::new(
            Opts::new(
                "tenant_identity_watch_errors_total",
                "Errors of the controller's watches of the API server, by watched kind.",
            ),
            &["kind"],
        )?;
        let watch_healthy = IntGaugeVec::new(
            Opts::new(
                "tenant_identity_watch_healthy",
                "1 while the watch of a kind has a live, synced stream; 0 while it lists or fails.",
            ),
            &["kind"],
        )?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(watch_healthy.clone()))?;
        for kind in watched_kinds() {
            watch_errors.with_label_values(&[kind]);
            watch_healthy.with_label_values(&[kind]);
        }
        let azure = AzureRequestMetrics::register(&registry)?;

        // Series exist from the first scrape, so `rate()` and alerts see a zero, not a gap.
        for result in [RESULT_SUCCESS, RESULT_ERROR] {
            reconcile_total.with_label_values(&[result]);
        }
        for reason in crate::error::Error::own_reasons().chain(crate::backends::all_reasons()) {
            reconcile_errors.with_label_values(&[reason]);
        }
        for condition in ALL_TYPES {
            for status in ["True", "False", "Unknown"] {
                objects.with_label_values(&[condition, status]);
            }
        }
        reconcile_duration.with_label_values(&[] as &[&str]);
        Ok(Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_duration,
            objects,
            watch_errors,
            watch_healthy,
            azure,
        })
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Replace the object gauges with counts from the current cache.
    pub fn set_objects<'a>(
        &self,
        conditions: impl IntoIterator<
            Item = &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        >,
    ) {
        let mut counts = std::collections::BTreeMap::<(&str, &str), i64>::new();
        for list in conditions {
            for c in list {
                let Some(t) = ALL_TYPES.iter().find(|t| **t == c.type_) else {
                    continue;
                };
                let s = match c.status.as_str() {
                    "True" => "True",
                    "False" => "False",
                    _ => "Unknown",
                };
                *counts.entry((*t, s)).or_default() += 1;
            }
        }
        for condition in ALL_TYPES {
            for status in ["True", "False", "Unknown"] {
                let n = counts.get(&(condition, status)).copied().unwrap_or(0);
                self.objects.with_label_values(&[condition, status]).set(n);
            }
        }
    }
}
