//! Metrics contract between the operator and its Helm chart.
//!
//! Every metric name used by a PromQL expression of the Grafana dashboard
//! (`helm/tenant-identity-operator/dashboards/*.json`) or of the alert rules rendered into the
//! PrometheusRule (`helm/tenant-identity-operator/alerts/*.yaml`) must be exported by the
//! operator's real `/metrics` endpoint, scraped here by calling the same router the binary
//! serves. A panel or alert that references a metric the operator does not export fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use tenant_identity_operator::http::{Readiness, router};
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

/// PromQL words that are never metric names.
const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "atan2",
    "inf",
    "nan",
    "start",
    "end",
];
/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Skip from `open` (an index of `open_ch`) to just past its matching `close_ch`, stepping over
/// string literals. Returns the index after the closing char (or the end of input).
fn skip_group(b: &[char], open: usize, open_ch: char, close_ch: char) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        let c = b[i];
        if c == '"' || c == '\'' || c == '`' {
            i = skip_string(b, i);
            continue;
        }
        if c == open_ch {
            depth += 1;
        } else if c == close_ch {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    b.len()
}

/// `i` is at an opening quote; returns the index after the closing quote.
fn skip_string(b: &[char], i: usize) -> usize {
    let q = b[i];
    let mut j = i + 1;
    while j < b.len() {
        if b[j] == '\\' && q != '`' {
            j += 2;
            continue;
        }
        if b[j] == q {
            return j + 1;
        }
        j += 1;
    }
    b.len()
}

/// Aggregation operators, which may be followed by `by (...)` / `without (...)` before their `(`.
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];

/// The identifier starting at the next non-space char from `i`, if any.
fn next_word(b: &[char], mut i: usize) -> Option<String> {
    while i < b.len() && b[i].is_whitespace() {
        i += 1;
    }
    let start = i;
    while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_') {
        i += 1;
    }
    (i > start).then(|| b[start..i].iter().collect())
}

fn next_non_space(b: &[char], mut i: usize) -> Option<char> {
    while i < b.len() {
        if !b[i].is_whitespace() {
            return Some(b[i]);
        }
        i += 1;
    }
    None
}

/// Metric names selected by a PromQL expression: identifiers outside label matchers, range
/// selectors and strings that are not functions, aggregations, keywords or label lists.
fn promql_metric_names(expr: &str) -> BTreeSet<String> {
    let b: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            '"' | '\'' | '`' => i = skip_string(&b, i),
            '{' => i = skip_group(&b, i, '{', '}'),
            '[' => i = skip_group(&b, i, '[', ']'),
            '#' => {
                while i < b.len() && b[i] != '\n' {
                    i += 1;
                }
            }
            '$' => {
                // Grafana variable outside a string (e.g. `$__rate_interval` used bare): skip it.
                i += 1;
                while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_digit()
                || (c == '.' && b.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                // Number or duration (5m, 1e3, 0x1f, 1h30m): consume it whole.
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '.' || b[i] == '_') {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == '_' || b[i] == ':') {
                    i += 1;
                }
                let word: String = b[start..i].iter().collect();
                let next = next_non_space(&b, i);
                if LABEL_LIST_KEYWORDS.contains(&word.as_str()) {
                    if next == Some('(') {
                        let open = (i..b.len()).find(|&k| b[k] == '(').unwrap();
                        i = skip_group(&b, open, '(', ')');
                    }
                } else if KEYWORDS.contains(&word.as_str())
                    || next == Some('(')
                    || AGGREGATIONS.contains(&word.as_str())
                        && matches!(next_word(&b, i).as_deref(), Some("by" | "without"))
                {
                    // keyword, function call, or aggregation (`sum(...)`, `sum by (le) (...)`)
                } else {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
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
        // The label is the last top-level comma-separated argument.
        let b: Vec<char> = inner.chars().collect();
        let (mut depth, mut i, mut last_comma) = (0i32, 0usize, None);
        while i < b.len() {
            match b[i] {
                '"' | '\'' | '`' => {
                    i = skip_string(&b, i);
                    continue;
                }
                '{' | '(' | '[' => depth += 1,
                '}' | ')' | ']' => depth -= 1,
                ',' if depth == 0 => last_comma = Some(i),
                _ => {}
            }
            i += 1;
        }
        return last_comma.map(|k| b[..k].iter().collect());
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
        walk(&json, &name, &mut out);
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
                    out.push((format!("{name}.templating.list[{n}].query"), promql));
                }
            }
        }
    }
    out
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
                        j = skip_string(&b, j);
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

/// Metric families of a text exposition: sample name -> family type (from `# TYPE`).
fn exposition_samples(body: &str) -> BTreeMap<String, String> {
    let mut types = BTreeMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(n), Some(t)) = (parts.next(), parts.next()) {
                types.insert(n.to_string(), t.to_string());
            }
        }
    }
    let mut samples = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let name: String = line
            .chars()
            .take_while(|c| *c != '{' && *c != ' ')
            .collect();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(&name)
            .to_string();
        let ty = types
            .get(&family)
            .cloned()
            .unwrap_or_else(|| "untyped".into());
        samples.insert(name, ty);
    }
    samples
}

/// Call the operator's router (the one the binary serves) and scrape it after the operator has
/// done one unit of each kind of work (a reconcile error, an Azure request), as a running
/// operator would.
async fn scrape_operator() -> BTreeMap<String, String> {
    let metrics = Arc::new(Metrics::new().expect("Metrics::new"));
    let readiness = Readiness::default();
    let app = router(metrics.clone(), readiness.clone());

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
        let names = promql_metric_names(expr);
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
        .flat_map(|(_, e)| promql_metric_names(e))
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
    let names = |e: &str| promql_metric_names(e).into_iter().collect::<Vec<_>>();
    assert_eq!(
        names(
            r#"histogram_quantile(0.99, sum by (le, operation) (rate(a_bucket{job=~"$job", x="y{z}"}[$__rate_interval])))"#
        ),
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
        names("max without (pod) (tenant_identity_objects) unless bool 1e3"),
        ["tenant_identity_objects"]
    );
    assert_eq!(
        grafana_variable_promql(r#"label_values(m_total{namespace=~"$namespace"}, job)"#)
            .as_deref(),
        Some(r#"m_total{namespace=~"$namespace"}"#)
    );
    assert_eq!(grafana_variable_promql("label_values(job)"), None);
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
