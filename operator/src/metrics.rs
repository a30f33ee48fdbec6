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
    pub api_requests: IntCounterVec,
    pub watch_errors: IntCounterVec,
    pub watch_healthy: IntGaugeVec,
    pub verifications: IntCounterVec,
    pub verification_duration: HistogramVec,
    pub azure: AzureRequestMetrics,
    /// When the object gauges were last recounted (milliseconds since `started`).
    objects_counted_at: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

/// How often the object gauges are recounted from the cache at most.
const OBJECTS_RECOUNT_MS: u64 = 1000;

/// The verbs of `tenant_identity_api_requests_total`, as kube-apiserver's request metrics spell
/// them: a GET of a collection is a LIST (a WATCH with `watch=true`), a server-side apply is an
/// APPLY.
pub const API_VERBS: [&str; 8] = [
    "GET", "LIST", "WATCH", "POST", "PUT", "PATCH", "APPLY", "DELETE",
];

/// The verb of a request to the API server, for `tenant_identity_api_requests_total`.
pub fn api_verb(
    method: &http::Method,
    uri: &http::Uri,
    content_type: Option<&str>,
) -> &'static str {
    match *method {
        http::Method::GET | http::Method::HEAD => {
            let watch = uri.query().is_some_and(|q| {
                q.split('&')
                    .any(|kv| kv == "watch=true" || kv == "watch=1" || kv == "watch")
            });
            if watch {
                "WATCH"
            } else if is_collection(uri.path()) {
                "LIST"
            } else {
                "GET"
            }
        }
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH
            if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) =>
        {
            "APPLY"
        }
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        _ => "GET",
    }
}

/// `/api/v1[/namespaces/{ns}]/{plural}` or `/apis/{g}/{v}[/namespaces/{ns}]/{plural}`.
fn is_collection(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let rest = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        _ => return false,
    };
    match rest {
        ["namespaces", _ns, plural] => !plural.is_empty(),
        [plural] => !plural.is_empty(),
        _ => false,
    }
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
            // From a cached no-op (about a millisecond) to a flooded API server (minutes).
            .buckets(vec![
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                120.0, 300.0,
            ]),
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
        let api_requests = IntCounterVec::new(
            Opts::new(
                "tenant_identity_api_requests_total",
                "Requests the operator sent to the Kubernetes API server, by verb (as kube-apiserver's apiserver_request_total spells it).",
            ),
            &["verb"],
        )?;
        registry.register(Box::new(api_requests.clone()))?;
        for verb in API_VERBS {
            api_requests.with_label_values(&[verb]);
        }
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
        let verifications = IntCounterVec::new(
            Opts::new(
                "tenant_identity_verifications_total",
                "End-to-end checks by kind (exchange: a subject's token at Entra; git: the Flux identity at the git server) and result (the condition reason).",
            ),
            &["kind", "result"],
        )?;
        let verification_duration = HistogramVec::new(
            HistogramOpts::new(
                "tenant_identity_verification_duration_seconds",
                "Duration of one check: TokenRequest plus exchange (exchange), or the DevOps exchange plus the git request (git).",
            )
            .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["kind"],
        )?;
        registry.register(Box::new(verifications.clone()))?;
        registry.register(Box::new(verification_duration.clone()))?;
        for kind in [
            crate::verify::answers::KIND_EXCHANGE,
            crate::verify::answers::KIND_GIT,
        ] {
            for result in crate::verify::answers::results(kind) {
                verifications.with_label_values(&[kind, result]);
            }
            verification_duration.with_label_values(&[kind]);
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
            api_requests,
            watch_errors,
            watch_healthy,
            verifications,
            verification_duration,
            azure,
            objects_counted_at: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        })
    }

    /// Prometheus text exposition of every registered metric.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }

    /// Whether the object gauges are due for a recount (at most once a second; the first call
    /// always is). Claims the recount: concurrent callers get false.
    pub fn objects_due(&self) -> bool {
        use std::sync::atomic::Ordering;
        let now = u64::try_from(self.started.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let last = self.objects_counted_at.load(Ordering::Relaxed);
        (last == 0 || now.saturating_sub(last) >= OBJECTS_RECOUNT_MS)
            && self
                .objects_counted_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_spelled_as_the_api_server_counts_them() {
        let v = |m: &str, uri: &str, ct: Option<&str>| {
            api_verb(&m.parse().expect("method"), &uri.parse().expect("uri"), ct)
        };
        assert_eq!(v("GET", "/api/v1/namespaces/a/configmaps", None), "LIST");
        assert_eq!(v("GET", "/api/v1/namespaces/a/configmaps/x", None), "GET");
        assert_eq!(
            v(
                "GET",
                "/api/v1/configmaps?watch=true&resourceVersion=1",
                None
            ),
            "WATCH"
        );
        assert_eq!(
            v(
                "GET",
                "/apis/identity.tenancy.dev/v1alpha1/tenantidentities",
                None
            ),
            "LIST"
        );
        assert_eq!(v("GET", "/.well-known/openid-configuration", None), "GET");
        assert_eq!(
            v(
                "PATCH",
                "/api/v1/namespaces/a/configmaps/x",
                Some("application/apply-patch+yaml")
            ),
            "APPLY"
        );
        assert_eq!(
            v(
                "PATCH",
                "/api/v1/namespaces/a/configmaps/x",
                Some("application/merge-patch+json")
            ),
            "PATCH"
        );
        assert_eq!(v("POST", "/api/v1/namespaces/a/configmaps", None), "POST");
        assert_eq!(
            v("DELETE", "/api/v1/namespaces/a/configmaps/x", None),
            "DELETE"
        );
        for verb in API_VERBS {
            assert!(verb.chars().all(|c| c.is_ascii_uppercase()));
        }
    }
}
