use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Discovery, ResourceExt};
use serde_json::json;

use crate::common::{api_error, start};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"}
    }))
    .expect("configmap")
}

#[tokio::test]
async fn configmap_crud() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");

    let created = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("create");
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.metadata.generation, None,
        "ConfigMaps have no generation"
    );
    let rv1 = created.resource_version().expect("rv");

    let dup = api_error(
        cms.create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((dup.code, dup.reason.as_str()), (409, "AlreadyExists"));

    let mut got = cms.get("a").await.expect("get");
    assert_eq!(
        got.data
            .as_ref()
            .and_then(|d| d.get("k"))
            .map(String::as_str),
        Some("v")
    );
    got.data = Some([("k".to_string(), "w".to_string())].into());
    let replaced = cms
        .replace("a", &PostParams::default(), &got)
        .await
        .expect("replace");
    assert!(
        replaced
            .resource_version()
            .expect("rv")
            .parse::<u64>()
            .expect("numeric")
            > rv1.parse::<u64>().expect("numeric")
    );

    // A stale resourceVersion is a conflict.
    let stale = api_error(
        cms.replace("a", &PostParams::default(), &got)
            .await
            .unwrap_err(),
    );
    assert_eq!((stale.code, stale.reason.as_str()), (409, "Conflict"));

    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "1", "k": null}})),
        )
        .await
        .expect("merge patch");
    let data = patched.data.expect("data");
    assert_eq!(data.get("extra").map(String::as_str), Some("1"));
    assert!(!data.contains_key("k"));

    let json_patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(json!([{"op": "add", "path": "/data/j", "value": "2"}]))
                    .expect("patch"),
            ),
        )
        .await
        .expect("json patch");
    assert_eq!(
        json_patched
            .data
            .expect("data")
            .get("j")
            .map(String::as_str),
        Some("2")
    );

    cms.delete("a", &DeleteParams::default())
        .await
        .expect("delete");
    let gone = api_error(cms.get("a").await.unwrap_err());
    assert_eq!((gone.code, gone.reason.as_str()), (404, "NotFound"));

    // The namespace must exist.
    let nowhere: Api<ConfigMap> = Api::namespaced(client.clone(), "nowhere");
    let e = api_error(
        nowhere
            .create(&PostParams::default(), &cm("a", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 404);
    assert!(
        e.message.contains("namespaces \"nowhere\" not found"),
        "{}",
        e.message
    );

    // generateName.
    let generated: ConfigMap =
        serde_json::from_value(json!({"metadata": {"generateName": "gen-"}})).expect("cm");
    let g = cms
        .create(&PostParams::default(), &generated)
        .await
        .expect("generateName");
    assert!(
        g.name_any().starts_with("gen-") && g.name_any().len() == 9,
        "{}",
        g.name_any()
    );

    // Names must be DNS subdomains.
    let bad = api_error(
        cms.create(&PostParams::default(), &cm("Bad_Name", json!({})))
            .await
            .unwrap_err(),
    );
    assert_eq!((bad.code, bad.reason.as_str()), (422, "Invalid"));
    assert!(bad.message.contains("metadata.name"), "{}", bad.message);
    emu.shutdown().await;
}

#[tokio::test]
async fn selectors_and_pagination() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        cms.create(
            &PostParams::default(),
            &cm(&format!("cm-{i}"), json!({"tier": tier, "app": "x"})),
        )
        .await
        .expect("create");
    }
    let names = |l: &kube::api::ObjectList<ConfigMap>| {
        l.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
    };
    let even = cms
        .list(&ListParams::default().labels("tier=even"))
        .await
        .expect("list");
    assert_eq!(names(&even), ["cm-0", "cm-2", "cm-4", "cm-6"]);
    let odd = cms
        .list(&ListParams::default().labels("tier in (odd),app"))
        .await
        .expect("list");
    assert_eq!(names(&odd).len(), 3);
    let none = cms
        .list(&ListParams::default().labels("!app"))
        .await
        .expect("list");
    assert!(none.items.is_empty());
    let by_name = cms
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .expect("list");
    assert_eq!(names(&by_name), ["cm-3"]);
    let not_name = cms
        .list(&ListParams::default().fields("metadata.name!=cm-3"))
        .await
        .expect("list");
    assert_eq!(names(&not_name).len(), 6);

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = cms.list(&lp).await.expect("page");
        pages += 1;
        seen.extend(names(&page));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());

    // Cross-namespace list.
    let all: Api<ConfigMap> = Api::all(client.clone());
    assert_eq!(
        all.list(&ListParams::default())
            .await
            .expect("list")
            .items
            .len(),
        7
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn lease_update_conflict() {
    let (emu, client) = start().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}
    }))
    .expect("lease");
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let mut first = created.clone();
    let mut second = created.clone();
    first.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    leases
        .replace("leader", &PostParams::default(), &first)
        .await
        .expect("first update wins");
    second.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    let e = api_error(
        leases
            .replace("leader", &PostParams::default(), &second)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let now = leases.get("leader").await.expect("get");
    assert_eq!(
        now.spec.expect("spec").holder_identity.as_deref(),
        Some("b")
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn discovery_and_version() {
    let (emu, client) = start().await;
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(info.major, "1");
    crate::common::install_widgets(&client).await;
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Widget")
        .expect("Widget discovered");
    assert_eq!(ar.plural, "widgets");
    assert!(
        caps.subresources.iter().any(|(s, _)| s.plural == "status"),
        "status subresource listed"
    );
    assert!(
        discovery
            .groups()
            .any(|g| g.name() == "coordination.k8s.io")
    );
    let aggregated = Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let (ar, caps) = aggregated
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Widget")
        .expect("Widget in aggregated discovery");
    assert_eq!(ar.plural, "widgets");
    assert!(caps.subresources.iter().any(|(s, _)| s.plural == "status"));
    assert!(
        aggregated.groups().any(|g| g.name().is_empty()),
        "core group"
    );

    // Metadata-only reads.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(&PostParams::default(), &cm("meta", json!({"app": "m"})))
        .await
        .expect("create");
    let metas = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("list_metadata");
    assert_eq!(metas.items[0].metadata.name.as_deref(), Some("meta"));
    let one = cms.get_metadata("meta").await.expect("get_metadata");
    assert_eq!(one.labels().get("app").map(String::as_str), Some("m"));
    let nss: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = nss
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .iter()
        .map(|n| n.name_any())
        .collect();
    assert!(names.contains(&"default".to_string()) && names.contains(&"kube-system".to_string()));

    let http = reqwest_get(&format!("{}/.well-known/openid-configuration", emu.url())).await;
    assert_eq!(http["issuer"], "https://oidc.emulator.local/");
    assert!(
        http["jwks_uri"]
            .as_str()
            .expect("jwks_uri")
            .ends_with("/openid/v1/jwks")
    );
    let jwks = reqwest_get(&format!("{}/openid/v1/jwks", emu.url())).await;
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    emu.shutdown().await;
}

/// A plain GET over a raw TCP connection (the documents are not Kubernetes resources).
async fn reqwest_get(url: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.trim_start_matches("http://");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = tokio::net::TcpStream::connect(host).await.expect("connect");
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let body = buf.split_once("\r\n\r\n").expect("body").1;
    serde_json::from_str(body).expect("json body")
}

#[tokio::test]
async fn immutable_configmap() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let frozen: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "frozen"}, "data": {"k": "v"}, "immutable": true}),
    )
    .expect("cm");
    cms.create(&PostParams::default(), &frozen)
        .await
        .expect("create");
    let e = api_error(
        cms.patch(
            "frozen",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
    // Metadata may still change.
    cms.patch(
        "frozen",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
    )
    .await
    .expect("labels ok");
    emu.shutdown().await;
}
