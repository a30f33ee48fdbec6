//! events.k8s.io/v1 Events are validated like the real server's `ValidateEventCreate`: a
//! recorder that omits what the server requires is caught here instead of only on a real
//! cluster.

use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use crate::common::{api_error, start};

fn event(overrides: Value) -> Event {
    let mut e = json!({
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "ti.1", "namespace": "default"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "type": "Normal",
        "reason": "IdentityReady",
        "action": "Reconcile",
        "note": "ok",
        "reportingController": "tenant-identity-operator",
        "reportingInstance": "pod-1",
        "regarding": {"apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
                      "name": "ti", "namespace": "default"},
    });
    for (k, v) in overrides.as_object().cloned().unwrap_or_default() {
        if v.is_null() {
            e.as_object_mut().unwrap().remove(&k);
        } else {
            e[&k] = v;
        }
    }
    serde_json::from_value(e).expect("event")
}

#[tokio::test]
async fn events_k8s_io_v1_create_is_validated() {
    let (emu, client) = start().await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .create(&PostParams::default(), &event(json!({})))
        .await
        .expect("a complete event is accepted");

    let cases = [
        (
            json!({"metadata": {"name": "a"}, "action": null}),
            "action: Required value",
        ),
        (
            json!({"metadata": {"name": "b"}, "reportingInstance": null}),
            "reportingInstance: Required value",
        ),
        (
            json!({"metadata": {"name": "c"}, "eventTime": null}),
            "eventTime: Required value",
        ),
        (
            json!({"metadata": {"name": "d"}, "note": "x".repeat(1025)}),
            "message: Invalid value",
        ),
        (
            json!({"metadata": {"name": "e"}, "reason": "R".repeat(129)}),
            "reason: Invalid value",
        ),
        (
            json!({"metadata": {"name": "f"}, "type": "Info"}),
            "type: Invalid value",
        ),
    ];
    for (overrides, expected) in cases {
        let e = event(overrides);
        let status = api_error(
            events
                .create(&PostParams::default(), &e)
                .await
                .expect_err(expected),
        );
        assert_eq!(status.code, 422, "{status:?}");
        assert!(
            status.message.contains(expected),
            "{expected}: {}",
            status.message
        );
    }
    emu.shutdown().await;
}
