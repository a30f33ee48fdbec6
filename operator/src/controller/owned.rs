//! Owned children: create the missing ones, server-side apply the ones that are ours, never
//! touch one that is not; delete the ones no longer wanted.
//!
//! Children have deterministic names, so an object of someone else (a platform team's
//! Kustomization, say) may already sit under one. Forced server-side apply would overwrite it and
//! add our controller reference, and garbage collection would then delete it with the
//! TenantIdentity. So an existing object is judged first, in one place: [`holder`], a pure
//! function of its metadata (a cached copy serves as well as a fresh read).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, ObjectMeta};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, Preconditions},
};
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tracing::{debug, info, warn};

use super::{Context, cache::Cached};
use tenant_identity_crd::kinds::{self, ChildKind};

use crate::{
    children::{Child, federated_credential},
    error::{Error, Result},
    names::{self, FIELD_MANAGER},
};

/// Make `child` exist as desired: create it when missing, converge it when it is ours, and
/// refuse ([`Error::ChildConflict`]) when an object of that name is someone else's.
///
/// The cache of the owned watches decides first: a child that is ours and unchanged since our
/// last apply of the same desired object is not written at all; one that is ours is applied
/// without being read; only an unknown one is looked up and judged on a fresh read.
pub(super) async fn apply_child(
    ctx: &Context,
    child: &Child,
    owner_uid: &str,
) -> Result<DynamicObject> {
    let ns = child.object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client(), &ns, &child.resource);
    let cache = &ctx.caches.children;
    let written = match cache.lookup(&child.resource, &child.object, owner_uid) {
        Cached::Current(cached) => return Ok(*cached),
        Cached::Stale {
            handover_pending: false,
        } => apply(&api, child).await?,
        Cached::Absent => create(&api, child).await?,
        Cached::Unknown | Cached::NotOurs | Cached::Stale { .. } => {
            match find(&api, child).await? {
                Some(existing) => converge(&api, child, &existing).await?,
                None => create(&api, child).await?,
            }
        }
    };
    cache.applied(&child.resource, &child.object, &written);
    Ok(written)
}

/// Server-side apply of an object known to be ours.
async fn apply(api: &Api<DynamicObject>, child: &Child) -> Result<DynamicObject> {
    api.patch(
        &child.name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&child.object),
    )
    .await
    .map_err(|e| api_error(child, e))
}

/// The object named like `child`, if any. A list selected on the name rather than a get: the
/// operator's role grants list (for prune and the watches) but not get on child kinds.
async fn find(api: &Api<DynamicObject>, child: &Child) -> Result<Option<DynamicObject>> {
    crate::read::by_name(api, &child.name())
        .await
        .map_err(|e| api_error(child, e))
}

/// Create (POST): it fails if the name was taken meanwhile, where an apply would take the object
/// over. The answer is the desired object, so no apply follows.
async fn create(api: &Api<DynamicObject>, child: &Child) -> Result<DynamicObject> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    match api.create(&params, &child.object).await {
        Ok(created) => Ok(hand_over(api, &created).await?.unwrap_or(created)),
        Err(kube::Error::Api(status)) if status.is_already_exists() => {
            // Created by someone since `find` looked: judge it like any existing object.
            match find(api, child).await? {
                Some(existing) => converge(api, child, &existing).await,
                None => Err(Error::KubernetesApiError(kube::Error::Api(status))),
            }
        }
        Err(e) => Err(api_error(child, e)),
    }
}

/// Server-side apply of an existing object, only if it is ours.
async fn converge(
    api: &Api<DynamicObject>,
    child: &Child,
    existing: &DynamicObject,
) -> Result<DynamicObject> {
    if let Holder::Foreign(holder) = holder(&existing.metadata, &child.object.metadata) {
        return Err(Error::ChildConflict {
            kind: child.resource.kind.clone(),
            namespace: existing.namespace().unwrap_or_default(),
            name: child.name(),
            holder,
        });
    }
    hand_over(api, existing).await?;
    apply(api, child).await
}

/// Finish a create: move the fields of our create's `Update` entry to our `Apply` entry (see
/// [`handover_patch`]). Returns the object written, or `None` when there was nothing to move or
/// the object changed since it was read (the next reconcile reads it again and moves them then).
async fn hand_over(
    api: &Api<DynamicObject>,
    existing: &DynamicObject,
) -> Result<Option<DynamicObject>> {
    let Some(patch) = handover_patch(&existing.metadata) else {
        return Ok(None);
    };
    let name = existing.name_any();
    match api
        .patch(
            &name,
            &PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            },
            &Patch::Merge(patch),
        )
        .await
    {
        Ok(obj) => Ok(Some(obj)),
        Err(kube::Error::Api(status)) if status.is_conflict() => {
            debug!(%name, "changed since read; handing over the create's fields later");
            Ok(None)
        }
        Err(e) => Err(Error::KubernetesApiError(e)),
    }
}

