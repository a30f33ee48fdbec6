use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::*;

const UID: &str = "5b1c7b6e-0000-4000-8000-000000000001";

fn owner(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "identity.tenancy.dev/v1alpha1".into(),
        kind: "TenantIdentity".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
    ManagedFieldsEntry {
        manager: Some(manager.into()),
        operation: Some(operation.into()),
        api_version: Some("v1".into()),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(FieldsV1(fields)),
        ..ManagedFieldsEntry::default()
    }
}

fn tenant_label_fields() -> Value {
    json!({"f:metadata": {"f:labels": {format!("f:{}", names::TENANT_LABEL): {}}}})
}

/// What the operator wants under the name: our controller reference and tenant label.
fn desired() -> ObjectMeta {
    ObjectMeta {
        name: Some("team-a".into()),
        labels: Some(crate::children::tenant_labels("team-a")),
        owner_references: Some(vec![owner("team-a", UID)]),
        ..ObjectMeta::default()
    }
}

fn existing(
    owners: Vec<OwnerReference>,
    tenant: Option<&str>,
    entries: Vec<ManagedFieldsEntry>,
) -> ObjectMeta {
    ObjectMeta {
        name: Some("team-a".into()),
        resource_version: Some("42".into()),
        labels: tenant.map(crate::children::tenant_labels),
        owner_references: Some(owners),
        managed_fields: Some(entries),
        ..ObjectMeta::default()
    }
}

fn foreign(text: &str) -> Holder {
    Holder::Foreign(text.to_string())
}

#[test]
fn whose_an_existing_object_is() {
    let ours_applied = || entry(FIELD_MANAGER, "Apply", tenant_label_fields());
    let platform = || entry("platform-team", "Apply", json!({"f:spec": {"f:path": {}}}));
    let cases = [
        (
            "our controller reference",
            existing(
                vec![owner("team-a", UID)],
                Some("team-a"),
                vec![ours_applied()],
            ),
            Holder::Ours,
        ),
        (
            "our controller reference, managed fields stripped",
            existing(vec![owner("team-a", UID)], None, vec![]),
            Holder::Ours,
        ),
        (
            "owner reference taken off, our manager set the tenant label",
            existing(vec![], Some("team-a"), vec![ours_applied(), platform()]),
            Holder::Ours,
        ),
        (
            "created by our POST, before the handover",
            existing(
                vec![],
                Some("team-a"),
                vec![entry(FIELD_MANAGER, "Update", tenant_label_fields())],
            ),
            Holder::Ours,
        ),
        (
            "an earlier TenantIdentity of this name",
            existing(
                vec![owner("team-a", "old-uid")],
                Some("team-a"),
                vec![ours_applied()],
            ),
            Holder::Ours,
        ),
        (
            "a platform team's object",
            existing(vec![], None, vec![platform()]),
            foreign("managed by platform-team"),
        ),
        (
            "someone copied our labels",
            existing(vec![], Some("team-a"), vec![platform()]),
            foreign("managed by platform-team"),
        ),
        (
            "our manager wrote only annotations (a vcluster's ServiceAccount)",
            existing(
                vec![],
                None,
                vec![
                    entry("helm", "Update", json!({"f:metadata": {"f:labels": {}}})),
                    entry(
                        FIELD_MANAGER,
                        "Apply",
                        json!({"f:metadata": {"f:annotations": {}}}),
                    ),
                ],
            ),
            foreign("managed by helm, tenant-identity-operator"),
        ),
        (
            "our tenant label, but on a status write",
            existing(
                vec![],
                Some("team-a"),
                vec![ManagedFieldsEntry {
                    subresource: Some("status".into()),
                    ..ours_applied()
                }],
            ),
            foreign("managed by tenant-identity-operator"),
        ),
        (
            "labelled for another tenant",
            existing(vec![], Some("team-b"), vec![ours_applied()]),
            foreign("managed by tenant-identity-operator"),
        ),
        (
            "another controller",
            existing(
                vec![OwnerReference {
                    api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
                    kind: "Kustomization".into(),
                    name: "platform".into(),
                    uid: "other".into(),
                    controller: Some(true),
                    block_owner_deletion: None,
                }],
                Some("team-a"),
                vec![ours_applied()],
            ),
            foreign("controlled by Kustomization platform"),
        ),
        (
            "another TenantIdentity",
            existing(
                vec![owner("team-b", "b-uid")],
                Some("team-a"),
                vec![ours_applied()],
            ),
            foreign("controlled by TenantIdentity team-b"),
        ),
        (
            "nothing recorded",
            existing(vec![], None, vec![]),
            foreign("no field manager recorded"),
        ),
    ];
    for (case, meta, want) in cases {
        assert_eq!(holder(&meta, &desired()), want, "{case}");
    }
}

#[test]
fn owner_references_that_are_not_controllers_decide_nothing() {
    let mut ours = owner("team-a", UID);
    ours.controller = None;
    let mut other = owner("platform", "other-uid");
    other.controller = Some(false);
    let platform = entry("platform-team", "Apply", json!({"f:data": {}}));
    let meta = existing(vec![ours, other.clone()], None, vec![platform]);
    assert_eq!(
        holder(&meta, &desired()),
        foreign("managed by platform-team")
    );
    let meta = existing(
        vec![other],
        Some("team-a"),
        vec![entry(FIELD_MANAGER, "Apply", tenant_label_fields())],
    );
    assert_eq!(holder(&meta, &desired()), Holder::Ours);
}

#[test]
fn the_create_entry_becomes_our_apply_entry() {
    let created = json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:data": {"f:x": {}}});
    let flux = entry("source-controller", "Update", json!({"f:status": {}}));
    let flux = ManagedFieldsEntry {
        subresource: Some("status".into()),
        ..flux
    };
    let meta = existing(
        vec![owner("team-a", UID)],
        Some("team-a"),
        vec![
            entry(FIELD_MANAGER, "Update", created.clone()),
            flux.clone(),
        ],
    );
    let patch = handover_patch(&meta).expect("an Update entry to move");
    assert_eq!(patch["metadata"]["resourceVersion"], json!("42"));
    let entries: Vec<ManagedFieldsEntry> =
        serde_json::from_value(patch["metadata"]["managedFields"].clone()).unwrap();
    assert_eq!(entries, vec![entry(FIELD_MANAGER, "Apply", created), flux]);

    // Once moved, nothing is left to do: steady state writes nothing.
    let meta = ObjectMeta {
        managed_fields: Some(entries),
        ..meta
    };
    assert_eq!(handover_patch(&meta), None);
}

#[test]
fn the_create_entry_is_merged_into_an_existing_apply_entry() {
    let meta = existing(
        vec![owner("team-a", UID)],
        Some("team-a"),
        vec![
            entry(FIELD_MANAGER, "Apply", json!({"f:spec": {"f:url": {}}})),
            entry(
                FIELD_MANAGER,
                "Update",
                json!({"f:spec": {"f:serviceAccountName": {}}, "f:metadata": {}}),
            ),
        ],
    );
    let patch = handover_patch(&meta).expect("an Update entry to move");
    let entries: Vec<ManagedFieldsEntry> =
        serde_json::from_value(patch["metadata"]["managedFields"].clone()).unwrap();
    assert_eq!(
        entries,
        vec![entry(
            FIELD_MANAGER,
            "Apply",
            json!({"f:spec": {"f:url": {}, "f:serviceAccountName": {}}, "f:metadata": {}}),
        )]
    );
}
