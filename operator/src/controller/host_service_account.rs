//! The host ServiceAccounts the tenant's pods run as (the vcluster Helm release's workload
//! ServiceAccount in Shared mode, the ServiceAccounts vcluster syncs from the listed virtual ones
//! in PerServiceAccount mode): on each that exists the operator owns exactly two annotations, and
//! releases them when no longer wanted. Every apply names the uid the ServiceAccount cache saw,
//! so none creates an account or writes to a re-created one (`host_service_account::with_uid`). Then `HostSyncReady`: the host ServiceAccounts and whether
//! the vcluster's Flux HelmRelease really carries the sync rules (`children::vcluster_release`).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};
use tenant_identity_crd::{TenantIdentity, kinds::ObservedKind};
use tracing::info;

use super::{
    Context,
    cache::{Lookup, SlimServiceAccount, service_account_slim as slim},
    valid,
};
use crate::{
    children::{
        self, host_service_account,
        vcluster_release::{self, HostServiceAccounts, Release},
    },
    error::{Error, Result},
    names::FIELD_MANAGER,
    plan::Plan,
    status::PartState,
};

/// Put our two annotations on every host ServiceAccount of the plan that exists, release them
/// from ServiceAccounts we annotated before and no longer want, and say whether the vcluster
/// carries the sync rules.
pub(super) async fn sync_host_service_account(
    ti: &TenantIdentity,
    plan: &Plan,
    ctx: &Context,
) -> Result<PartState> {
    let existing = release_host_annotations(ti, Some(plan), ctx).await?;
    let dynamic: Api<DynamicObject> = Api::namespaced_with(
        ctx.client(),
        &plan.namespace,
        &host_service_account::resource(),
    );
    let mut accounts = HostServiceAccounts::default();
    let wanted = children::identity_annotations(plan);
    for name in host_service_account::names(plan) {
        let Some(account) = existing.get(&name) else {
            accounts.missing.push(name);
            continue;
        };
        // Already carries our annotations, applied by us: nothing to write.
        if account.applied_by_us
            && wanted
                .iter()
                .all(|(k, v)| account.annotations.get(k) == Some(v))
        {
            accounts.annotated.push(name);
            continue;
        }
        let config = host_service_account::with_uid(
            host_service_account::annotation(plan, &name),
            &account.uid,
        );
        match dynamic
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config),
            )
            .await
        {
            Ok(written) => {
                if let Some(rv) = written.resource_version() {
                    ctx.caches
                        .service_accounts
                        .wrote(&plan.namespace, &name, rv);
                }
                accounts.annotated.push(name)
            }
            // Deleted since the watch saw it (the vcluster went away), or re-created: nothing
            // to annotate now. The watch's event of that change reconciles again.
            Err(kube::Error::Api(ae)) if is_gone(&ae) => {
                info!(tenant = %ti.name_any(), service_account = %name, "host ServiceAccount gone or re-created since the cache saw it");
                accounts.missing.push(name)
            }
            Err(e) => return Err(Error::KubernetesApiError(e)),
        }
    }
    let release = match ctx.caches.release(&plan.namespace, &plan.vcluster) {
        Lookup::Found(hr) => ReleaseRead::Found(Box::new((*hr).clone())),
        // Not listed yet, or the kind is not watched (not served, or not readable): ask.
        Lookup::Absent if ctx.caches.releases.is_some() => ReleaseRead::Absent,
        Lookup::Absent | Lookup::Unknown => read_release(plan, ctx).await?,
    };
    let release = match &release {
        ReleaseRead::Absent => Release::Absent,
        ReleaseRead::Forbidden(message) => Release::Unreadable(message),
        ReleaseRead::Found(hr) => Release::Found(hr),
    };
    Ok(vcluster_release::host_sync(plan, release, &accounts))
}

enum ReleaseRead {
    Absent,
    Forbidden(String),
    Found(Box<DynamicObject>),
}

/// The vcluster's HelmRelease, if there is one. A cluster without Flux's HelmRelease kind answers
/// 404 like a missing object; without read access (chart value `rbac.flux=false`) the operator
/// cannot check, which status says, instead of failing the reconcile.
async fn read_release(plan: &Plan, ctx: &Context) -> Result<ReleaseRead> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        ctx.client(),
        &plan.namespace,
        &ObservedKind::VirtualClusterRelease.api_resource(),
    );
    match crate::read::by_name(&api, &plan.vcluster).await {
        Ok(Some(hr)) => Ok(ReleaseRead::Found(Box::new(hr))),
        Ok(None) => Ok(ReleaseRead::Absent),
        Err(kube::Error::Api(ae)) if ae.code == 403 => Ok(ReleaseRead::Forbidden(ae.message)),
        Err(e) => Err(Error::KubernetesApiError(e)),
    }
}

/// Release our annotations from host ServiceAccounts (those we applied to and do not own as a
/// child) except those `keep` wants and those another TenantIdentity of the namespace still
/// wants. Returns the namespace's ServiceAccounts (from the cache, or one list while it has not
/// synced), so the caller needs no second read.
pub(super) async fn release_host_annotations(
    ti: &TenantIdentity,
    keep: Option<&Plan>,
    ctx: &Context,
) -> Result<BTreeMap<String, SlimServiceAccount>> {
    let ns = ti.namespace().unwrap_or_default();
    let keep: BTreeSet<String> = keep
        .map(host_service_account::names)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let wanted_by_others: BTreeSet<String> = ctx
        .tenants_in(&ns)
        .iter()
        .filter_map(|g| valid(g))
        .filter(|t| t.uid() != ti.uid())
        .filter(|t| t.meta().deletion_timestamp.is_none())
        .flat_map(host_service_account::wanted)
        .collect();
    let existing = match ctx.caches.service_accounts.in_namespace(&ns) {
        Some(accounts) => accounts,
        None => {
            let api: Api<ServiceAccount> = Api::namespaced(ctx.client(), &ns);
            api.list_metadata(&ListParams::default())
                .await
                .map_err(Error::KubernetesApiError)?
                .items
                .iter()
                .map(|sa| (sa.name_any(), slim(sa)))
                .collect()
        }
    };
    for (name, sa) in &existing {
        if !sa.applied_by_us
            || sa.is_child
            || keep.contains(name)
            || wanted_by_others.contains(name)
        {
            continue;
        }
        info!(tenant = %ti.name_any(), service_account = %name, "releasing workload identity annotations");
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(ctx.client(), &ns, &host_service_account::resource());
        let config =
            host_service_account::with_uid(host_service_account::release(&ns, name), &sa.uid);
        match dynamic
            .patch(
                name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&config),
            )
            .await
        {
            Ok(_) => {}
            // Gone: nothing to release. Or re-created: the new account's watch event
            // reconciles again, with its uid.
            Err(kube::Error::Api(ae)) if is_gone(&ae) => {}
            Err(e) => return Err(Error::KubernetesApiError(e)),
        }
    }
    Ok(existing)
}

/// Whether an apply made by `host_service_account::with_uid` failed because the ServiceAccount
/// it named is gone (409 uid mismatch, or 404) or another one has its name now (422, the uid is
/// immutable): the answers `with_uid` describes.
fn is_gone(status: &kube::core::Status) -> bool {
    status.is_not_found()
        || (status.is_conflict() && status.message.contains("uid mismatch"))
        || (status.is_invalid()
            && (status.message.contains("metadata.uid")
                || status
                    .details
                    .as_ref()
                    .is_some_and(|d| d.causes.iter().any(|c| c.field == "metadata.uid"))))
}

#[cfg(test)]
mod tests;
