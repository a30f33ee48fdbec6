//! The client-id / tenant-id annotations on the host ServiceAccounts the tenant's pods run as:
//! `vc-workload-<vc>` in Shared mode, and in PerServiceAccount mode each listed virtual
//! ServiceAccount's synced host ServiceAccount `SafeConcatName(sa, "x", ns, "x", vc)`. The AKS
//! workload identity webhook reads them from the host ServiceAccount of the host pod: without
//! them it injects no `AZURE_CLIENT_ID` and the pods cannot log in.
//!
//! None of these ServiceAccounts is ours: the workload one belongs to the vcluster Helm release,
//! the synced ones to vcluster's ServiceAccount syncer. The operator never creates them (an SSA
//! apply of a missing object would, and Helm would then refuse to install the release), never
//! owns them, and applies only the two annotation keys, so field ownership says exactly what is
//! ours. The controller's applies name the uid its cache saw, so an account deleted since is not
//! created again, nor is one re-created under the same name written to ([`with_uid`]).
//! vcluster's ServiceAccount syncer updates labels and annotations in both directions between a
//! host ServiceAccount and its virtual one (loft-sh/vcluster,
//! `pkg/controllers/resources/serviceaccounts/syncer.go`, `serviceAccountSyncer::Sync`:
//! `translate.AnnotationsBidirectionalUpdate`), so the virtual ServiceAccount shows the
//! annotations too, and a tenant can change them there: the federated credential, not the
//! annotation, is the security boundary.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    ResourceExt,
    api::{ApiResource, DynamicObject, ObjectMeta},
};
use serde_json::json;
use tenant_identity_crd::{Mode, TenantIdentity};

use super::{dynamic, identity_annotations};
use crate::{names, plan::Plan};

pub fn resource() -> ApiResource {
    ApiResource::erase::<ServiceAccount>(&())
}

/// The host ServiceAccounts whose two annotations the plan owns, in subject order.
pub fn names(plan: &Plan) -> Vec<String> {
    plan.host_service_accounts()
}

/// The host ServiceAccounts a TenantIdentity wants annotated, read leniently from its spec (no
/// validation), so the controller can ask it of every TenantIdentity in its cache.
pub fn wanted(ti: &TenantIdentity) -> Vec<String> {
    let vc = &ti.spec.virtual_cluster;
    match vc.mode {
        Mode::Shared => crate::plan::workload_service_account(ti)
            .into_iter()
            .collect(),
        Mode::PerServiceAccount => {
            let vcluster = vc.name.clone().unwrap_or_else(|| ti.name_any());
            vc.service_accounts
                .iter()
                .map(|sa| names::synced_service_account_name(&sa.name, &sa.namespace, &vcluster))
                .collect()
        }
    }
}

/// The virtual ServiceAccount `(namespace, name)` behind a host ServiceAccount of the plan
/// (PerServiceAccount mode only).
pub fn virtual_of(plan: &Plan, host: &str) -> Option<(String, String)> {
    plan.virtual_service_accounts
        .iter()
        .find(|v| names::synced_service_account_name(&v.name, &v.namespace, &plan.vcluster) == host)
        .map(|v| (v.namespace.clone(), v.name.clone()))
}

/// The apply configuration carrying only our annotations on host ServiceAccount `name` (no uid:
/// render prints it offline, where there is none; the controller adds it with [`with_uid`]).
pub fn annotation(plan: &Plan, name: &str) -> DynamicObject {
    let meta = ObjectMeta {
        name: Some(name.to_string()),
        namespace: Some(plan.namespace.clone()),
        annotations: Some(identity_annotations(plan)),
        ..ObjectMeta::default()
    };
    dynamic(&resource(), meta, json!({}))
}

/// One apply configuration per host ServiceAccount of the plan.
pub fn annotations(plan: &Plan) -> Vec<DynamicObject> {
    names(plan)
        .iter()
        .map(|name| annotation(plan, name))
        .collect()
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

/// `config` for the ServiceAccount with uid `uid` only. An apply that names a uid never creates:
/// with no object of that name it fails with 409 Conflict "uid mismatch: the provided object
/// specified uid .., and no existing object was found" (k8s.io/apiserver
/// `pkg/endpoints/handlers/patch.go`, `patcher.applyPatch`); with an object of another uid it
/// fails with 422 Invalid "metadata.uid: .. field is immutable" (k8s.io/apiserver
/// `pkg/registry/rest/update.go`, `BeforeUpdate`). The uid is server metadata, so field
/// ownership is the same as without it. An empty uid (none known) leaves `config` as it is.
pub fn with_uid(mut config: DynamicObject, uid: &str) -> DynamicObject {
    if !uid.is_empty() {
        config.metadata.uid = Some(uid.to_string());
    }
    config
}
