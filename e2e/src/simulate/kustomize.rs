//! Playing Flux's kustomize-controller at the two moments of a Kustomization's life the operator
//! depends on: it adds its finalizer ([`kustomize_controller_adds_finalizer`]), and when the
//! Kustomization is deleted its finalizer prunes what it applied, or does not
//! ([`kustomize_controller_finalizes`]).
//!
//! kustomize-controller (`internal/controller/kustomization_controller.go`, `finalize`) prunes on
//! deletion only if `impersonation.CanImpersonate(ctx)`: fluxcd/pkg
//! `runtime/client/impersonator.go` (`Impersonator.CanImpersonate`) GETs the ServiceAccount
//! `spec.serviceAccountName` (else `--default-service-account`) in the Kustomization's namespace
//! with the controller's own client, so on the cluster the Kustomization lives in, even when
//! `kubeConfig` points elsewhere. If the GET fails it logs "skiping pruning, failed to find
//! account to impersonate" and removes its finalizer anyway: what it applied stays.

use anyhow::{Context as _, bail};
use kube::{
    Api, Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams},
};
use serde_json::json;

use super::GITOPS_MANAGER;
use crate::{error::Result, objects};

/// `kustomizev1.KustomizationFinalizer`.
pub const KUSTOMIZATION_FINALIZER: &str = "finalizers.fluxcd.io";

/// What kustomize-controller's finalizer did with the objects it applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finalized {
    /// The account to impersonate was found: it pruned them.
    Pruned { account: String },
    /// "skiping pruning, failed to find account to impersonate": they stay.
    AccountMissing { account: String },
    /// `spec.prune: false`: nothing to prune.
    PruneOff,
}

/// kustomize-controller adds its finalizer on its first reconcile of a Kustomization.
pub async fn kustomize_controller_adds_finalizer(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<DynamicObject> {
    let api = objects::dynamic(client, ns, &objects::kustomization());
    let ks = api
        .get(name)
        .await
        .with_context(|| format!("cannot read Kustomization {ns}/{name}"))?;
    let mut finalizers = ks.finalizers().to_vec();
    if !finalizers.iter().any(|f| f == KUSTOMIZATION_FINALIZER) {
        finalizers.push(KUSTOMIZATION_FINALIZER.to_string());
    }
    set_finalizers(&api, &ks, finalizers)
        .await
        .with_context(|| format!("cannot add Flux's finalizer to Kustomization {ns}/{name}"))
}

/// Write the Kustomization's finalizers as kustomize-controller does (its field manager),
/// guarded by the resourceVersion it read.
async fn set_finalizers(
    api: &Api<DynamicObject>,
    ks: &DynamicObject,
    finalizers: Vec<String>,
) -> kube::Result<DynamicObject> {
    api.patch(
        &ks.name_any(),
        &PatchParams {
            field_manager: Some(GITOPS_MANAGER.to_string()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"metadata": {
            "finalizers": finalizers,
            "resourceVersion": ks.resource_version(),
        }})),
    )
    .await
}

/// kustomize-controller's `finalize` of a Kustomization being deleted: look up the account it
/// would impersonate (as `CanImpersonate` does), then remove its finalizer whatever it found.
/// The Kustomization must be terminating.
pub async fn kustomize_controller_finalizes(
    client: &Client,
    ns: &str,
    name: &str,
) -> Result<Finalized> {
    let api = objects::dynamic(client, ns, &objects::kustomization());
    let ks = api
        .get(name)
        .await
        .with_context(|| format!("cannot read Kustomization {ns}/{name}"))?;
    if ks.metadata.deletion_timestamp.is_none() {
        bail!("Kustomization {ns}/{name} is not being deleted");
    }
    let spec = &ks.data["spec"];
    let finalized = if spec["prune"].as_bool() != Some(true) {
        Finalized::PruneOff
    } else {
        // No --default-service-account here: the operator always names the account.
        let account = spec["serviceAccountName"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let found = account.is_empty()
            || objects::service_accounts(client, ns)
                .get_opt(&account)
                .await
                .with_context(|| format!("cannot read ServiceAccount {ns}/{account}"))?
                .is_some();
        if found {
            Finalized::Pruned { account }
        } else {
            Finalized::AccountMissing { account }
        }
    };
    let finalizers: Vec<String> = ks
        .finalizers()
        .iter()
        .filter(|f| *f != KUSTOMIZATION_FINALIZER)
        .cloned()
        .collect();
    set_finalizers(&api, &ks, finalizers)
        .await
        .with_context(|| {
            format!("cannot remove Flux's finalizer from Kustomization {ns}/{name}")
        })?;
    Ok(finalized)
}
