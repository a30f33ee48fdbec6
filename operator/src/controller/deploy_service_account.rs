//! The host ServiceAccount kustomize-controller's finalizer looks up before it prunes
//! (`children::deploy_service_account`, which says why it must exist): created when no account
//! of that name exists, owned by the Kustomization as applied; an existing one, ours or not, is
//! left as it is. Accounts this Kustomization owns under another name (the tenant renamed
//! `git.deploy.serviceAccountName`) are deleted: kustomize-controller now looks up the new one,
//! and the old would otherwise stay until the Kustomization goes.
//!
//! Everything is read from the ServiceAccount watch's cache (a converged reconcile sends
//! nothing); one list of the namespace while it has not listed yet.
//!
//! The ServiceAccount watch maps the deploy account's events to the tenant whose Kustomization
//! names it (`children::deploy_service_account::wanted`, in `run.rs`), so an account deleted by
//! hand, or one garbage collected after its Kustomization was deleted and re-created, is created
//! again at once.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Api, ResourceExt,
    api::{DynamicObject, ListParams, PostParams},
    core::PartialObjectMeta,
};
use tenant_identity_crd::kinds::ChildKind;
use tracing::info;

use super::{
    Context,
    cache::{SlimServiceAccount, service_account_slim as slim},
    owned,
};
use crate::{
    children::deploy_service_account as deploy,
    error::{Error, Result},
    names::FIELD_MANAGER,
    plan::Plan,
};

/// What to write so that exactly the wanted account exists.
#[derive(Debug, Default, PartialEq, Eq)]
struct Writes {
    create: bool,
    /// (name, uid) of accounts our Kustomization owns under another name.
    delete: Vec<(String, String)>,
}

/// `accounts`: the namespace's accounts named `wanted` or owned by the Kustomization
/// `kustomization_uid` (any others are ignored).
fn writes(
    wanted: &str,
    kustomization_uid: &str,
    accounts: &BTreeMap<String, SlimServiceAccount>,
) -> Writes {
    Writes {
        // Whoever's it is, an account of that name is what kustomize-controller looks up.
        create: !accounts.contains_key(wanted),
        delete: accounts
            .iter()
            .filter(|(name, _)| name.as_str() != wanted)
            .filter_map(|(name, sa)| {
                let d = sa.deploy_account.as_ref()?;
                (d.kustomization_uid == kustomization_uid).then(|| (name.clone(), d.uid.clone()))
            })
            .collect(),
    }
}

/// After the children are applied: make the deploy account of the plan's Kustomization exist
/// on the host. `applied`: the children as applied (the Kustomization's uid is the owner's).
pub(super) async fn ensure_deploy_service_account(
    plan: &Plan,
    applied: &[DynamicObject],
    ctx: &Context,
) -> Result<()> {
    let Some(wanted) = deploy::name(plan) else {
        return Ok(());
    };
    let Some(owner) = applied
        .iter()
        .filter(|o| {
            o.types
                .as_ref()
                .is_some_and(|t| t.kind == ChildKind::Kustomization.kind_name())
        })
        .find(|o| o.name_any() == plan.name)
        .and_then(deploy::owner)
    else {
        return Ok(());
    };
    let ns = &plan.namespace;
    let relevant = |name: &str, sa: &SlimServiceAccount| {
        name == wanted
            || sa
                .deploy_account
                .as_ref()
                .is_some_and(|d| d.kustomization_uid == owner.uid)
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client(), ns);
    let accounts = match ctx.caches.service_accounts.select(ns, relevant) {
        Some(accounts) => accounts,
        None => api
            .list_metadata(&ListParams::default())
            .await
            .map_err(Error::KubernetesApiError)?
            .items
            .iter()
            .map(|sa| (sa.name_any(), slim(sa)))
            .filter(|(name, sa)| relevant(name, sa))
            .collect(),
    };
    let writes = writes(&wanted, &owner.uid, &accounts);
    if writes.create
        && let Some(sa) = deploy::build(plan, Some(&owner))
    {
        create(&api, ctx, &sa).await?;
    }
    for (name, uid) in writes.delete {
        info!(tenant = %plan.name, service_account = %name, "deleting the deploy account no longer named");
        owned::delete_exactly(&api, &name, uid).await?;
    }
    Ok(())
}

/// Create (POST, never an apply that could take over an account of that name).
async fn create(api: &Api<ServiceAccount>, ctx: &Context, sa: &ServiceAccount) -> Result<()> {
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    info!(namespace = %sa.namespace().unwrap_or_default(), service_account = %sa.name_any(), "creating the deploy account kustomize-controller's finalizer looks up");
    match api.create(&params, sa).await {
        Ok(created) => {
            ctx.caches.service_accounts.created(&PartialObjectMeta {
                metadata: created.metadata,
                ..PartialObjectMeta::default()
            });
            Ok(())
        }
        // Someone created one since the cache looked: it satisfies the check as well.
        Err(kube::Error::Api(ae)) if ae.code == 409 => Ok(()),
        Err(e) => Err(Error::KubernetesApiError(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::cache::DeployAccount;

    fn account(owner: Option<&str>) -> SlimServiceAccount {
        SlimServiceAccount {
            deploy_account: owner.map(|k| DeployAccount {
                uid: format!("uid-of-{k}"),
                kustomization_uid: k.to_string(),
            }),
            ..SlimServiceAccount::default()
        }
    }

    #[test]
    fn create_only_when_no_account_of_the_name_and_delete_only_ours_renamed() {
        let with = |entries: &[(&str, Option<&str>)]| -> BTreeMap<String, SlimServiceAccount> {
            entries
                .iter()
                .map(|(n, o)| (n.to_string(), account(*o)))
                .collect()
        };
        /// (name, the Kustomization that owns it, if one does)
        type Accounts<'a> = &'a [(&'a str, Option<&'a str>)];
        // (accounts, create, deleted)
        let cases: [(Accounts, bool, &[&str]); 6] = [
            (&[], true, &[]),
            // Ours already.
            (&[("team-a-deploy", Some("ks"))], false, &[]),
            // A platform team's (or any other) account of that name: left alone.
            (&[("team-a-deploy", None)], false, &[]),
            // Ours from an earlier Kustomization: garbage collection takes it once that one is
            // gone, and a later reconcile creates it again.
            (&[("team-a-deploy", Some("old-ks"))], false, &[]),
            // Renamed: the new one created, the old one (ours) deleted.
            (&[("old-name", Some("ks"))], true, &["old-name"]),
            // Another Kustomization's account under another name: not ours to delete.
            (
                &[
                    ("team-a-deploy", Some("ks")),
                    ("team-b-deploy", Some("other")),
                ],
                false,
                &[],
            ),
        ];
        for (accounts, create, deleted) in cases {
            let w = writes("team-a-deploy", "ks", &with(accounts));
            assert_eq!(w.create, create, "{accounts:?}");
            let names: Vec<&str> = w.delete.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, deleted, "{accounts:?}");
            for (name, uid) in &w.delete {
                assert_eq!(uid, "uid-of-ks", "{name}: the uid precondition");
            }
        }
    }
}
