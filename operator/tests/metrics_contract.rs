//! Metrics contract between the operator and its Helm chart.
//!
//! Every metric name used by a PromQL expression of the Grafana dashboard
//! (`helm/tenant-identity-operator/dashboards/*.json`) or of the alert rules rendered into the
//! PrometheusRule (`helm/tenant-identity-operator/alerts/*.yaml`) must be exported by the
//! operator's real `/metrics` endpoint, scraped here by calling the same router the binary
//! serves. A panel or alert that references a metric the operator does not export fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use prometheus_parse::{Scrape, Value};
use promql_parser::label::{METRIC_NAME, MatchOp};
use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};
use promql_parser::util::{ExprVisitor, walk_expr};
use regex::{Captures, Regex};
use tenant_identity_operator::http::{Liveness, Readiness, router};
use tenant_identity_operator::metrics::Metrics;
use tower::ServiceExt;

/// Series Prometheus itself attaches to every scrape target: not exported by the operator, but
/// legitimately used (the "operator down" alert and the "pods up" panel).
const PROMETHEUS_SYNTHETIC: &[&str] = &["up"];

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../helm/tenant-identity-operator")
}

// ---------------------------------------------------------------------------------------------
// PromQL: which metric names does an expression select?
// ---------------------------------------------------------------------------------------------

/// Collects the metric names of the vector and matrix selectors of a PromQL AST.
#[derive(Default)]
struct SelectedMetrics(BTreeSet<String>);

impl SelectedMetrics {
    fn selector(&mut self, vs: &VectorSelector) {
        self.0.extend(vs.name.iter().cloned());
        // `{__name__="m"}` selects `m` too.
        let matchers = vs.matchers.matchers.iter();
        let or_matchers = vs.matchers.or_matchers.iter().flatten();
        self.0.extend(
            matchers
                .chain(or_matchers)
                .filter(|m| m.name == METRIC_NAME && matches!(m.op, MatchOp::Equal))
                .map(|m| m.value.clone()),
        );
    }
}

impl ExprVisitor for SelectedMetrics {
    type Error = Infallible;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Infallible> {
        match expr {
            Expr::VectorSelector(vs) => self.selector(vs),
            Expr::MatrixSelector(ms) => self.selector(&ms.vs),
            // The walk descends into an aggregation's expression only, not its parameter
            // (`topk(scalar(k), m)`).
            Expr::Aggregate(AggregateExpr {
                param: Some(param), ..
            }) => {
                walk_expr(self, param)?;
            }
            _ => {}
        }
        Ok(true)
    }
}

/// Metric names selected by a PromQL expression (its vector and matrix selectors), or the
/// parser's error if it is not PromQL.
fn promql_metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let ast = promql_parser::parser::parse(expr)?;
    let mut names = SelectedMetrics::default();
    let Ok(_) = walk_expr(&mut names, &ast);
    Ok(names.0)
}

/// Grafana's built-in variables that stand for a duration or a number, with a value of that
/// kind (what Grafana puts there depends on the time range; any value of the kind parses alike).
const GRAFANA_BUILTINS: &[(&str, &str)] = &[
    ("__rate_interval", "5m"),
    ("__interval", "1m"),
    ("__range", "1h"),
    ("__rate_interval_ms", "300000"),
    ("__interval_ms", "60000"),
    ("__range_ms", "3600000"),
    ("__range_s", "3600"),
];

