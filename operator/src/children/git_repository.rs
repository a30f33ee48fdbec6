//! Flux `GitRepository` (`source.toolkit.fluxcd.io/v1`) with `provider: azure`: no PAT, Flux
//! exchanges a workload identity token for an Azure DevOps access token.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::DynamicObject;
use serde_json::{Map, Value, json};
use tenant_identity_crd::reasons;

use super::{Child, ChildKind, child, is_current, owned_meta, str_field, upstream_condition};
use crate::{
    names,
    plan::Plan,
    status::{GitObserved, PartState},
};

pub fn build(plan: &Plan, owner: &OwnerReference) -> Option<Child> {
    let git = plan.git.as_ref()?;
    let mut spec = Map::new();
    spec.insert("url".into(), json!(git.url));
    spec.insert("interval".into(), json!(git.interval));
    spec.insert("provider".into(), json!("azure"));
    if let Some(r) = &git.reference {
        spec.insert("ref".into(), serde_json::to_value(r).unwrap_or(Value::Null));
    }
    if git.object_level() {
        spec.insert(
            "serviceAccountName".into(),
            json!(names::git_service_account(&plan.name)),
        );
    }
    let meta = owned_meta(plan, owner, plan.name.clone());
    Some(child(
        ChildKind::GitRepository,
        meta,
        json!({ "spec": spec }),
    ))
}

/// Mirror the GitRepository's Ready (and Stalled); `None` when there is no git source.
pub fn observe(plan: &Plan, applied: &[&DynamicObject]) -> Option<GitObserved> {
    plan.git.as_ref()?;
    let repo = applied.first()?;
    let stalled = upstream_condition(repo, "Stalled")
        .filter(|c| str_field(c, "status") == "True")
        .map(|c| {
            (
                str_field(&c, "reason").to_string(),
                str_field(&c, "message").to_string(),
            )
        });
    if let Some((reason, message)) = &stalled {
        return Some(GitObserved {
            part: PartState::failed(reason, message.clone()),
            stalled,
        });
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
    Some(GitObserved {
        part,
        stalled: None,
    })
}
