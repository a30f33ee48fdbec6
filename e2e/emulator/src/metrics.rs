//! `apiserver_request_total`, counted and labelled the way kube-apiserver does, served at
//! `/metrics` in the Prometheus text format and readable by tests without a scrape
//! ([`crate::Emulator::request_counts`]).
//!
//! What follows kube-apiserver (its endpoint metrics package: the request counter's
//! definition, `MonitorRequest`, `CleanScope`, `CanonicalVerb`, `CleanVerb` and
//! `cleanDryRun`, and the API installer's per-route request scope):
//! - the labels are `verb`, `dry_run`, `group`, `version`, `resource`, `subresource`, `scope`,
//!   `component` and `code`;
//! - `verb` is the HTTP method in upper case, except that a GET (or HEAD) of a collection is
//!   `LIST`, a GET with a `watch` parameter other than `0`/`false` is `WATCH`, a PATCH whose
//!   `Content-Type` is exactly `application/apply-patch+yaml` is `APPLY`, and a method outside
//!   the known ones is `other`. So creates are `POST` and updates are `PUT`;
//! - `scope` is `resource` for a request naming an object and for every POST, `namespace` for
//!   a namespaced collection in one namespace, `cluster` for a cluster-scoped collection or
//!   one across all namespaces;
//! - `component` is `apiserver` for resource requests; `dry_run` is the sorted, de-duplicated
//!   `dryRun` values (`invalid` for any but `All`);
//! - a request is counted when its handler returns, so a watch is counted when it ends;
//! - non-resource requests have empty group, version, resource and scope and carry the path
//!   in `subresource`, as the health checks (component empty) and discovery (component
//!   `apiserver`) record themselves; `/metrics` itself is not counted (kube-apiserver's
//!   metrics handler is not instrumented).
//!
//! The counters live as long as the emulator's "process": [`crate::Emulator::restart`] starts
//! them at zero, as a restarted kube-apiserver does.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, Uri, header};

use crate::resource_path::resource_path;

/// The metric's name.
pub const REQUEST_TOTAL: &str = "apiserver_request_total";
const HELP: &str = "[STABLE] Counter of apiserver requests broken out for each verb, dry run \
                    value, group, version, resource, scope, component, and HTTP response code.";
/// The `Content-Type` of the text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The verbs kube-apiserver reports; any other is reported as `other`.
const VALID_VERBS: &[&str] = &[
    "APPLY",
    "CONNECT",
    "CREATE",
    "DELETE",
    "DELETECOLLECTION",
    "GET",
    "LIST",
    "PATCH",
    "POST",
    "PROXY",
    "PUT",
    "UPDATE",
    "WATCH",
    "WATCHLIST",
];
const APPLY_CONTENT_TYPE: &str = "application/apply-patch+yaml";

/// The labels of one `apiserver_request_total` series, named as kube-apiserver names them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestLabels {
    /// `GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `APPLY`, `DELETE` or `other`.
    pub verb: String,
    pub dry_run: String,
    /// The API group; empty for the core group.
    pub group: String,
    pub version: String,
    /// The resource's plural, e.g. `configmaps`.
    pub resource: String,
    /// `status`, `token`; for a non-resource request, its path.
    pub subresource: String,
    /// `resource`, `namespace`, `cluster`, or empty for a non-resource request.
    pub scope: String,
    pub component: String,
    /// The HTTP status code, e.g. `200`.
    pub code: String,
}

impl RequestLabels {
    /// `(name, value)` pairs in the exposition's order (by name, as Prometheus' Go client
    /// writes them).
    pub fn pairs(&self) -> [(&'static str, &str); 9] {
        [
            ("code", &self.code),
            ("component", &self.component),
            ("dry_run", &self.dry_run),
            ("group", &self.group),
            ("resource", &self.resource),
            ("scope", &self.scope),
            ("subresource", &self.subresource),
            ("verb", &self.verb),
            ("version", &self.version),
        ]
    }
}

/// A snapshot of `apiserver_request_total`: every series and its count.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestCounts(BTreeMap<RequestLabels, u64>);

impl RequestCounts {
    /// Every series with its count, ordered by labels.
    pub fn iter(&self) -> impl Iterator<Item = (&RequestLabels, u64)> {
        self.0.iter().map(|(l, n)| (l, *n))
    }

    /// All requests counted.
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// The requests whose labels satisfy `keep`, e.g.
    /// `counts.sum(|l| l.verb == "APPLY" && l.resource == "configmaps")`.
    pub fn sum(&self, mut keep: impl FnMut(&RequestLabels) -> bool) -> u64 {
        self.0.iter().filter(|(l, _)| keep(l)).map(|(_, n)| n).sum()
    }