/// A dashboard's own template variables: name -> a value of the variable's kind.
fn dashboard_variables(dashboard: &serde_json::Value) -> BTreeMap<String, String> {
    let vars = dashboard
        .pointer("/templating/list")
        .and_then(|v| v.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default();
    vars.iter()
        .filter_map(|var| {
            let name = var.get("name")?.as_str()?;
            let query = var.get("query").and_then(|q| q.as_str());
            let value = match var.get("type").and_then(|t| t.as_str()) {
                // `1m,5m,1h`: any of the offered intervals.
                Some("interval") => query
                    .and_then(|q| q.split(',').next())
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .unwrap_or("5m"),
                Some("constant" | "textbox") => query.unwrap_or_default(),
                // Label values (query, custom, ad hoc, data source): what "All" selects.
                _ => var.get("allValue").and_then(|a| a.as_str()).unwrap_or(".*"),
            };
            Some((name.to_string(), value.to_string()))
        })
        .collect()
}

/// Interpolate Grafana variables (`$name`, `${name}`, `${name:format}`, `[[name]]`) as Grafana
/// does before it sends a query: built-ins and the dashboard's own `variables` are replaced,
/// anything else is left as written (e.g. `$1` in `label_replace`), so a bare unknown variable
/// makes the expression fail to parse.
fn grafana_interpolate(expr: &str, variables: &BTreeMap<String, String>) -> String {
    static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$(\w+)|\$\{(\w+)(?:[.:][^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]")
            .expect("valid regex")
    });
    REFERENCE
        .replace_all(expr, |caps: &Captures| {
            let whole = &caps[0];
            let name = (1..=3).find_map(|i| caps.get(i)).map_or("", |m| m.as_str());
            GRAFANA_BUILTINS
                .iter()
                .find(|(builtin, _)| *builtin == name)
                .map(|(_, value)| *value)
                .or_else(|| variables.get(name).map(String::as_str))
                .unwrap_or(whole)
                .to_string()
        })
        .into_owned()
}

/// Grafana template variable queries are PromQL wrapped in Grafana functions:
/// `label_values(<selector>, <label>)`, `label_values(<label>)`, `query_result(<expr>)`,
/// `metrics(<regex>)`, `label_names()`. Returns the PromQL part, if any.
fn grafana_variable_promql(query: &str) -> Option<String> {
    let q = query.trim();
    if let Some(inner) = q
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
    {
        // The label is the last argument; a label name holds no comma, so the last comma
        // separates it from the selector. Without a selector there is no PromQL.
        let (selector, label) = inner.rsplit_once(',')?;
        let label = label.trim();
        let is_label_name = label.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        return is_label_name.then(|| selector.trim().to_string());
    }
    if let Some(inner) = q
        .strip_prefix("query_result(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return Some(inner.to_string());
    }
    if q.starts_with("metrics(") || q.starts_with("label_names(") {
        return None;
    }
    Some(q.to_string())
}

// ---------------------------------------------------------------------------------------------
// Where the chart uses PromQL
// ---------------------------------------------------------------------------------------------

/// (where, expression) for every PromQL expression of every dashboard.
fn dashboard_expressions() -> Vec<(String, String)> {
    fn walk(v: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let here = format!("{path}.{k}");
                    if k == "expr"
                        && let Some(s) = child.as_str()
                    {
                        out.push((here.clone(), s.to_string()));
                    }
                    walk(child, &here, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (n, child) in items.iter().enumerate() {
                    walk(child, &format!("{path}[{n}]"), out);
                }
            }
            _ => {}
        }
    }
    let dir = chart_dir().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {}", dir.display());
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: invalid JSON: {e}"));
        let mut exprs = Vec::new();
        walk(&json, &name, &mut exprs);
        // Template variables of type "query" carry PromQL too.
        if let Some(vars) = json.pointer("/templating/list").and_then(|v| v.as_array()) {
            for (n, var) in vars.iter().enumerate() {
                if var.get("type").and_then(|t| t.as_str()) != Some("query") {
                    continue;
                }
                let query = match var.get("query") {
                    Some(serde_json::Value::String(s)) => s.clone(),
                    Some(q) => q
                        .get("query")
                        .and_then(|s| s.as_str())
                        .unwrap_or("")
                        .to_string(),
                    None => String::new(),
                };
                if let Some(promql) = grafana_variable_promql(&query) {
                    exprs.push((format!("{name}.templating.list[{n}].query"), promql));
                }
            }
        }
        // What Grafana sends to Prometheus: the variables interpolated.
        let variables = dashboard_variables(&json);
        out.extend(
            exprs
                .into_iter()
                .map(|(place, expr)| (place, grafana_interpolate(&expr, &variables))),
        );
    }
    out
}

