//! `apiserver_request_total` through kube-rs: what a client's requests count as (verbs, scopes,
//! codes, a watch once it ended), `/metrics` in the text format agreeing with the library
//! accessor, and the counters starting again at zero after a restart.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube_emulator::{RequestCounts, RequestLabels};
use serde_json::json;

use crate::common::{api_error, eventually, start};

/// Requests on `configmaps` with this verb, scope and code.
fn configmaps(counts: &RequestCounts, verb: &str, scope: &str, code: &str) -> u64 {
    counts.sum(|l| {
        l.resource == "configmaps"
            && l.group.is_empty()
            && l.version == "v1"
            && l.verb == verb
            && l.scope == scope
            && l.code == code
    })
}

async fn scrape(client: &kube::Client) -> String {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    client.request_text(request).await.expect("GET /metrics")
}

/// The `apiserver_request_total` samples of a scrape, keyed by their labels.
fn samples(text: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("the exposition parses");
    scrape
        .samples
        .into_iter()
        .filter(|s| s.metric == "apiserver_request_total")
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Counter(v) => v,
                other => panic!("not a counter: {other:?}"),
            };
            let labels = s
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (labels, value)
        })
        .collect()
}

fn as_map(labels: &RequestLabels) -> BTreeMap<String, String> {
    labels
        .pairs()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test]
async fn requests_are_counted_as_kube_apiserver_labels_them() {
    let (emu, client) = start().await;
    let before = emu.request_counts();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "a"}, "data": {"k": "v"}})).expect("cm");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create");
    cms.get("a").await.expect("get");
    assert_eq!(api_error(cms.get("nope").await.unwrap_err()).code, 404);
    cms.list(&ListParams::default()).await.expect("list");
    Api::<ConfigMap>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list all");
    cms.patch(
        "a",
        &PatchParams::apply("metrics-test").force(),
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "w"}})),
    )
    .await
    .expect("apply");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "x"}})),
    )
    .await
    .expect("merge");
    cms.replace(
        "a",
        &PostParams::default(),
        &cms.get("a").await.expect("get"),
    )
    .await
    .expect("update");
    cms.delete("a", &Default::default()).await.expect("delete");

    // A watch counts once it ends (here: at its timeout).
    let watch = cms
        .watch(&WatchParams::default().timeout(1), "0")
        .await
        .expect("watch");
    assert_eq!(
        configmaps(&emu.request_counts(), "WATCH", "namespace", "200"),
        0,
        "not counted while open"
    );
    let _ = tokio::time::timeout(Duration::from_secs(10), watch.collect::<Vec<_>>())
        .await
        .expect("the watch ends at its timeout");
    let counts = eventually("the watch counted", || {
        let counts = emu.request_counts();
        async move { (configmaps(&counts, "WATCH", "namespace", "200") == 1).then_some(counts) }
    })
    .await;

    assert_eq!(before.total(), 0, "nothing was counted before the test");
    for (verb, scope, code, n) in [
        ("POST", "resource", "201", 1),
        ("GET", "resource", "200", 2),
        ("GET", "resource", "404", 1),
        ("LIST", "namespace", "200", 1),
        ("LIST", "cluster", "200", 1),
        ("APPLY", "resource", "200", 1),
        ("PATCH", "resource", "200", 1),
        ("PUT", "resource", "200", 1),
        ("DELETE", "resource", "200", 1),
    ] {
        assert_eq!(
            configmaps(&counts, verb, scope, code),
            n,
            "{verb} {scope} {code}"
        );
    }
    let one = counts
        .iter()
        .find(|(l, _)| l.verb == "APPLY")
        .map(|(l, _)| l.clone())
        .expect("an APPLY series");
    assert_eq!(
        (one.component.as_str(), one.dry_run.as_str()),
        ("apiserver", "")
    );
    assert_eq!(one.subresource, "");

    // `/metrics` serves the same counts in the text format (the scrape itself is not counted).
    let scraped = samples(&scrape(&client).await);
    let counts = emu.request_counts();
    let expected: BTreeMap<_, _> = counts.iter().map(|(l, n)| (as_map(l), n as f64)).collect();
    assert_eq!(scraped, expected);
    assert!(
        scraped.keys().all(|l| l.keys().map(String::as_str).eq([
            "code",
            "component",
            "dry_run",
            "group",
            "resource",
            "scope",
            "subresource",
            "verb",
            "version"
        ])),
        "kube-apiserver's label names"
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn a_restart_starts_the_counters_at_zero() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        configmaps(&emu.request_counts(), "LIST", "namespace", "200"),
        1
    );
    emu.restart(Duration::ZERO).await.expect("restart");
    assert_eq!(emu.request_counts().total(), 0);
    cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        configmaps(&emu.request_counts(), "LIST", "namespace", "200"),
        1
    );
    // Dropped connections and refusals are not restarts: the counts stay.
    emu.drop_connections();
    cms.list(&ListParams::default()).await.expect("list");
    assert_eq!(
        configmaps(&emu.request_counts(), "LIST", "namespace", "200"),
        2
    );
    emu.shutdown().await;
}
