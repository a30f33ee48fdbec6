//! ServiceAccount `<name>-git`: the identity Flux's source-controller impersonates for
//! ObjectLevel workload identity. Flux requires both the client-id and tenant-id annotations.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{Child, ChildKind, child, identity_annotations, owned_meta};
use crate::{names, plan::Plan};

pub fn build(plan: &Plan, owner: &OwnerReference) -> Option<Child> {
    if !plan.git_object_level() {
        return None;
    }
    let mut meta = owned_meta(plan, owner, names::git_service_account(&plan.name));
    meta.annotations = Some(identity_annotations(plan));
    Some(child(ChildKind::GitServiceAccount, meta, json!({})))
}
