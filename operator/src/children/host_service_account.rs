//! Shared mode: the client-id / tenant-id annotations on the host workload ServiceAccount.
//!
//! The SA belongs to the vcluster Helm release. The operator never creates it (an SSA apply of a
//! missing object would, and Helm would then refuse to install the release), never owns it, and
//! applies only the two annotation keys, so field ownership says exactly what is ours.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use serde_json::json;

use super::{dynamic, identity_annotations};
use crate::plan::Plan;

pub fn resource() -> ApiResource {
    ApiResource::erase::<ServiceAccount>(&())
}

/// The apply configuration carrying only our annotations; `None` outside Shared mode.
pub fn annotations(plan: &Plan) -> Option<DynamicObject> {
    let name = plan.workload_service_account.clone()?;
    let meta = ObjectMeta {
        name: Some(name),
        namespace: Some(plan.namespace.clone()),
        annotations: Some(identity_annotations(plan)),
        ..ObjectMeta::default()
    };
    Some(dynamic(&resource(), meta, json!({})))
}

/// The apply configuration that releases every field we own on `name` (an apply that omits
/// fields a manager owned removes them, unless another manager owns them too).
pub fn release(namespace: &str, name: &str) -> DynamicObject {
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(namespace.to_string()),
        ..ObjectMeta::default()
    };
    dynamic(&resource(), meta, json!({}))
}
