use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Resource, ResourceExt};
use serde_json::json;

use crate::common::{api_error, eventually, start};

fn cm(value: serde_json::Value) -> ConfigMap {
    serde_json::from_value(value).expect("cm")
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    cms.create(
        &PostParams::default(),
        &cm(json!({"metadata": {"name": "f", "finalizers": ["test/hold"]}})),
    )
    .await
    .expect("create");
    let deleted = cms
        .delete("f", &DeleteParams::default())
        .await
        .expect("delete");
    let pending = deleted.left().expect("object returned while terminating");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    let still = cms.get("f").await.expect("still there");
    assert!(still.metadata.deletion_timestamp.is_some());

    // No new finalizers on a terminating object.
    let e = api_error(
        cms.patch(
            "f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold", "test/more"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(e.message.contains("metadata.finalizers"), "{}", e.message);

    // Removing the last finalizer completes the deletion.
    cms.patch(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizers");
    assert_eq!(api_error(cms.get("f").await.unwrap_err()).code, 404);

    // Without finalizers, delete answers with a success Status.
    cms.create(
        &PostParams::default(),
        &cm(json!({"metadata": {"name": "plain"}})),
    )
    .await
    .expect("create");
    let status = cms
        .delete("plain", &DeleteParams::default())
        .await
        .expect("delete")
        .right()
        .expect("status");
    assert_eq!(
        status.status,
        Some(kube::core::response::StatusSummary::Success)
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn owner_references_are_garbage_collected() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = cms
        .create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "owner"}})),
        )
        .await
        .expect("owner");
    let owner_ref = owner.controller_owner_ref(&()).expect("owner ref");
    for name in ["child-1", "child-2"] {
        let mut child = cm(json!({"metadata": {"name": name}}));
        child.metadata.owner_references = Some(vec![owner_ref.clone()]);
        cms.create(&PostParams::default(), &child)
            .await
            .expect("child");
    }
    // A dependent with a second, living owner survives.
    let other = cms
        .create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "other"}})),
        )
        .await
        .expect("other");
    let mut shared = cm(json!({"metadata": {"name": "shared"}}));
    let mut other_ref = other.controller_owner_ref(&()).expect("ref");
    other_ref.controller = Some(false);
    shared.metadata.owner_references = Some(vec![owner_ref.clone(), other_ref]);
    cms.create(&PostParams::default(), &shared)
        .await
        .expect("shared");

    cms.delete("owner", &DeleteParams::background())
        .await
        .expect("delete owner");
    eventually("children collected", || {
        let cms = cms.clone();
        async move {
            let left: Vec<String> = cms
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .map(|c| c.name_any())
                .collect();
            (left == ["other", "shared"]).then_some(())
        }
    })
    .await;

    // Orphan: the dependent loses its owner reference instead.
    let parent = cms
        .create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "parent"}})),
        )
        .await
        .expect("parent");
    let mut kid = cm(json!({"metadata": {"name": "kid"}}));
    kid.metadata.owner_references = Some(vec![parent.controller_owner_ref(&()).expect("ref")]);
    cms.create(&PostParams::default(), &kid).await.expect("kid");
    cms.delete("parent", &DeleteParams::orphan())
        .await
        .expect("delete parent");
    let kid = cms.get("kid").await.expect("kid survives");
    assert!(kid.metadata.owner_references.unwrap_or_default().is_empty());
    emu.shutdown().await;
}

#[tokio::test]
async fn namespace_deletion_deletes_content() {
    let (emu, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "doomed"}})).expect("ns");
    let created = nss.create(&PostParams::default(), &ns).await.expect("ns");
    assert_eq!(
        created.status.and_then(|s| s.phase).as_deref(),
        Some("Active")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "doomed");
    let s: Secret =
        serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))
            .expect("secret");
    let stored = secrets
        .create(&PostParams::default(), &s)
        .await
        .expect("secret");
    assert_eq!(stored.data.expect("data")["k"].0, b"v");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(
        &PostParams::default(),
        &cm(json!({"metadata": {"name": "held", "finalizers": ["x/y"]}})),
    )
    .await
    .expect("cm");

    nss.delete("doomed", &DeleteParams::default())
        .await
        .expect("delete ns");
    let terminating = nss.get("doomed").await.expect("terminating");
    assert_eq!(
        terminating.status.and_then(|s| s.phase).as_deref(),
        Some("Terminating")
    );
    let e = api_error(
        cms.create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "new"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);

    eventually("secret deleted", || {
        let secrets = secrets.clone();
        async move { secrets.get("s").await.is_err().then_some(()) }
    })
    .await;
    assert!(
        nss.get("doomed").await.is_ok(),
        "held by the finalized configmap"
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release");
    eventually("namespace gone", || {
        let nss = nss.clone();
        async move { nss.get("doomed").await.is_err().then_some(()) }
    })
    .await;
    emu.shutdown().await;
}

#[tokio::test]
async fn recorder_publishes_events() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let target = cms
        .create(
            &PostParams::default(),
            &cm(json!({"metadata": {"name": "subject"}})),
        )
        .await
        .expect("cm");
    let reference: ObjectReference = target.object_ref(&());
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "test-controller".into(),
            instance: None,
        },
    );
    let ev = Event {
        type_: EventType::Normal,
        reason: "Testing".into(),
        note: Some("hello".into()),
        action: "Test".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.expect("publish");
    recorder
        .publish(&ev, &reference)
        .await
        .expect("publish again (series)");
    let events: Api<K8sEvent> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.expect("list");
    assert_eq!(list.items.len(), 1, "the repeat updates the same event");
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Testing"));
    assert_eq!(
        e.regarding.as_ref().and_then(|r| r.name.as_deref()),
        Some("subject")
    );
    emu.shutdown().await;
}
