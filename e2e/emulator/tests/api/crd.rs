use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::json;

use crate::common::{GUID, Widget, api_error, eventually, install_widgets, start};

fn widget(name: &str, spec: serde_json::Value) -> serde_json::Value {
    json!({"apiVersion": "test.emulator.dev/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn validation_defaulting_and_pruning() {
    let (emu, client) = start().await;
    install_widgets(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let pp = PatchParams::apply("test");

    // Valid: defaults filled in, unknown fields pruned.
    let ok = widgets
        .patch(
            "ok",
            &pp,
            &Patch::Apply(widget(
                "ok",
                json!({"clientId": GUID, "unknownField": true}),
            )),
        )
        .await
        .expect("valid widget");
    assert_eq!(ok.spec.replicas, Some(1));
    assert_eq!(ok.spec.mode.as_deref(), Some("A"));
    let raw: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("test.emulator.dev", "v1", "Widget"),
            "widgets",
        ),
    );
    let dynamic = raw.get("ok").await.expect("get");
    assert!(
        dynamic.data["spec"].get("unknownField").is_none(),
        "pruned: {}",
        dynamic.data
    );

    // With fieldValidation=Strict unknown fields are an error instead.
    let e = api_error(
        widgets
            .patch(
                "strict",
                &PatchParams::apply("test").validation_strict(),
                &Patch::Apply(widget(
                    "strict",
                    json!({"clientId": GUID, "unknownField": true}),
                )),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400, "{}", e.message);
    assert!(e.message.contains("spec.unknownField"), "{}", e.message);

    // Pattern violation names the field.
    let e = api_error(
        widgets
            .patch(
                "bad",
                &pp,
                &Patch::Apply(widget("bad", json!({"clientId": "not-a-guid"}))),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.starts_with("Widget.test.emulator.dev \"bad\" is invalid: spec.clientId: Invalid value: \"not-a-guid\""),
        "{}",
        e.message
    );
    let causes = e.details.expect("details").causes;
    assert_eq!(causes[0].field, "spec.clientId");

    // Required field.
    let e = api_error(
        widgets
            .patch("bad", &pp, &Patch::Apply(widget("bad", json!({}))))
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.clientId: Required value"),
        "{}",
        e.message
    );

    // Enum and maximum.
    let e = api_error(
        widgets
            .patch(
                "bad",
                &pp,
                &Patch::Apply(widget(
                    "bad",
                    json!({"clientId": GUID, "mode": "C", "replicas": 11}),
                )),
            )
            .await
            .unwrap_err(),
    );
    assert!(
        e.message.contains("spec.mode: Unsupported value: \"C\""),
        "{}",
        e.message
    );
    assert!(
        e.message.contains("spec.replicas: Invalid value: 11"),
        "{}",
        e.message
    );

    // CEL rule.
    let e = api_error(
        widgets
            .patch(
                "bad",
                &pp,
                &Patch::Apply(widget("bad", json!({"clientId": GUID, "replicas": 7}))),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("spec: Invalid value: \"object\": replicas above 5 need mode B"),
        "{}",
        e.message
    );
    widgets
        .patch(
            "good",
            &pp,
            &Patch::Apply(widget(
                "good",
                json!({"clientId": GUID, "replicas": 7, "mode": "B"}),
            )),
        )
        .await
        .expect("CEL rule satisfied");

    // Validation also applies to updates of existing objects.
    let e = api_error(
        widgets
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 8}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);

    // Strategic merge patch is not supported for custom resources.
    let e = api_error(
        widgets
            .patch(
                "ok",
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"replicas": 2}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 415);
    emu.shutdown().await;
}

#[tokio::test]
async fn crd_lifecycle_versions_and_scope() {
    let (emu, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.test.emulator.dev"},
        "spec": {
            "group": "test.emulator.dev",
            "scope": "Cluster",
            "names": {"plural": "gadgets", "kind": "Gadget"},
            "versions": [
                {"name": "v1alpha1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                {"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}
            ]
        }
    }))
    .expect("crd");
    crds.patch(
        "gadgets.test.emulator.dev",
        &PatchParams::apply("test"),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply crd");
    let established = crds.get("gadgets.test.emulator.dev").await.expect("crd");
    let accepted = established
        .status
        .expect("status")
        .accepted_names
        .expect("names");
    assert_eq!(accepted.list_kind.as_deref(), Some("GadgetList"));

    let gvk = |v: &str| {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("test.emulator.dev", v, "Gadget"),
            "gadgets",
        )
    };
    let v1: Api<DynamicObject> = Api::all_with(client.clone(), &gvk("v1"));
    let alpha: Api<DynamicObject> = Api::all_with(client.clone(), &gvk("v1alpha1"));
    let g: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.emulator.dev/v1", "kind": "Gadget", "metadata": {"name": "g1"}, "anything": {"goes": 1}})).expect("gadget");
    v1.create(&PostParams::default(), &g)
        .await
        .expect("create cluster-scoped");
    let via_alpha = alpha.get("g1").await.expect("served at the other version");
    assert_eq!(
        via_alpha.types.expect("types").api_version,
        "test.emulator.dev/v1alpha1"
    );
    assert_eq!(via_alpha.data["anything"]["goes"], 1);

    // Deleting the CRD deletes its objects and stops serving it.
    crds.delete("gadgets.test.emulator.dev", &DeleteParams::default())
        .await
        .expect("delete crd");
    eventually("CRD gone", || {
        let crds = crds.clone();
        async move {
            crds.get("gadgets.test.emulator.dev")
                .await
                .is_err()
                .then_some(())
        }
    })
    .await;
    let e = api_error(v1.get("g1").await.unwrap_err());
    assert_eq!(e.code, 404);

    // A CRD whose CEL rule does not compile is rejected.
    let mut broken = serde_json::to_value(&crd).expect("json");
    broken["metadata"] = json!({"name": "gadgets.test.emulator.dev"});
    broken["spec"]["versions"][1]["schema"]["openAPIV3Schema"]["x-kubernetes-validations"] =
        json!([{"rule": "self.(("}]);
    let broken: CustomResourceDefinition = serde_json::from_value(broken).expect("crd");
    let e = api_error(
        crds.create(&PostParams::default(), &broken)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422, "{}", e.message);
    emu.shutdown().await;
}

#[tokio::test]
async fn cel_transition_rule_uses_old_self() {
    let (emu, client) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "locks.test.emulator.dev"},
        "spec": {
            "group": "test.emulator.dev",
            "scope": "Namespaced",
            "names": {"plural": "locks", "kind": "Lock"},
            "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {
                    "owner": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "owner is immutable"}]}
                }}}
            }}}]
        }
    }))
    .expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("crd");
    let locks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("test.emulator.dev", "v1", "Lock"),
            "locks",
        ),
    );
    let l: DynamicObject = serde_json::from_value(json!({"apiVersion": "test.emulator.dev/v1", "kind": "Lock", "metadata": {"name": "l"}, "spec": {"owner": "a"}})).expect("lock");
    locks
        .create(&PostParams::default(), &l)
        .await
        .expect("create");
    let e = api_error(
        locks
            .patch(
                "l",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"owner": "b"}})),
            )
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    assert!(
        e.message
            .contains("spec.owner: Invalid value: \"string\": owner is immutable"),
        "{}",
        e.message
    );
    let same = locks
        .patch(
            "l",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("other change ok");
    assert_eq!(same.labels().get("x").map(String::as_str), Some("y"));
    emu.shutdown().await;
}
