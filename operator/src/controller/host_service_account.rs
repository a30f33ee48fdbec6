//! The vcluster's host workload ServiceAccount: Helm's object, on which the operator owns exactly
//! two annotations (Shared mode) and releases them when no longer wanted.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, Resource, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams},
};
use tenant_identity_crd::{TenantIdentity, reasons};
use tracing::info;

use super::{Context, valid};
use crate::{
    children::host_service_account,
    error::{Error, Result},
    names::{self, FIELD_MANAGER},
    plan::{self, Plan},
    status::PartState,
};

/// Shared mode: put our two annotations on the host workload SA if it exists; in any mode,
/// release them from SAs we annotated before and no longer want.
pub(super) async fn sync_host_service_account(
    ti: &TenantIdentity,
    plan: &Plan,
    ctx: &Context,
) -> Result<PartState> {
    let existing =
        release_host_annotations(ti, plan.workload_service_account.as_deref(), ctx).await?;
    let config_map = names::sync_rules_config_map(&plan.name);
    let Some(sa_name) = plan.workload_service_account.as_deref() else {
        return Ok(PartState::ready(
            reasons::HOST_SYNC_APPLIED,
            format!(
                "sync rules published in ConfigMap {config_map}; vcluster {} must carry them (HelmRelease valuesFrom) to sync ServiceAccounts to the host",
                plan.vcluster
            ),
        ));
    };
    if !existing.contains(sa_name) {
        return Ok(PartState::waiting(
            reasons::VIRTUAL_CLUSTER_NOT_FOUND,
            format!(
                "host ServiceAccount {}/{sa_name} does not exist: install vcluster {:?} in namespace {} (with the values in ConfigMap {config_map}), or set spec.virtualCluster.workloadServiceAccount",
                plan.namespace, plan.vcluster, plan.namespace
            ),
        ));
    }
    if let Some(patch) = host_service_account::annotations(plan) {
        let dynamic: Api<DynamicObject> = Api::namespaced_with(
            ctx.client(),
            &plan.namespace,
            &host_service_account::resource(),
        );
        dynamic
            .patch(
                sa_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::KubernetesApiError)?;
    }
    Ok(PartState::ready(
        reasons::HOST_SYNC_APPLIED,
        format!(
            "workload identity annotations applied to host ServiceAccount {sa_name}; sync rules in ConfigMap {config_map}"
        ),
    ))
}

/// Release our annotations from host ServiceAccounts (those we applied to and do not own as a
/// child) except `keep` and those another TenantIdentity of the namespace still wants. Returns
/// the names of the namespace's ServiceAccounts, so the caller needs no second read.
pub(super) async fn release_host_annotations(
    ti: &TenantIdentity,
    keep: Option<&str>,
    ctx: &Context,
) -> Result<BTreeSet<String>> {
    let ns = ti.namespace().unwrap_or_default();
    let wanted_by_others: BTreeSet<String> = ctx
        .tenants()
        .iter()
        .filter_map(|g| valid(g))
        .filter(|t| t.namespace().as_deref() == Some(ns.as_str()) && t.uid() != ti.uid())
        .filter(|t| t.meta().deletion_timestamp.is_none())
        .filter_map(plan::workload_service_account)
        .collect();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client(), &ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::KubernetesApiError)?;
    let mut existing = BTreeSet::new();
    for sa in list.items {
        let name = sa.name_any();
        existing.insert(name.clone());
        let applied_by_us = sa.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        });
        let is_child = sa
            .owner_references()
            .iter()
            .any(|o| o.kind == "TenantIdentity");
        if !applied_by_us
            || is_child
            || keep == Some(name.as_str())
            || wanted_by_others.contains(&name)
        {
            continue;
        }
        info!(tenant = %ti.name_any(), service_account = %name, "releasing workload identity annotations");
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(ctx.client(), &ns, &host_service_account::resource());
        match dynamic
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&host_service_account::release(&ns, &name)),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 => {}
            Err(e) => return Err(Error::KubernetesApiError(e)),
        }
    }
    Ok(existing)
}