    /// The Prometheus text exposition of the metric, as `/metrics` serves it.
    pub fn exposition(&self) -> String {
        let mut out = format!("# HELP {REQUEST_TOTAL} {HELP}\n# TYPE {REQUEST_TOTAL} counter\n");
        for (labels, n) in &self.0 {
            let pairs: Vec<String> = labels
                .pairs()
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = writeln!(out, "{REQUEST_TOTAL}{{{}}} {n}", pairs.join(","));
        }
        out
    }
}

/// Counts from elsewhere, e.g. a real API server's scrape; series that repeat are summed.
impl FromIterator<(RequestLabels, u64)> for RequestCounts {
    fn from_iter<I: IntoIterator<Item = (RequestLabels, u64)>>(series: I) -> Self {
        let mut counts = BTreeMap::new();
        for (labels, n) in series {
            *counts.entry(labels).or_default() += n;
        }
        RequestCounts(counts)
    }
}

/// A label value escaped for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The counters of one emulator "process".
#[derive(Default)]
pub struct RequestCounter(Mutex<BTreeMap<RequestLabels, u64>>);

impl RequestCounter {
    pub fn record(&self, labels: RequestLabels) {
        let mut counts = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *counts.entry(labels).or_default() += 1;
    }

    pub fn snapshot(&self) -> RequestCounts {
        RequestCounts(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Counts one request when dropped: the watch response body carries it, so that a watch is
/// counted when it ends (whether it ran out, or its connection was cut).
pub struct CountOnDrop {
    counter: Arc<RequestCounter>,
    labels: Option<RequestLabels>,
}

impl CountOnDrop {
    pub fn new(counter: Arc<RequestCounter>, labels: RequestLabels) -> Self {
        CountOnDrop {
            counter,
            labels: Some(labels),
        }
    }
}

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        if let Some(labels) = self.labels.take() {
            self.counter.record(labels);
        }
    }
}

/// The labels of a request, all but `code`; `None` for a request that is not counted.
pub fn labels(method: &Method, uri: &Uri, headers: &HeaderMap) -> Option<RequestLabels> {
    let path = uri.path();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.as_slice() == ["metrics"] {
        return None;
    }
    let query: Vec<(String, String)> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    let values = |k: &str| -> Vec<&str> {
        query
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let method = method.as_str().to_ascii_uppercase();
    let resource = match segs.as_slice() {
        ["api", version, rest @ ..] => resource_path("", version, rest),
        ["apis", group, version, rest @ ..] => resource_path(group, version, rest),
        _ => None,
    };
    let mut labels = RequestLabels {
        dry_run: dry_run(&values("dryRun")),
        ..Default::default()
    };
    match resource {
        Some(r) => {
            labels.scope = if r.name.is_some() || method == "POST" {
                "resource"
            } else if r.namespace.is_some() {
                "namespace"
            } else {
                "cluster"
            }
            .into();
            labels.group = r.group.into();
            labels.version = r.version.into();
            labels.resource = r.plural.into();
            labels.subresource = r.subresource.unwrap_or_default().into();
            labels.component = "apiserver".into();
        }
        None => {
            labels.subresource = path.to_string();
            let discovery = matches!(segs.as_slice(), ["api" | "apis", ..]);
            if discovery {
                labels.component = "apiserver".into();
            }
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    labels.verb = verb(&method, &labels.scope, &values("watch"), content_type);
    Some(labels)
}

/// The reported verb (kube-apiserver's `CanonicalVerb`, then `CleanVerb`, then the check
/// against the known verbs).
fn verb(method: &str, scope: &str, watch: &[&str], content_type: Option<&str>) -> String {
    let mut verb = match method {
        "GET" | "HEAD" if !scope.is_empty() && scope != "resource" => "LIST",
        "HEAD" => "GET",
        m => m,
    };
    // A `watch` parameter counts unless its first value is `0` or `false`.
    let watching = watch
        .first()
        .is_some_and(|v| !v.eq_ignore_ascii_case("0") && !v.eq_ignore_ascii_case("false"));
    if (method == "GET" || method == "LIST") && watching {
        verb = "WATCH";
    }
    if verb == "WATCHLIST" {
        verb = "WATCH";
    }
    if verb == "PATCH" && content_type == Some(APPLY_CONTENT_TYPE) {
        verb = "APPLY";
    }
    if VALID_VERBS.contains(&verb) {
        verb.to_string()
    } else {
        "other".to_string()
    }
}

/// kube-apiserver's `cleanDryRun`: the values sorted and de-duplicated, `invalid` when any is
/// not `All`.
fn dry_run(values: &[&str]) -> String {
    if values.is_empty() {
        return String::new();
    }
    if values.iter().any(|v| *v != "All") {
        return "invalid".into();
    }
    let mut vs: Vec<&str> = values.to_vec();
    vs.sort_unstable();
    vs.dedup();
    vs.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(method: &str, uri: &str, content_type: Option<&str>) -> RequestLabels {
        let mut headers = HeaderMap::new();
        if let Some(ct) = content_type {
            headers.insert(header::CONTENT_TYPE, ct.parse().expect("header"));
        }
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        labels(&method, &uri.parse().expect("uri"), &headers).expect("counted")
    }

    fn short(l: &RequestLabels) -> (&str, &str, &str, &str, &str, &str) {
        (
            l.verb.as_str(),
            l.group.as_str(),
            l.version.as_str(),
            l.resource.as_str(),
            l.subresource.as_str(),
            l.scope.as_str(),
        )
    }

    #[test]
    fn verbs_scopes_and_paths_as_kube_apiserver_labels_them() {
        let cases = [
            (
                "GET",
                "/api/v1/namespaces/d/configmaps/x",
                None,
                ("GET", "", "v1", "configmaps", "", "resource"),
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps",
                None,
                ("LIST", "", "v1", "configmaps", "", "namespace"),
            ),
            (
                "GET",
                "/api/v1/configmaps",
                None,
                ("LIST", "", "v1", "configmaps", "", "cluster"),
            ),
            (
                "GET",
                "/api/v1/namespaces",
                None,
                ("LIST", "", "v1", "namespaces", "", "cluster"),
            ),
            (
                "GET",
                "/api/v1/namespaces/d",
                None,
                ("GET", "", "v1", "namespaces", "", "resource"),
            ),
            (
                "PUT",
                "/api/v1/namespaces/d/status",
                None,
                ("PUT", "", "v1", "namespaces", "status", "resource"),
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps?watch=true",
                None,
                ("WATCH", "", "v1", "configmaps", "", "namespace"),
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps?watch=1&resourceVersion=5",
                None,
                ("WATCH", "", "v1", "configmaps", "", "namespace"),
            ),
            (
                "GET",
                "/api/v1/namespaces/d/configmaps?watch=false",
                None,
                ("LIST", "", "v1", "configmaps", "", "namespace"),
            ),
            (
                "POST",
                "/api/v1/namespaces/d/configmaps",
                None,
                ("POST", "", "v1", "configmaps", "", "resource"),
            ),
            (
                "POST",
                "/api/v1/namespaces/d/serviceaccounts/sa/token",
                None,
                ("POST", "", "v1", "serviceaccounts", "token", "resource"),
            ),
            (
                "PATCH",
                "/apis/g.example/v1/namespaces/d/ws/w/status?fieldManager=m",
                Some("application/apply-patch+yaml"),
                ("APPLY", "g.example", "v1", "ws", "status", "resource"),
            ),
            (
                "PATCH",
                "/apis/g.example/v1/namespaces/d/ws/w",
                Some("application/merge-patch+json"),
                ("PATCH", "g.example", "v1", "ws", "", "resource"),
            ),
            (
                "DELETE",
                "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x",
                None,
                (
                    "DELETE",
                    "apiextensions.k8s.io",
                    "v1",
                    "customresourcedefinitions",
                    "",
                    "resource",
                ),
            ),
            (
                "OPTIONS",
                "/api/v1/namespaces/d/configmaps",
                None,
                ("other", "", "v1", "configmaps", "", "namespace"),
            ),
            ("GET", "/healthz", None, ("GET", "", "", "", "/healthz", "")),
            ("GET", "/apis", None, ("GET", "", "", "", "/apis", "")),
            (
                "GET",
                "/apis/g.example/v1",
                None,
                ("GET", "", "", "", "/apis/g.example/v1", ""),
            ),
        ];
        for (method, uri, ct, want) in cases {
            let l = get(method, uri, ct);
            assert_eq!(short(&l), want, "{method} {uri}");
        }
        assert_eq!(
            get("GET", "/api/v1/configmaps", None).component,
            "apiserver"
        );
        assert_eq!(get("GET", "/apis", None).component, "apiserver");
        assert_eq!(get("GET", "/readyz", None).component, "");
        assert!(
            labels(
                &Method::GET,
                &"/metrics".parse().expect("uri"),
                &HeaderMap::new()
            )
            .is_none()
        );
    }

    #[test]
    fn dry_run_values() {
        assert_eq!(dry_run(&[]), "");
        assert_eq!(dry_run(&["All", "All"]), "All");
        assert_eq!(dry_run(&["Some"]), "invalid");
        let l = get("POST", "/api/v1/namespaces/d/configmaps?dryRun=All", None);
        assert_eq!(l.dry_run, "All");
    }

    #[test]
    fn exposition_sorts_labels_and_escapes_values() {
        let counter = RequestCounter::default();
        let mut l = get("GET", "/api/v1/namespaces/d/configmaps/x", None);
        l.code = "200".into();
        counter.record(l.clone());
        counter.record(l.clone());
        l.subresource = "a\"b\\c".into();
        counter.record(l);
        let text = counter.snapshot().exposition();
        assert!(
            text.starts_with("# HELP apiserver_request_total [STABLE] "),
            "{text}"
        );
        assert!(
            text.contains("# TYPE apiserver_request_total counter\n"),
            "{text}"
        );
        assert!(text.contains("apiserver_request_total{code=\"200\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"configmaps\",scope=\"resource\",subresource=\"\",verb=\"GET\",version=\"v1\"} 2\n"), "{text}");
        assert!(text.contains("subresource=\"a\\\"b\\\\c\""), "{text}");
        assert_eq!(counter.snapshot().total(), 3);
    }
}
