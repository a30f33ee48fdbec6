//! Prometheus metrics. Label values are bounded sets (results, reasons, condition types,
//! operations, HTTP codes); never object names.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tenant_identity_crd::{
    conditions::ALL_TYPES,
    kinds::{ChildKind, ObservedKind},
};

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

/// One watch of the controller run; its `kind()` is the `kind` label of
/// `tenant_identity_watch_errors_total` and `tenant_identity_watch_healthy`.
///
/// The list of watches is this type: `controller::run` starts each through
/// `WatchHealth::track(Watched, ..)`, which creates its series, so a series exists only for a
/// watch that was started, and no label can be spelled apart from the watch it names. A watch
/// the run skips (a kind the cluster does not serve, namespaces without
/// `--require-namespace-grant`) has no series, rather than a 0 that would read as a failing
/// watch (`TenantIdentityWatchFailing`) forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Watched {
    /// The TenantIdentities.
    Tenants,
    /// The operator's children of one API kind (selected on the managed-by label); the first
    /// child kind in apply order of each API resource with its own watch ([`Watched::owned`]).
    Owned(ChildKind),
    /// Every host ServiceAccount (metadata only): the vcluster's, and the `<name>-git` children.
    HostServiceAccounts,
    /// Another controller's objects that decide a condition (the vcluster's HelmRelease).
    Observed(ObservedKind),
    /// Azure Service Operator's UserAssignedIdentities (their status.clientId).
    Identities,
    /// Namespaces, for `--require-namespace-grant`.
    Namespaces,
}

impl Watched {
    /// The label: the watched kind as the API server spells it.
    pub fn kind(self) -> &'static str {
        match self {
            Watched::Tenants => "TenantIdentity",
            Watched::Owned(kind) => kind.kind_name(),
            Watched::HostServiceAccounts => "ServiceAccount",
            Watched::Observed(kind) => kind.kind_name(),
            Watched::Identities => "UserAssignedIdentity",
            Watched::Namespaces => "Namespace",
        }
    }

    /// Started by every controller run, whatever the cluster serves and the flags say: the
    /// core kinds. The others come from CRDs that may not be installed (Flux, ASO) or from a
    /// flag (namespaces), and `controller::run` starts them only when they apply.
    pub fn always_started(self) -> bool {
        match self {
            Watched::Tenants | Watched::HostServiceAccounts => true,
            Watched::Owned(kind) => kind.is_builtin(),
            Watched::Observed(_) | Watched::Identities | Watched::Namespaces => false,
        }
    }

    /// The child kinds that get a watch of their own (`children::watch` says `Owned`), one per
    /// API resource: two child kinds of one resource share its watch.
    pub fn owned() -> Vec<ChildKind> {
        let mut kinds: Vec<ChildKind> = Vec::new();
        for kind in ChildKind::all() {
            let resource = kind.api_resource();
            let seen = kinds.iter().any(|k| {
                let r = k.api_resource();
                r.api_version == resource.api_version && r.kind == resource.kind
            });
            if crate::children::watch(kind) == crate::children::Watch::Owned && !seen {
                kinds.push(kind);
            }
        }
        kinds
    }

    /// Every watch a controller run may start, in the order it starts them.
    pub fn all() -> Vec<Watched> {
        let mut all = vec![Watched::Tenants];
        all.extend(Watched::owned().into_iter().map(Watched::Owned));
        all.push(Watched::HostServiceAccounts);
        all.extend(ObservedKind::all().map(Watched::Observed));
        all.extend([Watched::Identities, Watched::Namespaces]);
        all
    }
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
        // Only the watches every run starts have series before a run has started them: a
        // replica that is not running the controller (a standby, or before it leads) has no
        // live watch of them, which is what 0 says; the alert takes the max over replicas. Other
        // watches get their series when a run starts them (`WatchHealth::track`).
        for watch in Watched::all().into_iter().filter(|w| w.always_started()) {
            watch_errors.with_label_values(&[watch.kind()]);
            watch_healthy.with_label_values(&[watch.kind()]);
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

    #[test]
    fn every_watch_has_one_label_spelled_as_its_kind() {
        use kube::Resource;
        let all = Watched::all();
        let labels: std::collections::BTreeSet<&str> = all.iter().map(|w| w.kind()).collect();
        assert_eq!(labels.len(), all.len(), "one label per watch: {all:?}");
        // The labels the resources spell themselves, so a renamed kind cannot leave its label.
        assert_eq!(
            Watched::Tenants.kind(),
            tenant_identity_crd::TenantIdentity::kind(&())
        );
        assert_eq!(
            Watched::HostServiceAccounts.kind(),
            crate::children::host_service_account::resource().kind
        );
        assert_eq!(
            Watched::Identities.kind(),
            tenant_identity_crd::kinds::aso_user_assigned_identity().kind
        );
        assert_eq!(
            Watched::Namespaces.kind(),
            <k8s_openapi::api::core::v1::Namespace as k8s_openapi::Resource>::KIND
        );
        for kind in
            ChildKind::all().filter(|k| crate::children::watch(*k) == crate::children::Watch::Owned)
        {
            assert!(labels.contains(kind.kind_name()), "{kind:?} has a watch");
        }
        for kind in ObservedKind::all() {
            assert!(
                all.contains(&Watched::Observed(kind)),
                "{kind:?} has a watch"
            );
        }
        assert!(labels.contains("UserAssignedIdentity"));
        assert_eq!(
            Watched::owned().len(),
            Watched::owned()
                .iter()
                .map(|k| k.api_resource().plural)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            "one watch per API resource"
        );
    }

    /// Before any run has started a watch, only the watches every run starts have series: a
    /// kind the cluster may not serve, or namespaces without the flag, must not read as failing.
    #[test]
    fn only_the_always_started_watches_have_series_from_the_start() {
        let metrics = Metrics::new().expect("metrics");
        let text = metrics.render().expect("render");
        let kinds = |metric: &str| -> Vec<String> {
            text.lines()
                .filter_map(|l| {
                    l.strip_prefix(metric)?
                        .strip_prefix("{kind=\"")?
                        .split('"')
                        .next()
                })
                .map(str::to_string)
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        for metric in [
            "tenant_identity_watch_healthy",
            "tenant_identity_watch_errors_total",
        ] {
            assert_eq!(
                kinds(metric),
                ["ConfigMap", "ServiceAccount", "TenantIdentity"],
                "{metric}:\n{text}"
            );
        }
    }
}