fn api_error(child: &Child, e: kube::Error) -> Error {
    match e {
        kube::Error::Api(status) if status.code == 404 && !child.resource.group.is_empty() => {
            Error::DependencyMissing {
                kind: child.resource.kind.clone(),
                api_version: child.resource.api_version.clone(),
            }
        }
        e => Error::KubernetesApiError(e),
    }
}

/// Whose an existing object named like a child is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// This TenantIdentity's: server-side apply may converge it.
    Ours,
    /// Someone else's, never written; the text says whose, for the status message.
    Foreign(String),
}

/// Judge an existing object (`existing`) by the metadata of the child we want under its name
/// (`desired`: our controller reference and tenant label). It is ours when
/// - its controller reference is ours (this TenantIdentity's uid), or
/// - our field manager set its tenant label to this tenant, and no other controller holds it: a
///   child whose owner reference was taken off, or one of an earlier TenantIdentity of the same
///   name (deleted with `--cascade=orphan`, or not yet garbage collected).
///
/// Our field manager alone is not enough: it also writes two annotations on the vcluster's
/// ServiceAccounts, which are not ours.
pub(crate) fn holder(existing: &ObjectMeta, desired: &ObjectMeta) -> Holder {
    let controller_of = |meta: &ObjectMeta| {
        meta.owner_references
            .iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .cloned()
    };
    if let Some(controller) = controller_of(existing) {
        let group = |api_version: &str| api_version.split_once('/').map(|(g, _)| g.to_string());
        match controller_of(desired) {
            Some(ours) if controller.uid == ours.uid => return Holder::Ours,
            // An earlier TenantIdentity of this name: ours if our field manager labelled it.
            Some(ours)
                if controller.kind == ours.kind
                    && controller.name == ours.name
                    && group(&controller.api_version) == group(&ours.api_version) => {}
            _ => {
                return Holder::Foreign(format!(
                    "controlled by {} {}",
                    controller.kind, controller.name
                ));
            }
        }
    }
    let tenant = desired
        .labels
        .as_ref()
        .and_then(|l| l.get(names::TENANT_LABEL));
    let labelled = tenant.is_some()
        && existing
            .labels
            .as_ref()
            .and_then(|l| l.get(names::TENANT_LABEL))
            == tenant;
    let entries = existing.managed_fields.as_deref().unwrap_or_default();
    if labelled && entries.iter().any(sets_tenant_label) {
        return Holder::Ours;
    }
    let mut managers: Vec<&str> = entries
        .iter()
        .filter_map(|e| e.manager.as_deref())
        .collect();
    managers.sort_unstable();
    managers.dedup();
    Holder::Foreign(if managers.is_empty() {
        "no field manager recorded".to_string()
    } else {
        format!("managed by {}", managers.join(", "))
    })
}

/// An entry of our field manager, on the object itself (not a subresource), owns our tenant label.
fn sets_tenant_label(entry: &ManagedFieldsEntry) -> bool {
    is_ours(entry, None)
        && entry
            .fields_v1
            .as_ref()
            .and_then(|f| f.0.get("f:metadata"))
            .and_then(|m| m.get("f:labels"))
            .and_then(|l| l.get(format!("f:{}", names::TENANT_LABEL)))
            .is_some()
}

/// `entry` is our field manager's on the object itself (with `operation`, when given).
fn is_ours(entry: &ManagedFieldsEntry, operation: Option<&str>) -> bool {
    entry.manager.as_deref() == Some(FIELD_MANAGER)
        && entry.subresource.as_deref().unwrap_or_default().is_empty()
        && operation.is_none_or(|op| entry.operation.as_deref() == Some(op))
}

/// A create records its fields under an `Update` entry of our field manager. Server-side apply
/// counts that entry as another manager: a field it co-owns would stay on the object after the
/// plan stops asking for it. This merge patch moves those fields into our `Apply` entry (as if
/// the object had been created by the apply), guarded by the resourceVersion read. `None`:
/// nothing to move.
fn handover_patch(meta: &ObjectMeta) -> Option<Value> {
    let entries = meta.managed_fields.as_ref()?;
    let resource_version = meta.resource_version.as_ref()?;
    let update = entries.iter().find(|e| is_ours(e, Some("Update")))?;
    let has_apply = entries.iter().any(|e| is_ours(e, Some("Apply")));
    let mut moved = Vec::with_capacity(entries.len());
    for entry in entries {
        if is_ours(entry, Some("Update")) {
            if !has_apply {
                moved.push(ManagedFieldsEntry {
                    operation: Some("Apply".to_string()),
                    ..entry.clone()
                });
            }
        } else if is_ours(entry, Some("Apply")) {
            let mut fields = entry
                .fields_v1
                .clone()
                .unwrap_or_else(|| FieldsV1(json!({})));
            if let Some(more) = &update.fields_v1 {
                union(&mut fields.0, &more.0);
            }
            moved.push(ManagedFieldsEntry {
                fields_v1: Some(fields),
                ..entry.clone()
            });
        } else {
            moved.push(entry.clone());
        }
    }
    Some(json!({"metadata": {"resourceVersion": resource_version, "managedFields": moved}}))
}

