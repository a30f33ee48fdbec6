//! Azure Service Operator backend: one `FederatedIdentityCredential`
//! (`managedidentity.azure.com/v1api20230131`) per subject. ASO writes them to Entra and reports
//! Ready, which the operator mirrors into `FederatedCredentialsReady`.

use kube::api::ApiResource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;

use kube::{ResourceExt, api::DynamicObject};
use tenant_identity_crd::reasons;

use super::{Child, dynamic, is_current, owned_meta, str_field, upstream_condition};
use crate::{
    plan::Plan,
    status::{CredentialState, PartState},
};

pub fn resource() -> ApiResource {
    ApiResource {
        group: "managedidentity.azure.com".into(),
        version: "v1api20230131".into(),
        api_version: "managedidentity.azure.com/v1api20230131".into(),
        kind: "FederatedIdentityCredential".into(),
        plural: "federatedidentitycredentials".into(),
    }
}

pub fn build(ti: &TenantIdentity, plan: &Plan) -> Vec<Child> {
    let Some(aso) = ti.spec.azure.identity.azure_service_operator.as_ref() else {
        return Vec::new();
    };
    let owner = match (&aso.name, &aso.arm_id) {
        (Some(name), _) => json!({ "name": name }),
        (None, Some(arm_id)) => json!({ "armId": arm_id }),
        (None, None) => return Vec::new(),
    };
    let resource = resource();
    plan.subjects
        .iter()
        .map(|s| {
            let meta = owned_meta(ti, plan, s.credential_name.clone());
            let spec = json!({
                "owner": owner,
                "azureName": s.credential_name,
                "audiences": [plan.audience],
                "issuer": plan.issuer,
                "subject": s.subject,
            });
            Child {
                object: dynamic(&resource, meta, json!({ "spec": spec })),
                resource: resource.clone(),
            }
        })
        .collect()
}

// Mirror the credential backend's readiness.
pub fn observe(
    plan: &Plan,
    applied: &[DynamicObject],
) -> (PartState, Vec<(String, CredentialState)>) {
    let states: Vec<(String, CredentialState)> = applied
        .iter()
        .filter(|o| {
            o.types
                .as_ref()
                .is_some_and(|t| t.kind == "FederatedIdentityCredential")
        })
        .map(|o| (o.name_any(), state(o)))
        .collect();
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
    (part, states)
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
