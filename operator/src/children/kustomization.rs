//! Flux `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`) applying the tenant repository into
//! the vcluster through the kubeconfig Secret vcluster exports (`vc-<vc>`, key `config`).

use kube::api::ApiResource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;

use super::{Child, dynamic, owned_meta};
use crate::{names, plan::Plan};

pub fn resource() -> ApiResource {
    ApiResource {
        group: "kustomize.toolkit.fluxcd.io".into(),
        version: "v1".into(),
        api_version: "kustomize.toolkit.fluxcd.io/v1".into(),
        kind: "Kustomization".into(),
        plural: "kustomizations".into(),
    }
}

pub fn build(ti: &TenantIdentity, plan: &Plan) -> Option<Child> {
    let git = ti.spec.git.as_ref()?;
    let deploy = git.deploy.as_ref()?;
    let resource = resource();
    let meta = owned_meta(ti, plan, plan.name.clone());
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
    Some(Child {
        object: dynamic(&resource, meta, json!({ "spec": spec })),
        resource,
    })
}