/// Union of two field sets in the FieldsV1 form (nested objects; a leaf is `{}`).
fn union(into: &mut Value, other: &Value) {
    let (Value::Object(into), Value::Object(other)) = (into, other) else {
        return;
    };
    for (key, value) in other {
        match into.get_mut(key) {
            Some(existing) => union(existing, value),
            None => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Delete owned children the spec no longer asks for. Only objects carrying our tenant label
/// AND a controller reference to this TenantIdentity's uid are candidates. A revocation prunes
/// everything (`desired` empty). A FederatedIdentityCredential is first told to go in Azure too
/// ([`manage_before_delete`]).
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
        // From the cache when its watch has listed; else (starting up, or the kind is not
        // watched) from the API server.
        let candidates =
            match ctx
                .caches
                .children
                .owned_by(&resource.kind, &ns, &ti.name_any(), &uid)
            {
                Some(names) => names,
                None => match api.list(&ListParams::default().labels(&selector)).await {
                    Ok(list) => list
                        .items
                        .into_iter()
                        .filter(|obj| {
                            obj.owner_references()
                                .iter()
                                .any(|o| o.uid == uid && o.controller == Some(true))
                        })
                        .map(|obj| (obj.name_any(), obj.uid().unwrap_or_default()))
                        .collect(),
                    // Kind not installed: nothing of it can exist.
                    Err(kube::Error::Api(ae)) if ae.code == 404 => continue,
                    Err(e) => return Err(Error::KubernetesApiError(e)),
                },
            };
        for (name, child_uid) in candidates {
            if keep.contains(&(resource.kind.clone(), name.clone())) {
                continue;
            }
            if resource.kind == ChildKind::FederatedCredential.kind_name()
                && !manage_before_delete(&api, &name, &child_uid).await?
            {
                continue;
            }
            info!(tenant = %ti.name_any(), kind = %resource.kind, %name, "deleting child no longer wanted");
            delete_exactly(&api, &name, child_uid).await?;
        }
    }
    Ok(())
}

/// Delete the object `name` only if it is still the one with `uid` (a precondition: never a
/// successor of the same name). Gone already, or another object now: nothing to do.
pub(super) async fn delete_exactly<K>(api: &Api<K>, name: &str, uid: String) -> Result<()>
where
    K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(ae)) if ae.code == 404 || ae.code == 409 => Ok(()),
        Err(e) => Err(Error::KubernetesApiError(e)),
    }
}

/// A FederatedIdentityCredential object the operator deletes (a subject gone from the spec, a
/// revocation) must take its credential in Azure with it, even under `deletionPolicy: Retain`
/// (which is for the TenantIdentity's own deletion, left to garbage collection): ASO reads the
/// reconcile policy from the object as it is when its finalizer handles the deletion, so the
/// object says `manage` before the delete is sent (`children::federated_credential`, which cites
/// ASO). A merge patch rather than an apply: the child is no longer desired, so there is no
/// object to apply, and a merge replaces the value whichever manager set it.
///
/// Returns whether to delete: false when the object is gone or is another one now (uid), or when
/// the write did not stick (an admission webhook put the policy back): then the object is kept,
/// visibly, rather than deleted while its credential stays trusted in Azure; the next reconcile
/// tries again.
async fn manage_before_delete(api: &Api<DynamicObject>, name: &str, uid: &str) -> Result<bool> {
    // ASO writes status on these objects, so the version read may be outdated by the patch:
    // read again a few times before leaving it to the reconcile's retry.
    const ATTEMPTS: usize = 3;
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let Some(existing) = crate::read::by_name(api, name)
            .await
            .map_err(Error::KubernetesApiError)?
        else {
            return Ok(false);
        };
        if existing.uid().as_deref() != Some(uid) {
            return Ok(false);
        }
        let Some(patch) = federated_credential::manage_patch(&existing.metadata) else {
            return Ok(true);
        };
        match api.patch(name, &params, &Patch::Merge(patch)).await {
            Ok(patched) if federated_credential::deletes_in_azure(&patched.metadata) => {
                return Ok(true);
            }
            Ok(_) => {
                warn!(%name, "the reconcile policy manage did not stick on the FederatedIdentityCredential (an admission webhook?); not deleting it, so that its credential is not left in Azure unseen");
                return Ok(false);
            }
            Err(kube::Error::Api(ae)) if ae.code == 404 => return Ok(false),
            Err(kube::Error::Api(ae)) if ae.is_conflict() && attempt < ATTEMPTS => {
                debug!(%name, "changed since read; reading it again");
            }
            Err(e) => return Err(Error::KubernetesApiError(e)),
        }
    }
}

#[cfg(test)]
mod tests;
