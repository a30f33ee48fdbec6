//! Owned children: server-side apply each desired child; delete the ones no longer wanted.

use std::collections::BTreeSet;

use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions},
};
use tenant_identity_crd::TenantIdentity;
use tracing::info;

use super::Context;
use tenant_identity_crd::kinds;

use crate::{
    children::Child,
    error::{Error, Result},
    names::{self, FIELD_MANAGER},
};

pub(super) async fn apply_child(client: &Client, child: &Child) -> Result<DynamicObject> {
    let ns = child.object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &child.resource);
    api.patch(
        &child.name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&child.object),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(ae) if ae.code == 404 && !child.resource.group.is_empty() => {
            Error::DependencyMissing {
                kind: child.resource.kind.clone(),
                api_version: child.resource.api_version.clone(),
            }
        }
        e => Error::KubernetesApiError(e),
    })
}

/// Delete owned children the spec no longer asks for. Only objects carrying our tenant label
/// AND a controller reference to this TenantIdentity's uid are candidates.
pub(super) async fn prune(ti: &TenantIdentity, desired: &[Child], ctx: &Context) -> Result<()> {
    let ns = ti.namespace().unwrap_or_default();
    let uid = ti.uid().unwrap_or_default();
    let keep: BTreeSet<(String, String)> = desired
        .iter()
        .map(|c| (c.resource.kind.clone(), c.name()))
        .collect();
    let selector = format!("{}={}", names::TENANT_LABEL, ti.name_any());
    for resource in kinds::owned_resources() {
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client(), &ns, &resource);
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            // Kind not installed: nothing of it can exist.
            Err(kube::Error::Api(ae)) if ae.code == 404 => continue,
            Err(e) => return Err(Error::KubernetesApiError(e)),
        };
        for obj in list.items {
            let ours = obj
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true));
            if !ours || keep.contains(&(resource.kind.clone(), obj.name_any())) {
                continue;
            }
            info!(tenant = %ti.name_any(), kind = %resource.kind, name = %obj.name_any(), "deleting child no longer wanted");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: obj.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&obj.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(ae)) if ae.code == 404 || ae.code == 409 => {}
                Err(e) => return Err(Error::KubernetesApiError(e)),
            }
        }
    }
    Ok(())
}
