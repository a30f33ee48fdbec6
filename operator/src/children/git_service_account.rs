//! ServiceAccount `<name>-git`: the identity Flux's source-controller impersonates for
//! ObjectLevel workload identity. Flux requires both the client-id and tenant-id annotations.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::ApiResource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;

use super::{Child, dynamic, identity_annotations, owned_meta};
use crate::{
    names,
    plan::{Plan, git_object_level},
};

pub fn resource() -> ApiResource {
    ApiResource::erase::<ServiceAccount>(&())
}

pub fn build(ti: &TenantIdentity, plan: &Plan) -> Option<Child> {
    if !git_object_level(ti) {
        return None;
    }
    let resource = resource();
    let mut meta = owned_meta(ti, plan, names::git_service_account(&plan.name));
    meta.annotations = Some(identity_annotations(plan));
    Some(Child {
        object: dynamic(&resource, meta, json!({})),
        resource,
    })
}
