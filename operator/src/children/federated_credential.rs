//! Azure Service Operator backend: one `FederatedIdentityCredential`
//! (`managedidentity.azure.com/v1api20230131`) per subject. ASO writes them to Entra and reports
//! Ready, which the operator mirrors into `FederatedCredentialsReady`.

use kube::api::ApiResource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;

use super::{Child, dynamic, owned_meta};
use crate::plan::Plan;

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
