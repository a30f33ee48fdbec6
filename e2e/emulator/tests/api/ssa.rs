use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::common::{Widget, api_error, install_widgets, start};

fn apply_cm(data: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": data})
}

#[tokio::test]
async fn server_side_apply() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let a = PatchParams::apply("manager-a");
    let b = PatchParams::apply("manager-b");

    // Apply creates.
    let created = cms
        .patch(
            "ssa",
            &a,
            &Patch::Apply(apply_cm(json!({"x": "1", "shared": "s"}))),
        )
        .await
        .expect("apply creates");
    let rv = created.resource_version().expect("rv");
    let mf = created
        .metadata
        .managed_fields
        .clone()
        .expect("managedFields");
    assert_eq!(mf.len(), 1);
    assert_eq!(mf[0].manager.as_deref(), Some("manager-a"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    assert_eq!(mf[0].fields_type.as_deref(), Some("FieldsV1"));
    let fields = serde_json::to_value(&mf[0].fields_v1).expect("fieldsV1");
    assert_eq!(fields, json!({"f:data": {"f:shared": {}, "f:x": {}}}));

    // The same apply again is a no-op: same resourceVersion.
    let again = cms
        .patch(
            "ssa",
            &a,
            &Patch::Apply(apply_cm(json!({"x": "1", "shared": "s"}))),
        )
        .await
        .expect("reapply");
    assert_eq!(again.resource_version().expect("rv"), rv);

    // Another manager setting a different value conflicts.
    let e = api_error(
        cms.patch("ssa", &b, &Patch::Apply(apply_cm(json!({"x": "2"}))))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert!(
        e.message.contains("conflict with \"manager-a\""),
        "{}",
        e.message
    );
    assert!(e.message.contains(".data.x"), "{}", e.message);

    // Same value: shared ownership, no conflict.
    cms.patch("ssa", &b, &Patch::Apply(apply_cm(json!({"shared": "s"}))))
        .await
        .expect("shared value");

    // Force takes ownership.
    let forced = cms
        .patch(
            "ssa",
            &b.clone().force(),
            &Patch::Apply(apply_cm(json!({"x": "2", "shared": "s"}))),
        )
        .await
        .expect("force");
    assert_eq!(forced.data.as_ref().expect("data")["x"], "2");

    // manager-a stops applying both fields: x is manager-b's now and stays, shared is still
    // owned by manager-b and stays; a's own field `y` goes away when dropped.
    cms.patch("ssa", &a, &Patch::Apply(apply_cm(json!({"y": "only-a"}))))
        .await
        .expect("apply y");
    let after = cms
        .patch("ssa", &a, &Patch::Apply(apply_cm(json!({}))))
        .await
        .expect("drop all");
    let data = after.data.clone().unwrap_or_default();
    assert_eq!(data.get("x").map(String::as_str), Some("2"));
    assert_eq!(data.get("shared").map(String::as_str), Some("s"));
    assert!(
        !data.contains_key("y"),
        "field dropped by its only manager is removed: {data:?}"
    );

    // manager-b drops `shared`: nobody owns it any more, so it goes.
    let after = cms
        .patch("ssa", &b, &Patch::Apply(apply_cm(json!({"x": "2"}))))
        .await
        .expect("b drops shared");
    assert!(!after.data.unwrap_or_default().contains_key("shared"));

    // fieldManager is required for apply.
    let e = api_error(
        cms.patch(
            "ssa",
            &PatchParams::default(),
            &Patch::Apply(apply_cm(json!({}))),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
    assert!(e.message.contains("fieldManager"), "{}", e.message);

    // A merge patch records an Update entry for its manager.
    let merged = cms
        .patch(
            "ssa",
            &PatchParams {
                field_manager: Some("editor".into()),
                ..Default::default()
            },
            &Patch::Merge(json!({"data": {"z": "3"}})),
        )
        .await
        .expect("merge");
    let entry = merged
        .metadata
        .managed_fields
        .expect("managedFields")
        .into_iter()
        .find(|m| m.manager.as_deref() == Some("editor"))
        .expect("editor entry");
    assert_eq!(entry.operation.as_deref(), Some("Update"));
    assert_eq!(
        serde_json::to_value(&entry.fields_v1).expect("fields"),
        json!({"f:data": {"f:z": {}}})
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let (emu, client) = start().await;
    install_widgets(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("widget-owner");
    let w = json!({
        "apiVersion": "test.emulator.dev/v1", "kind": "Widget",
        "metadata": {"name": "w"},
        "spec": {"clientId": crate::common::GUID},
        "status": {"phase": "ignored-on-main-resource"}
    });
    let created = widgets
        .patch("w", &pp, &Patch::Apply(&w))
        .await
        .expect("apply");
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.status.is_none(),
        "status is not written through the main resource"
    );

    let status = json!({"apiVersion": "test.emulator.dev/v1", "kind": "Widget", "status": {"phase": "Ready", "observedGeneration": 1}});
    let with_status = widgets
        .patch_status(
            "w",
            &PatchParams::apply("status-writer"),
            &Patch::Apply(&status),
        )
        .await
        .expect("status apply");
    assert_eq!(
        with_status.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready")
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(1),
        "status writes do not bump generation"
    );
    let entry = with_status
        .metadata
        .managed_fields
        .as_ref()
        .expect("managedFields")
        .iter()
        .find(|m| m.manager.as_deref() == Some("status-writer"))
        .expect("status manager");
    assert_eq!(entry.subresource.as_deref(), Some("status"));

    // The status subresource ignores spec changes.
    let sneaky = json!({"spec": {"replicas": 3}, "status": {"phase": "Ready2"}});
    let s2 = widgets
        .patch_status("w", &PatchParams::default(), &Patch::Merge(&sneaky))
        .await
        .expect("status merge");
    assert_eq!(s2.spec.replicas, Some(1), "spec unchanged (defaulted 1)");
    assert_eq!(
        s2.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready2")
    );

    // Metadata changes do not bump generation; spec changes do.
    let labelled = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1));
    let respec = widgets
        .patch(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await
        .expect("spec");
    assert_eq!(respec.metadata.generation, Some(2));
    assert_eq!(
        respec.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Ready2"),
        "status kept"
    );

    // Writing the same status again is a no-op.
    let rv = respec.resource_version();
    let same = widgets
        .patch_status(
            "w",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Ready2"}})),
        )
        .await
        .expect("same");
    assert_eq!(same.resource_version(), rv);
    emu.shutdown().await;
}
