//! Flux `GitRepository` (`source.toolkit.fluxcd.io/v1`) with `provider: azure`: no PAT, Flux
//! exchanges a workload identity token for an Azure DevOps access token.

use kube::api::ApiResource;
use serde_json::{Map, Value, json};
use tenant_identity_crd::TenantIdentity;

use kube::api::DynamicObject;
use tenant_identity_crd::reasons;

use super::{Child, dynamic, is_current, owned_meta, str_field, upstream_condition};
use crate::{
    names,
    plan::{Plan, git_object_level},
    status::PartState,
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

/// Mirror the GitRepository's Ready (and Stalled) into GitSourceReady.
pub fn observe(
    ti: &TenantIdentity,
    applied: &[DynamicObject],
) -> (Option<PartState>, Option<(String, String)>) {
    if ti.spec.git.is_none() {
        return (None, None);
    }
    let Some(repo) = applied
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "GitRepository"))
    else {
        return (None, None);
    };
    let stalled = upstream_condition(repo, "Stalled")
        .filter(|c| str_field(c, "status") == "True")
        .map(|c| {
            (
                str_field(&c, "reason").to_string(),
                str_field(&c, "message").to_string(),
            )
        });
    if let Some((reason, message)) = &stalled {
        return (Some(PartState::failed(reason, message.clone())), stalled);
    }
    let part = match upstream_condition(repo, "Ready") {
        Some(c) if is_current(repo, &c) => {
            let reason = str_field(&c, "reason");
            let message = str_field(&c, "message").to_string();
            match str_field(&c, "status") {
                "True" => PartState::ready(reason, message),
                "False" => PartState::waiting(reason, message),
                _ => PartState::unknown(reason, message),
            }
        }
        _ => PartState::unknown(
            reasons::PROGRESSING,
            "waiting for Flux source-controller to reconcile the GitRepository",
        ),
    };
    (Some(part), None)
}
