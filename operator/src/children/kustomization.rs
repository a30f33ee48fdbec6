//! Flux `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`) applying the tenant repository into
//! the vcluster through the kubeconfig Secret vcluster exports (`vc-<vc>`, key `config`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

use super::{Child, ChildKind, child, owned_meta};
use crate::{names, plan::Plan};

pub fn build(plan: &Plan, owner: &OwnerReference) -> Option<Child> {
    let git = plan.git.as_ref()?;
    let deploy = git.deploy.as_ref()?;
    let meta = owned_meta(plan, owner, plan.name.clone());
    let spec = json!({
        "interval": git.interval,
        "path": deploy.path,
        "prune": deploy.prune,
        "sourceRef": {"kind": "GitRepository", "name": plan.name},
        "kubeConfig": {"secretRef": {
            "name": names::vcluster_kubeconfig_secret(&plan.vcluster),
            "key": "config",
        }},
    });
    Some(child(
        ChildKind::Kustomization,
        meta,
        json!({ "spec": spec }),
    ))
}
