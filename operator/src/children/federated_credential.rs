//! Azure Service Operator backend: one `FederatedIdentityCredential`
//! (`managedidentity.azure.com/v1api20230131`) per subject. ASO writes them to Entra and reports
//! Ready, which the operator mirrors into `FederatedCredentialsReady`.
//!
//! The objects are garbage-collected with the TenantIdentity, and ASO deletes in Azure what it
//! sees deleted in Kubernetes, unless the object says otherwise: under `deletionPolicy: Retain`
//! each carries ASO's reconcile-policy annotation with `detach-on-delete` (ASO still creates and
//! updates the credential, but skips the DELETE in Azure). Under `Delete` the annotation is not
//! sent, and server-side apply removes it from an object we applied it to before.
//!
//! Retain is about the deletion of the TenantIdentity only. A credential object the operator
//! deletes itself (a subject gone from the spec, a revocation) must take its credential in Azure
//! with it, as the ARM backend's delete does whatever the policy: before such a delete the object
//! is patched to say `manage` ([`manage_patch`]). Spelled out, not just the annotation removed:
//! without one on the object, ASO takes the namespace's annotation, then its own configured
//! default, and either may be `detach-on-delete`.
//!
//! Upstream (Azure/azure-service-operator): the annotation and its values are documented in
//! `docs/hugo/content/guide/annotations.md` ("serviceoperator.azure.com/reconcile-policy"; unknown
//! values mean `manage`); `v2/internal/reconcilers/generic/generic_reconciler.go` reads it when it
//! handles a deletion behind its finalizer (`GenericReconciler.delete` calls
//! `mergeReconcilePolicy` on the object as it is then: the object's annotation, else the
//! namespace's, else `DefaultReconcilePolicy`) and sends the DELETE to Azure only if
//! `AllowsDelete` (`v2/pkg/common/annotations/reconcile_policy.go`: `manage` only).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{ResourceExt, api::DynamicObject};
use serde_json::{Value, json};
use tenant_identity_crd::{DeletionPolicy, reasons};

use super::{Child, ChildKind, child, is_current, owned_meta, str_field, upstream_condition};
use crate::{
    plan::{AsoOwner, Backend, Plan},
    status::{CredentialState, CredentialsObserved, PartState},
};

/// The annotation Azure Service Operator reads an object's reconcile policy from.
pub const RECONCILE_POLICY_ANNOTATION: &str = "serviceoperator.azure.com/reconcile-policy";
/// The policy under which ASO sends PUT and GET to Azure but never DELETE: deleting the
/// Kubernetes object leaves the credential in Azure.
pub const DETACH_ON_DELETE: &str = "detach-on-delete";

/// ASO's default policy: PUT, GET and, when the object is deleted, DELETE in Azure.
pub const MANAGE: &str = "manage";

/// The object says `manage` itself, so ASO deletes its credential in Azure with it, whatever the
/// namespace or ASO's default say.
pub fn deletes_in_azure(meta: &ObjectMeta) -> bool {
    meta.annotations
        .as_ref()
        .and_then(|a| a.get(RECONCILE_POLICY_ANNOTATION))
        .is_some_and(|p| p == MANAGE)
}

/// The merge patch that makes the credential object `meta` say `manage` before the operator
/// deletes it, guarded by the resourceVersion read (the conflict of a concurrent write fails it);
/// `None` when it already does. Whoever set another policy, `detach-on-delete` or `skip` (our
/// apply under Retain, or anyone else): the object is this tenant's, and its delete is a
/// revocation that must reach Azure.
pub fn manage_patch(meta: &ObjectMeta) -> Option<Value> {
    if deletes_in_azure(meta) {
        return None;
    }
    Some(json!({
        "metadata": {
            "resourceVersion": meta.resource_version,
            "annotations": { RECONCILE_POLICY_ANNOTATION: MANAGE },
        }
    }))
}

/// The annotations a credential object carries under `policy`.
fn annotations(policy: DeletionPolicy) -> Option<BTreeMap<String, String>> {
    match policy {
        DeletionPolicy::Retain => Some(BTreeMap::from([(
            RECONCILE_POLICY_ANNOTATION.to_string(),
            DETACH_ON_DELETE.to_string(),
        )])),
        DeletionPolicy::Delete => None,
    }
}

