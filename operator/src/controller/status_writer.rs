//! Writing status: server-side apply on the status subresource, skipped when nothing changed,
//! and an Event whenever the Ready condition changes.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use kube::{
    Api, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    core::error_boundary::InvalidObject,
    runtime::events::{Event, EventType},
};
use serde_json::json;
use tenant_identity_crd::{
    TenantIdentity, TenantIdentityStatus,
    conditions::{self, ALL_TYPES},
    reasons,
};
use tracing::{debug, warn};

use super::Context;
use crate::{
    error::{Error, Result},
    names::{self, FIELD_MANAGER},
    plan::SpecError,
    status::{self, Outcome, Summary},
};

/// Patch status with SSA on the status subresource (so a GitOps tool owning the spec never
/// conflicts with us), skipping the call when nothing changed, and publish an event when the
/// Ready condition changes.
pub(super) async fn write_status(
    ti: &TenantIdentity,
    ctx: &Context,
    summary: Summary,
) -> Result<()> {
    let now = Time(Timestamp::now());
    let previous = ti.status.clone().unwrap_or_default();
    let merged = conditions::merge(
        &previous.conditions,
        &summary.conditions,
        ti.metadata.generation,
        &now,
    );
    let requested_at = ti
        .annotations()
        .get(names::REQUESTED_AT_ANNOTATION)
        .filter(|_| !summary.request_pending)
        .cloned()
        .or(previous.last_handled_reconcile_at.clone());
    let status = TenantIdentityStatus {
        observed_generation: ti.metadata.generation,
        conditions: merged,
        issuer: summary.issuer,
        subjects: summary.subjects,
        host_service_accounts: summary.host_service_accounts,
        written_identities: summary.written_identities,
        last_handled_reconcile_at: requested_at,
        verification: summary.verification,
    };
    if status == previous {
        debug!(tenant = %ti.name_any(), "status unchanged");
        return Ok(());
    }
    let mut ours = status.clone();
    ours.conditions
        .retain(|c| ALL_TYPES.contains(&c.type_.as_str()));
    apply_status(ti, ctx, &ours).await?;

    let before = conditions::find(&previous.conditions, conditions::READY);
    let after = conditions::find(&status.conditions, conditions::READY);
    if let Some(after) = after
        && before.is_none_or(|b| b.status != after.status || b.reason != after.reason)
    {
        let event = Event {
            type_: if after.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: after.reason.clone(),
            note: Some(after.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx
            .services
            .recorder
            .publish(&event, &ti.object_ref(&()))
            .await
        {
            warn!(tenant = %ti.name_any(), error = %e, "could not publish event");
        }
    }
    Ok(())
}

/// Write-ahead of `status.writtenIdentities`: before the first write to an identity, the status
/// records it, so a crash between that write and the end of the reconcile can never leave a
/// credential on an identity the operator does not know to look at. The one status write that
/// is not the reconcile's final one; it happens once per identity.
pub(super) async fn record_write_target(
    ti: &TenantIdentity,
    ctx: &Context,
    target: &str,
) -> Result<()> {
    let mut status = ti.status.clone().unwrap_or_default();
    if status
        .written_identities
        .iter()
        .any(|w| w.eq_ignore_ascii_case(target))
    {
        return Ok(());
    }
    status.written_identities.push(target.to_string());
    status
        .conditions
        .retain(|c| ALL_TYPES.contains(&c.type_.as_str()));
    apply_status(ti, ctx, &status).await
}

async fn apply_status(
    ti: &TenantIdentity,
    ctx: &Context,
    status: &TenantIdentityStatus,
) -> Result<()> {
    let patch = json!({
        "apiVersion": TenantIdentity::api_version(&()),
        "kind": TenantIdentity::kind(&()),
        "status": status,
    });
    let api: Api<TenantIdentity> =
        Api::namespaced(ctx.client(), &ti.namespace().unwrap_or_default());
    api.patch_status(
        &ti.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::KubernetesApiError)?;
    Ok(())
}

/// A TenantIdentity the operator cannot read: say so in its status (Ready=False, Stalled) and
/// with an event, once; the rest of the tenants keep being reconciled.
pub(super) async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<()> {
    let ns = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    warn!(tenant = %format!("{ns}/{name}"), error = %invalid.error, "TenantIdentity cannot be read");
    let resource = ApiResource::erase::<TenantIdentity>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client(), &ns, &resource);
    let Some(live) = api
        .get_opt(&name)
        .await
        .map_err(Error::KubernetesApiError)?
    else {
        return Ok(());
    };
    let message = format!(
        "this operator version cannot read the object: {}; fix the spec or upgrade the operator",
        invalid.error
    );
    let generation = live.metadata.generation;
    let already = live
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(conditions::READY)
                    && c.get("reason").and_then(|t| t.as_str()) == Some(reasons::INVALID_SPEC)
                    && c.get("message").and_then(|t| t.as_str()) == Some(message.as_str())
                    && c.get("observedGeneration").and_then(|g| g.as_i64()) == generation
            })
        });
    if already {
        return Ok(());
    }
    let refused = status::summarize(Outcome::Refused(&SpecError::invalid(message.clone())), None);
    let now = Time(Timestamp::now());
    let conditions = conditions::merge(&[], &refused.conditions, generation, &now);
    let patch = json!({
        "apiVersion": TenantIdentity::api_version(&()),
        "kind": TenantIdentity::kind(&()),
        "status": {"observedGeneration": generation, "conditions": conditions},
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::KubernetesApiError)?;
    let event = Event {
        type_: EventType::Warning,
        reason: reasons::INVALID_SPEC.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .services
        .recorder
        .publish(&event, &live.object_ref(&resource))
        .await
    {
        warn!(error = %e, "could not publish event");
    }
    Ok(())
}
