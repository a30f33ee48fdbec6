//! Flux `GitRepository` (`source.toolkit.fluxcd.io/v1`) with `provider: azure`: no PAT, Flux
//! exchanges a workload identity token for an Azure DevOps access token.

use kube::api::ApiResource;
use serde_json::{Map, Value, json};
use tenant_identity_crd::TenantIdentity;

use super::{Child, dynamic, owned_meta};
use crate::{
    names,
    plan::{Plan, git_object_level},
};

pub fn resource() -> ApiResource {
    ApiResource {
        group: "source.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "source.toolkit.fluxcd.io/v1".into(),
        kind: "GitRepository".into(),
        plural: "gitrepositories".into(),
    }
}

pub fn build(ti: &TenantIdentity, plan: &Plan) -> Option<Child> {
    let git = ti.spec.git.as_ref()?;
    let resource = resource();
    let mut spec = Map::new();
    spec.insert("url".into(), json!(git.url));
    spec.insert("interval".into(), json!(git.interval));
    spec.insert("provider".into(), json!("azure"));
    if let Some(r) = &git.reference {
        spec.insert("ref".into(), serde_json::to_value(r).unwrap_or(Value::Null));
    }
    if git_object_level(ti) {
        spec.insert(
            "serviceAccountName".into(),
            json!(names::git_service_account(&plan.name)),
        );
    }
    let meta = owned_meta(ti, plan, plan.name.clone());
    Some(Child {
        object: dynamic(&resource, meta, json!({ "spec": spec })),
        resource,
    })
}