pub fn build(plan: &Plan, owner: &OwnerReference) -> Vec<Child> {
    let Backend::AzureServiceOperator(aso) = &plan.backend else {
        return Vec::new();
    };
    let aso_owner = match aso {
        AsoOwner::Name(name) => json!({ "name": name }),
        AsoOwner::ArmId(arm_id) => json!({ "armId": arm_id }),
    };
    plan.subjects
        .iter()
        .map(|s| {
            let mut meta = owned_meta(plan, owner, s.credential_name.clone());
            meta.annotations = annotations(plan.deletion_policy);
            let spec = json!({
                "owner": aso_owner,
                "azureName": s.credential_name,
                "audiences": [s.audience],
                "issuer": plan.issuer,
                "subject": s.subject,
            });
            child(
                ChildKind::FederatedCredential,
                meta,
                json!({ "spec": spec }),
            )
        })
        .collect()
}

/// Mirror ASO's readiness of the applied credentials; `None` for other backends.
pub fn observe(plan: &Plan, applied: &[&DynamicObject]) -> Option<CredentialsObserved> {
    if !matches!(plan.backend, Backend::AzureServiceOperator(_)) {
        return None;
    }
    let states: Vec<(String, CredentialState)> =
        applied.iter().map(|o| (o.name_any(), state(o))).collect();
    let total = plan.subjects.len();
    let ready = states
        .iter()
        .filter(|(_, s)| *s == CredentialState::Ready)
        .count();
    let part = if let Some((name, CredentialState::Failed(msg))) = states
        .iter()
        .find(|(_, s)| matches!(s, CredentialState::Failed(_)))
    {
        PartState::waiting(
            reasons::CREDENTIALS_FAILED,
            format!("FederatedIdentityCredential {name}: {msg}"),
        )
    } else if ready == total {
        PartState::ready(
            reasons::CREDENTIALS_READY,
            format!("{total} federated credential(s) Ready in Azure Service Operator"),
        )
    } else {
        PartState::waiting(
            reasons::CREDENTIALS_PENDING,
            format!(
                "waiting for Azure Service Operator to report Ready on {} of {total} FederatedIdentityCredential(s)",
                total - ready
            ),
        )
    };
    Some(CredentialsObserved {
        part,
        states,
        written_identities: Vec::new(),
        rewritten: false,
    })
}

fn state(obj: &DynamicObject) -> CredentialState {
    let Some(ready) = upstream_condition(obj, "Ready") else {
        return CredentialState::Pending("waiting for Azure Service Operator".into());
    };
    let message = str_field(&ready, "message").to_string();
    if !is_current(obj, &ready) {
        return CredentialState::Pending(
            "Azure Service Operator has not seen the latest spec yet".into(),
        );
    }
    match str_field(&ready, "status") {
        "True" => CredentialState::Ready,
        "False" if str_field(&ready, "severity") == "Error" => {
            CredentialState::Failed(if message.is_empty() {
                str_field(&ready, "reason").to_string()
            } else {
                message
            })
        }
        _ => CredentialState::Pending(if message.is_empty() {
            "waiting for Azure Service Operator".into()
        } else {
            message
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(policy: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            resource_version: Some("7".into()),
            annotations: policy.map(|p| {
                BTreeMap::from([
                    (RECONCILE_POLICY_ANNOTATION.to_string(), p.to_string()),
                    ("other".to_string(), "kept".to_string()),
                ])
            }),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn any_policy_but_manage_is_patched_to_manage_under_the_version_read() {
        for policy in [None, Some(DETACH_ON_DELETE), Some("skip"), Some("Manage")] {
            assert!(!deletes_in_azure(&meta(policy)), "{policy:?}");
            assert_eq!(
                manage_patch(&meta(policy)),
                Some(json!({"metadata": {
                    "resourceVersion": "7",
                    "annotations": {RECONCILE_POLICY_ANNOTATION: MANAGE},
                }})),
                "{policy:?}"
            );
        }
    }

    #[test]
    fn an_object_saying_manage_needs_no_write() {
        assert!(deletes_in_azure(&meta(Some(MANAGE))));
        assert_eq!(manage_patch(&meta(Some(MANAGE))), None);
    }
}
