//! A uid in a write body is a precondition: the write is for that object only. This is what
//! lets a client annotate an object it does not own without ever creating it, or touching an
//! object re-created under the same name.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::common::{api_error, start};

fn annotated(name: &str, uid: &str) -> serde_json::Value {
    json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": name, "uid": uid, "annotations": {"example.com/k": "v"}},
    })
}

async fn create_sa(sas: &Api<ServiceAccount>, name: &str) -> ServiceAccount {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.into());
    sas.create(&PostParams::default(), &sa)
        .await
        .expect("create")
}

/// An apply naming the uid of a deleted object conflicts instead of creating one:
/// k8s.io/apiserver `pkg/endpoints/handlers/patch.go`, `patcher.applyPatch` (`NewConflict`,
/// "uid mismatch: the provided object specified uid .., and no existing object was found").
#[tokio::test]
async fn apply_with_the_uid_of_a_deleted_object_conflicts_and_creates_nothing() {
    let (_emu, client) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
    let uid = create_sa(&sas, "gone").await.uid().expect("uid");
    sas.delete("gone", &DeleteParams::default())
        .await
        .expect("delete");

    let e = api_error(
        sas.patch(
            "gone",
            &PatchParams::apply("annotator").force(),
            &Patch::Apply(annotated("gone", &uid)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        format!(
            "Operation cannot be fulfilled on serviceaccounts \"gone\": uid mismatch: the \
             provided object specified uid {uid}, and no existing object was found"
        )
    );
    assert!(sas.get_opt("gone").await.expect("get").is_none());

    // Without a uid the same apply creates: the precondition is what stops it.
    sas.patch(
        "gone",
        &PatchParams::apply("annotator").force(),
        &Patch::Apply(
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "gone"}}),
        ),
    )
    .await
    .expect("apply without a uid creates");
}

/// A write naming the uid of an object since re-created under the same name is refused and
/// changes nothing: k8s.io/apiserver `pkg/registry/rest/update.go`, `BeforeUpdate`, then
/// apimachinery `ValidateObjectMetaUpdate` (the uid is immutable). Apply and merge patch alike.
#[tokio::test]
async fn a_write_with_a_stale_uid_is_invalid_and_changes_nothing() {
    let (_emu, client) = start().await;
    let sas: Api<ServiceAccount> = Api::namespaced(client, "default");
    let stale = create_sa(&sas, "again").await.uid().expect("uid");
    sas.delete("again", &DeleteParams::default())
        .await
        .expect("delete");
    let current = create_sa(&sas, "again").await;
    assert_ne!(current.uid().as_deref(), Some(stale.as_str()));

    let message = format!(
        "ServiceAccount \"again\" is invalid: metadata.uid: Invalid value: \"{stale}\": field is \
         immutable"
    );
    let e = api_error(
        sas.patch(
            "again",
            &PatchParams::apply("annotator").force(),
            &Patch::Apply(annotated("again", &stale)),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(e.message, message);
    let e = api_error(
        sas.patch(
            "again",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"uid": stale, "annotations": {"example.com/k": "v"}}}),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert_eq!(e.message, message);
    let after = sas.get("again").await.expect("get");
    assert_eq!(after.resource_version(), current.resource_version());
    assert!(after.annotations().is_empty());

    // The current uid is accepted, and the apply owns only the annotation (the uid is server
    // metadata, not an applied field).
    let uid = current.uid().expect("uid");
    let written = sas
        .patch(
            "again",
            &PatchParams::apply("annotator").force(),
            &Patch::Apply(annotated("again", &uid)),
        )
        .await
        .expect("apply with the current uid");
    assert_eq!(
        written
            .annotations()
            .get("example.com/k")
            .map(String::as_str),
        Some("v")
    );
    let fields = written
        .managed_fields()
        .iter()
        .find(|m| m.manager.as_deref() == Some("annotator"))
        .and_then(|m| serde_json::to_value(&m.fields_v1).ok());
    assert_eq!(
        fields,
        Some(json!({"f:metadata": {"f:annotations": {"f:example.com/k": {}}}}))
    );
}