/// `i` is at the opening quote of a Go template string (`"..."` with backslash escapes, or a
/// `` `raw` `` string); returns the index after its closing quote (or the end of input).
fn go_string_end(b: &[char], i: usize) -> usize {
    let quote = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == '\\' && quote == '"' {
            j += 2;
            continue;
        }
        if b[j] == quote {
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Replace Go template actions (`{{ ... }}`, string literals inside respected) by `0` (valid both
/// as a label value and where a threshold goes, and never a metric name), and drop
/// lines that hold nothing but an action (`{{- toYaml . | nindent 10 }}`), so the Helm-templated
/// rules file parses as plain YAML with the PromQL structure intact.
fn strip_go_template(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let b: Vec<char> = line.chars().collect();
        let mut s = String::new();
        let mut only_actions = true;
        let mut i = 0;
        while i < b.len() {
            if b[i] == '{' && b.get(i + 1) == Some(&'{') {
                let mut j = i + 2;
                loop {
                    if j + 1 >= b.len() {
                        panic!("unterminated template action in line: {line}");
                    }
                    if b[j] == '"' || b[j] == '`' {
                        j = go_string_end(&b, j);
                        continue;
                    }
                    if b[j] == '}' && b[j + 1] == '}' {
                        break;
                    }
                    j += 1;
                }
                s.push('0');
                i = j + 2;
            } else {
                if !b[i].is_whitespace() {
                    only_actions = false;
                }
                s.push(b[i]);
                i += 1;
            }
        }
        if only_actions && b.windows(2).any(|w| w == ['{', '{']) {
            continue;
        }
        out.push_str(&s);
        out.push('\n');
    }
    out
}

/// (where, expression) for every rule of every alerts file the PrometheusRule template includes.
fn alert_expressions() -> Vec<(String, String)> {
    let dir = chart_dir().join("alerts");
    let template =
        std::fs::read_to_string(chart_dir().join("templates/prometheusrule.yaml")).unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no alert rules in {}", dir.display());
    let mut out = Vec::new();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        assert!(
            template.contains(&format!("alerts/{name}")),
            "templates/prometheusrule.yaml does not include alerts/{name}"
        );
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&strip_go_template(&std::fs::read_to_string(&file).unwrap()))
                .unwrap_or_else(|e| {
                    panic!("alerts/{name}: not YAML once templates are stripped: {e}")
                });
        let groups = yaml["groups"].as_sequence().expect("groups: list");
        for group in groups {
            let rules = group["rules"].as_sequence().expect("rules: list");
            for rule in rules {
                let id = rule["alert"]
                    .as_str()
                    .or(rule["record"].as_str())
                    .expect("rule without alert/record name");
                let expr = rule["expr"].as_str().expect("rule without expr");
                out.push((format!("{name}: {id}"), expr.to_string()));
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A real scrape
// ---------------------------------------------------------------------------------------------

/// GET `path` from the router, as the kubelet's probes and Prometheus would; returns
/// (status, body).
async fn get(app: &Router, path: &str) -> (u16, String) {
    let request = Request::get(path)
        .body(Body::empty())
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
        .await
        .unwrap_or_else(|_| panic!("GET {path}: no response within 10s"))
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: reading the body: {e}"));
    let body = String::from_utf8(body.to_vec()).expect("utf-8 response body");
    (status, body)
}

/// Metric families of a text exposition: sample name -> family type (from `# TYPE`). A histogram
/// `x` has samples `x_bucket`, `x_sum` and `x_count`, all of type histogram.
fn exposition_samples(body: &str) -> BTreeMap<String, String> {
    let scrape = Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("parse a &str");
    // prometheus-parse folds a histogram's (summary's) buckets (quantiles) into one sample named
    // after the family, and leaves its `_sum` and `_count` untyped.
    let folded: BTreeMap<&str, &str> = scrape
        .samples
        .iter()
        .filter_map(|s| match s.value {
            Value::Histogram(_) => Some((s.metric.as_str(), "histogram")),
            Value::Summary(_) => Some((s.metric.as_str(), "summary")),
            _ => None,
        })
        .collect();
    let mut samples = BTreeMap::new();
    for sample in &scrape.samples {
        let (name, ty) = match sample.value {
            Value::Counter(_) => (sample.metric.clone(), "counter"),
            Value::Gauge(_) => (sample.metric.clone(), "gauge"),
            Value::Histogram(_) => (format!("{}_bucket", sample.metric), "histogram"),
            Value::Summary(_) => (sample.metric.clone(), "summary"),
            Value::Untyped(_) => {
                let family = ["_sum", "_count"]
                    .iter()
                    .find_map(|suffix| folded.get(sample.metric.strip_suffix(suffix)?));
                (sample.metric.clone(), family.copied().unwrap_or("untyped"))
            }
        };
        samples.insert(name, ty.to_string());
    }
    samples
}

/// Call the operator's router (the one the binary serves) and scrape it after the operator has
/// done one unit of each kind of work (a reconcile error, an Azure request), as a running
/// operator would.
async fn scrape_operator() -> BTreeMap<String, String> {
    let metrics = Arc::new(Metrics::new().expect("Metrics::new"));
    let readiness = Readiness::default();
    let app = router(metrics.clone(), readiness.clone(), Liveness::default());

    // The Deployment's probes: /healthz always, /readyz only once ready.
    assert_eq!(get(&app, "/healthz").await.0, 200, "/healthz");
    assert_eq!(get(&app, "/readyz").await.0, 503, "/readyz before ready");
    readiness.set_ready(true);
    assert_eq!(get(&app, "/readyz").await.0, 200, "/readyz when ready");

    // Labelled counters only appear once a label set has been used: do what a running operator
    // does at least once (values from the documented bounded label sets).
    metrics
        .reconcile_errors
        .with_label_values(&["IdentityNotGranted"])
        .inc();
    metrics
        .azure
        .requests
        .with_label_values(&["put", "429"])
        .inc();

    let (status, body) = get(&app, "/metrics").await;
    assert_eq!(status, 200, "/metrics status");
    let samples = exposition_samples(&body);
    assert!(!samples.is_empty(), "empty scrape:\n{body}");
    samples
}

fn check(exprs: &[(String, String)], samples: &BTreeMap<String, String>) -> Vec<String> {
    let mut problems = Vec::new();
    for (place, expr) in exprs {
        let names = match promql_metric_names(expr) {
            Ok(names) => names,
            Err(e) => {
                problems.push(format!("{place}: not PromQL: {e}: `{expr}`"));
                continue;
            }
        };
        if names.is_empty() {
            problems.push(format!("{place}: no metric name found in `{expr}`"));
        }
        for name in names {
            if PROMETHEUS_SYNTHETIC.contains(&name.as_str()) {
                continue;
            }
            if name.starts_with("process_") {
                problems.push(format!(
                    "{place}: `{name}`: the operator exports no process collector"
                ));
            } else if !samples.contains_key(&name) {
                let hint = samples
                    .iter()
                    .filter(|(_, t)| *t == "histogram")
                    .map(|(n, _)| n)
                    .find(|n| n.starts_with(&name))
                    .map(|n| format!(" (histograms are queried as _bucket/_sum/_count, e.g. {n})"))
                    .unwrap_or_default();
                problems.push(format!(
                    "{place}: `{name}` is not exported by /metrics{hint}"
                ));
            }
        }
    }
    problems
}

#[tokio::test]
async fn dashboard_and_alerts_use_only_exported_metrics() {
    let samples = scrape_operator().await;
    let mut exprs = dashboard_expressions();
    let n_dash = exprs.len();
    exprs.extend(alert_expressions());
    assert!(n_dash >= 5, "dashboard has only {n_dash} queries");
    assert!(exprs.len() > n_dash, "no alert expressions found");

    let problems = check(&exprs, &samples);
    assert!(
        problems.is_empty(),
        "chart references metrics the operator does not export:\n  {}\nexported samples: {:?}",
        problems.join("\n  "),
        samples.keys().collect::<Vec<_>>()
    );

    // Every documented metric family is exported, and used by the dashboard.
    let used: BTreeSet<String> = exprs
        .iter()
        .filter_map(|(_, e)| promql_metric_names(e).ok())
        .flatten()
        .collect();
    for (family, ty, sample) in [
        (
            "tenant_identity_reconcile_total",
            "counter",
            "tenant_identity_reconcile_total",
        ),
        (
            "tenant_identity_reconcile_errors_total",
            "counter",
            "tenant_identity_reconcile_errors_total",
        ),
        (
            "tenant_identity_reconcile_duration_seconds",
            "histogram",
            "tenant_identity_reconcile_duration_seconds_bucket",
        ),
        (
            "tenant_identity_objects",
            "gauge",
            "tenant_identity_objects",
        ),
        (
            "tenant_identity_azure_requests_total",
            "counter",
            "tenant_identity_azure_requests_total",
        ),
        (
            "tenant_identity_azure_request_duration_seconds",
            "histogram",
            "tenant_identity_azure_request_duration_seconds_bucket",
        ),
        (
            "tenant_identity_verifications_total",
            "counter",
            "tenant_identity_verifications_total",
        ),
        (
            "tenant_identity_verification_duration_seconds",
            "histogram",
            "tenant_identity_verification_duration_seconds_bucket",
        ),
    ] {
        assert_eq!(
            samples.get(sample).map(String::as_str),
            Some(ty),
            "{family} ({ty}) exported"
        );
        assert!(
            used.contains(sample),
            "{family} is exported but no dashboard panel or alert uses it"
        );
    }
}

#[test]
fn extractor_finds_metric_names_and_nothing_else() {
    let names = |e: &str| {
        promql_metric_names(e)
            .unwrap_or_else(|err| panic!("`{e}`: {err}"))
            .into_iter()
            .collect::<Vec<_>>()
    };
    let variables = BTreeMap::from([("job".to_string(), ".*".to_string())]);
    let grafana = |e: &str| grafana_interpolate(e, &variables);
    assert_eq!(
        names(&grafana(
            r#"histogram_quantile(0.99, sum by (le, operation) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))"#
        )),
        ["a_bucket"]
    );
    assert_eq!(
        names(
            "sum(rate(a_total{result=\"error\"}[10m])) by (namespace) / ignoring(result) group_left(reason) b offset 5m > 0.1 and on (job) c"
        ),
        ["a_total", "b", "c"]
    );
    assert_eq!(names(r#"absent(up{job="x"} == 1)"#), ["up"]);
    assert_eq!(names("sum without (pod) (m) + count by(x)(n)"), ["m", "n"]);
    assert_eq!(
        names("max without (pod) (tenant_identity_objects) > bool 1e3 unless on () vector(0)"),
        ["tenant_identity_objects"]
    );
    // Selectors by `__name__`, aggregation parameters, subqueries; strings are not selectors.
    assert_eq!(
        names(r#"topk(scalar(k), {__name__="m", job="by"}) or max_over_time(rate(s[5m])[1h:1m])"#),
        ["k", "m", "s"]
    );
    assert_eq!(
        names(r#"label_replace(a, "dst", "$1", "src", "(b|c)")"#),
        ["a"]
    );
    assert_eq!(names("vector(1) + time()"), Vec::<String>::new());
    // Not PromQL: reported, not guessed at.
    for bad in [
        "max without (pod) (m) unless bool 1e3",
        "rate(m[$__rate_interval])",
        "rate(m[$undeclared])",
        "sum(rate(m[5m])",
    ] {
        assert!(promql_metric_names(bad).is_err(), "`{bad}` parsed");
    }

    // Grafana interpolation: built-ins, the dashboard's variables, everything else as written.
    assert_eq!(
        grafana("rate(m{job=~\"${job}\", ns=~\"[[job]]\"}[$__rate_interval]) * $__interval_ms"),
        "rate(m{job=~\".*\", ns=~\".*\"}[5m]) * 60000"
    );
    assert_eq!(grafana("$undeclared \"$1\""), "$undeclared \"$1\"");
    let dashboard = serde_json::json!({"templating": {"list": [
        {"name": "job", "type": "query", "allValue": ".+"},
        {"name": "ns", "type": "custom"},
        {"name": "step", "type": "interval", "query": "2m,10m"},
    ]}});
    assert_eq!(
        dashboard_variables(&dashboard),
        BTreeMap::from([
            ("job".to_string(), ".+".to_string()),
            ("ns".to_string(), ".*".to_string()),
            ("step".to_string(), "2m".to_string()),
        ])
    );

    assert_eq!(
        grafana_variable_promql(r#"label_values(m_total{namespace=~"$namespace"}, job)"#)
            .as_deref(),
        Some(r#"m_total{namespace=~"$namespace"}"#)
    );
    assert_eq!(
        grafana_variable_promql(r#"label_values(m_total{a="x,y"}, job)"#).as_deref(),
        Some(r#"m_total{a="x,y"}"#)
    );
    assert_eq!(grafana_variable_promql("label_values(job)"), None);
    assert_eq!(grafana_variable_promql(r#"label_values(m{a="x,y"})"#), None);
    assert_eq!(
        grafana_variable_promql("query_result(topk(3, m))").as_deref(),
        Some("topk(3, m)")
    );
    assert_eq!(grafana_variable_promql("label_names()"), None);
}

#[test]
fn exposition_types_every_series_of_a_family() {
    let text = "# HELP h H.\n# TYPE h histogram\nh_bucket{op=\"get\",le=\"0.5\"} 1\nh_bucket{op=\"get\",le=\"+Inf\"} 3\nh_sum{op=\"get\"} 2\nh_count{op=\"get\"} 3\n# TYPE c_total counter\nc_total{code=\"429\",operation=\"put\"} 1\n# TYPE g gauge\ng 1\nu_sum 2\n";
    let types = |pairs: &[(&str, &str)]| {
        pairs
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        exposition_samples(text),
        types(&[
            ("c_total", "counter"),
            ("g", "gauge"),
            ("h_bucket", "histogram"),
            ("h_count", "histogram"),
            ("h_sum", "histogram"),
            ("u_sum", "untyped"),
        ])
    );
}

#[test]
fn template_stripping_keeps_rule_structure() {
    let src = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: rate(m_total{job=\"{{ include \"x\" . }}\"}[5m]) > {{ .Values.t }}\n        for: {{ .Values.f }}\n        labels:\n          s: w\n          {{- with .Values.l }}\n          {{- toYaml . | nindent 10 }}\n          {{- end }}\n        annotations:\n          d: '{{ \"{{ $value }}\" }} x'\n";
    let y: serde_yaml::Value = serde_yaml::from_str(&strip_go_template(src)).unwrap();
    let rule = &y["groups"][0]["rules"][0];
    assert_eq!(
        rule["expr"].as_str(),
        Some("rate(m_total{job=\"0\"}[5m]) > 0")
    );
    assert_eq!(rule["labels"]["s"].as_str(), Some("w"));
}

#[tokio::test]
async fn a_bogus_metric_in_a_panel_is_reported() {
    let samples = scrape_operator().await;
    let problems = check(
        &[
            (
                "panel".into(),
                "sum(rate(tenant_identity_reconcile_total[5m]))".into(),
            ),
            (
                "bogus".into(),
                "sum(rate(tenant_identity_reconciles_total[5m]))".into(),
            ),
            (
                "base".into(),
                "histogram_quantile(0.9, rate(tenant_identity_reconcile_duration_seconds[5m]))"
                    .into(),
            ),
            ("process".into(), "process_resident_memory_bytes".into()),
        ],
        &samples,
    );
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains("tenant_identity_reconciles_total"));
    assert!(problems[1].contains("_bucket"), "{}", problems[1]);
    assert!(problems[2].contains("process collector"));
}

#[tokio::test]
async fn a_query_that_is_not_promql_is_reported() {
    let samples = scrape_operator().await;
    let variables = BTreeMap::new();
    let problems = check(
        &[
            (
                "typo in a Grafana variable".into(),
                grafana_interpolate(
                    "sum(rate(tenant_identity_reconcile_total[$__rate_intervall]))",
                    &variables,
                ),
            ),
            (
                "unbalanced".into(),
                "sum(rate(tenant_identity_reconcile_total[5m])".into(),
            ),
        ],
        &samples,
    );
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems.iter().all(|p| p.contains("not PromQL")),
        "{problems:#?}"
    );
}
