//! Playing the other controllers of a real cluster: Azure Service Operator marking credentials
//! Ready, Flux's source-controller reporting on a GitRepository, Flux's helm-controller reporting
//! on the vcluster HelmRelease, Flux's kustomize-controller finalizing a Kustomization (`kustomize`),
//! the vcluster Helm release creating its workload ServiceAccount, and vcluster's ServiceAccount
//! syncer creating the host ServiceAccounts of virtual ones. Each writes as the real one would:
//! its own field manager, the status subresource, `observedGeneration`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Client, ResourceExt,
    api::{DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{error::Result, objects};

mod converge;
mod kustomize;

pub use converge::{Entra, aso_credential_in_entra, converge, converge_in_entra, everything_ready};
pub use kustomize::{
    Finalized, KUSTOMIZATION_FINALIZER, kustomize_controller_adds_finalizer,
    kustomize_controller_finalizes,
};

pub const ASO_MANAGER: &str = "azure-service-operator";
pub const FLUX_SOURCE_MANAGER: &str = "source-controller";
pub const HELM_MANAGER: &str = "helm";
/// Flux's helm-controller, which writes a HelmRelease's status.
pub const FLUX_HELM_MANAGER: &str = "helm-controller";
/// The platform's GitOps applying the vcluster HelmRelease (Flux's kustomize-controller).
pub const GITOPS_MANAGER: &str = "kustomize-controller";
/// vcluster's syncer, which creates the host objects of virtual ones.
pub const VCLUSTER_SYNCER_MANAGER: &str = "vcluster";

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str, generation: i64) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": now(),
    })
}

async fn patch_status(
    client: &Client,
    obj: &DynamicObject,
    resource: &kube::api::ApiResource,
    manager: &str,
    status: Value,
) -> Result<DynamicObject> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let patch = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": status,
    });
    objects::dynamic(client, &ns, resource)
        .patch_status(
            &name,
            &PatchParams::apply(manager).force(),
            &Patch::Apply(&patch),
        )
        .await
        .with_context(|| format!("cannot patch status of {} {ns}/{name}", resource.kind))
}

/// ASO: the credential exists in Entra (`Ready=True, reason=Succeeded`).
pub async fn aso_credential_ready(client: &Client, obj: &DynamicObject) -> Result<DynamicObject> {
    let generation = obj.metadata.generation.unwrap_or(1);
    patch_status(
        client,
        obj,
        &objects::federated_credential(),
        ASO_MANAGER,
        json!({"conditions": [condition("Ready", "True", "Succeeded", "", generation)]}),
    )
    .await
}

/// ASO marks every credential of `tenant` Ready; returns how many.
pub async fn aso_all_credentials_ready(client: &Client, ns: &str, tenant: &str) -> Result<usize> {
    let creds = objects::credentials(client, ns, tenant).await?;
    for obj in creds.values() {
        aso_credential_ready(client, obj).await?;
    }
    Ok(creds.len())
}

/// The GitRepository of `tenant` (named like the tenant).
pub async fn git_repository(client: &Client, ns: &str, name: &str) -> Result<DynamicObject> {
    objects::dynamic(client, ns, &objects::git_repository())
        .get(name)
        .await
        .with_context(|| format!("GitRepository {ns}/{name}"))
}

/// Flux: the artifact is stored (`Ready=True, reason=Succeeded`).
pub async fn flux_git_ready(client: &Client, ns: &str, name: &str) -> Result<DynamicObject> {
    let repo = git_repository(client, ns, name).await?;
    let generation = repo.metadata.generation.unwrap_or(1);
    patch_status(
        client,
        &repo,
        &objects::git_repository(),
        FLUX_SOURCE_MANAGER,
        json!({
            "observedGeneration": generation,
            "conditions": [
                condition("Ready", "True", "Succeeded", "stored artifact for revision 'main@sha1:0123456789abcdef0123456789abcdef01234567'", generation),
                condition("ArtifactInStorage", "True", "Succeeded", "stored artifact for revision 'main@sha1:0123456789abcdef0123456789abcdef01234567'", generation),
            ],
        }),
    )
    .await
}

/// Flux: a terminal failure (`Stalled=True` and `Ready=False` with `reason`).
pub async fn flux_git_stalled(
    client: &Client,
    ns: &str,
    name: &str,
    reason: &str,
    message: &str,
) -> Result<DynamicObject> {
    let repo = git_repository(client, ns, name).await?;
    let generation = repo.metadata.generation.unwrap_or(1);
    patch_status(
        client,
        &repo,
        &objects::git_repository(),
        FLUX_SOURCE_MANAGER,
        json!({
            "observedGeneration": generation,
            "conditions": [
                condition("Stalled", "True", reason, message, generation),
                condition("Ready", "False", reason, message, generation),
            ],
        }),
    )
    .await
}

/// Flux: fetching failed with an authentication error (`Ready=False`, retried).
pub async fn flux_git_auth_failed(
    client: &Client,
    ns: &str,
    name: &str,
    message: &str,
) -> Result<DynamicObject> {
    let repo = git_repository(client, ns, name).await?;
    let generation = repo.metadata.generation.unwrap_or(1);
    patch_status(
        client,
        &repo,
        &objects::git_repository(),
        FLUX_SOURCE_MANAGER,
        json!({
            "observedGeneration": generation,
            "conditions": [
                condition("FetchFailed", "True", "AuthenticationFailed", message, generation),
                condition("Ready", "False", "AuthenticationFailed", message, generation),
            ],
        }),
    )
    .await
}

/// Labels and annotations Helm puts on the objects of release `release`.
pub fn helm_metadata(
    release: &str,
    ns: &str,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let labels = BTreeMap::from([
        (
            "app.kubernetes.io/managed-by".to_string(),
            "Helm".to_string(),
        ),
        ("app".to_string(), "vcluster".to_string()),
        ("release".to_string(), release.to_string()),
    ]);
    let annotations = BTreeMap::from([
        ("meta.helm.sh/release-name".to_string(), release.to_string()),
        ("meta.helm.sh/release-namespace".to_string(), ns.to_string()),
    ]);
    (labels, annotations)
}

/// The vcluster Helm release creates its host workload ServiceAccount `vc-workload-<vc>`.
pub async fn helm_workload_service_account(
    client: &Client,
    ns: &str,
    vcluster: &str,
) -> Result<ServiceAccount> {
    let name = format!("vc-workload-{vcluster}");
    let (labels, annotations) = helm_metadata(vcluster, ns);
    let sa = ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        ..Default::default()
    };
    let params = PostParams {
        field_manager: Some(HELM_MANAGER.to_string()),
        ..PostParams::default()
    };
    objects::service_accounts(client, ns)
        .create(&params, &sa)
        .await
        .with_context(|| format!("cannot create ServiceAccount {ns}/{name}"))
}

/// The `valuesFrom` entry that makes a vcluster HelmRelease take `tenant`'s sync rules.
pub fn sync_rules_values_from(tenant: &str) -> Value {
    json!({"kind": "ConfigMap", "name": objects::sync_rules_config_map(tenant), "valuesKey": "values.yaml"})
}

/// The platform's GitOps applies the vcluster HelmRelease `vcluster` (chart `vcluster` from the
/// loft HelmRepository, as the README's tenants repository does) with `values_from` and inline
/// `values` (JSON null for none), server-side, as kustomize-controller would.
pub async fn apply_vcluster_release(
    client: &Client,
    ns: &str,
    vcluster: &str,
    values_from: Vec<Value>,
    values: Value,
) -> Result<DynamicObject> {
    let resource = objects::helm_release();
    let mut spec = json!({
        "interval": "10m",
        "chart": {"spec": {
            "chart": "vcluster",
            "version": ">=0.21.0 <1.0.0",
            "sourceRef": {"kind": "HelmRepository", "name": "loft"},
        }},
        "valuesFrom": values_from,
    });
    if !values.is_null() {
        spec["values"] = values;
    }
    let release = json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": vcluster, "namespace": ns},
        "spec": spec,
    });
    objects::dynamic(client, ns, &resource)
        .patch(
            vcluster,
            &PatchParams::apply(GITOPS_MANAGER).force(),
            &Patch::Apply(&release),
        )
        .await
        .with_context(|| format!("cannot apply HelmRelease {ns}/{vcluster}"))
}

/// The vcluster HelmRelease of `vcluster`.
pub async fn vcluster_release(client: &Client, ns: &str, vcluster: &str) -> Result<DynamicObject> {
    objects::dynamic(client, ns, &objects::helm_release())
        .get(vcluster)
        .await
        .with_context(|| format!("HelmRelease {ns}/{vcluster}"))
}

/// helm-controller: the release is installed or upgraded to `chart_version` for its current
/// generation (`Ready=True`, `Released=True`, the release in `status.history`).
pub async fn helm_release_ready(
    client: &Client,
    ns: &str,
    vcluster: &str,
    chart_version: &str,
) -> Result<DynamicObject> {
    let hr = vcluster_release(client, ns, vcluster).await?;
    let generation = hr.metadata.generation.unwrap_or(1);
    let message = format!(
        "Helm upgrade succeeded for release {ns}/{vcluster}.v{generation} with chart vcluster@{chart_version}"
    );
    patch_status(
        client,
        &hr,
        &objects::helm_release(),
        FLUX_HELM_MANAGER,
        json!({
            "observedGeneration": generation,
            "lastAttemptedGeneration": generation,
            "lastAttemptedRevision": chart_version,
            "lastAttemptedReleaseAction": "upgrade",
            "conditions": [
                condition("Ready", "True", "UpgradeSucceeded", &message, generation),
                condition("Released", "True", "UpgradeSucceeded", &message, generation),
            ],
            "history": [{
                "chartName": "vcluster",
                "chartVersion": chart_version,
                "appVersion": chart_version,
                "configDigest": "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "digest": "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210",
                "firstDeployed": now(),
                "lastDeployed": now(),
                "name": vcluster,
                "namespace": ns,
                "status": "deployed",
                "version": generation,
            }],
        }),
    )
    .await
}

/// helm-controller is running an upgrade (`Ready=Unknown`, `Reconciling=True`).
pub async fn helm_release_progressing(
    client: &Client,
    ns: &str,
    vcluster: &str,
) -> Result<DynamicObject> {
    let hr = vcluster_release(client, ns, vcluster).await?;
    let generation = hr.metadata.generation.unwrap_or(1);
    let message = "Running 'upgrade' action with timeout of 5m0s";
    patch_status(
        client,
        &hr,
        &objects::helm_release(),
        FLUX_HELM_MANAGER,
        json!({
            "observedGeneration": generation,
            "lastAttemptedGeneration": generation,
            "conditions": [
                condition("Reconciling", "True", "Progressing", message, generation),
                condition("Ready", "Unknown", "Progressing", message, generation),
            ],
        }),
    )
    .await
}

/// helm-controller: the upgrade failed (`Ready=False, reason=UpgradeFailed`), and with `stalled`
/// it stopped retrying (`Stalled=True, reason=RetriesExceeded`).
pub async fn helm_release_failed(
    client: &Client,
    ns: &str,
    vcluster: &str,
    stalled: bool,
) -> Result<DynamicObject> {
    let hr = vcluster_release(client, ns, vcluster).await?;
    let generation = hr.metadata.generation.unwrap_or(1);
    let message = "Helm upgrade failed for release vcluster: context deadline exceeded";
    let mut conditions = vec![condition(
        "Ready",
        "False",
        "UpgradeFailed",
        message,
        generation,
    )];
    if stalled {
        conditions.push(condition(
            "Stalled",
            "True",
            "RetriesExceeded",
            "Failed to upgrade after 1 attempt(s)",
            generation,
        ));
    } else {
        conditions.push(condition(
            "Reconciling",
            "True",
            "ProgressingWithRetry",
            message,
            generation,
        ));
    }
    patch_status(
        client,
        &hr,
        &objects::helm_release(),
        FLUX_HELM_MANAGER,
        json!({"observedGeneration": generation, "conditions": conditions}),
    )
    .await
}

/// A host ServiceAccount as vcluster's syncer creates it: labelled with its vcluster and, when
/// known, labelled and annotated with the virtual object it translates.
fn syncer_service_account(
    ns: &str,
    host_name: &str,
    vcluster: &str,
    virtual_object: Option<(&str, &str)>,
) -> ServiceAccount {
    let mut labels = BTreeMap::from([(
        "vcluster.loft.sh/managed-by".to_string(),
        vcluster.to_string(),
    )]);
    let annotations = virtual_object.map(|(virtual_ns, virtual_name)| {
        labels.insert(
            "vcluster.loft.sh/namespace".to_string(),
            virtual_ns.to_string(),
        );
        BTreeMap::from([
            (
                "vcluster.loft.sh/object-name".to_string(),
                virtual_name.to_string(),
            ),
            (
                "vcluster.loft.sh/object-namespace".to_string(),
                virtual_ns.to_string(),
            ),
        ])
    });
    ServiceAccount {
        metadata: kube::api::ObjectMeta {
            name: Some(host_name.to_string()),
            namespace: Some(ns.to_string()),
            labels: Some(labels),
            annotations,
            ..Default::default()
        },
        automount_service_account_token: Some(false),
        ..Default::default()
    }
}

/// vcluster's syncer writes as its own field manager.
fn syncer_params() -> PostParams {
    PostParams {
        field_manager: Some(VCLUSTER_SYNCER_MANAGER.to_string()),
        ..PostParams::default()
    }
}

/// vcluster's ServiceAccount syncer: the tenant created virtual ServiceAccount
/// `virtual_ns/virtual_name`, and vcluster creates its host ServiceAccount `host_name` (labels
/// and annotations naming the virtual object, as vcluster's translator does).
pub async fn vcluster_synced_service_account(
    client: &Client,
    ns: &str,
    vcluster: &str,
    virtual_ns: &str,
    virtual_name: &str,
    host_name: &str,
) -> Result<ServiceAccount> {
    let sa = syncer_service_account(ns, host_name, vcluster, Some((virtual_ns, virtual_name)));
    let params = syncer_params();
    objects::service_accounts(client, ns)
        .create(&params, &sa)
        .await
        .with_context(|| format!("cannot create ServiceAccount {ns}/{host_name}"))
}

/// PerServiceAccount tenants: the tenant created every virtual ServiceAccount it federates, and
/// vcluster synced each to the host. The host names are the ones the TenantIdentity reports
/// (`status.hostServiceAccounts`; the modes scenario checks them against vcluster's vectors).
/// Returns how many were created; Shared tenants get none (their workload ServiceAccount is the
/// Helm release's: [`helm_workload_service_account`]).
pub async fn vcluster_syncs_service_accounts(
    client: &Client,
    ns: &str,
    ti: &tenant_identity_crd::TenantIdentity,
) -> Result<usize> {
    if ti.spec.virtual_cluster.mode != tenant_identity_crd::Mode::PerServiceAccount {
        return Ok(0);
    }
    let vcluster = ti
        .spec
        .virtual_cluster
        .name
        .clone()
        .unwrap_or_else(|| ti.name_any());
    let api = objects::service_accounts(client, ns);
    let mut created = 0;
    for host in ti
        .status
        .iter()
        .flat_map(|s| s.host_service_accounts.iter())
    {
        if api.get_opt(host).await?.is_some() {
            continue;
        }
        let sa = syncer_service_account(ns, host, &vcluster, None);
        let params = syncer_params();
        match api.create(&params, &sa).await {
            Ok(_) => created += 1,
            // Created meanwhile (another poll round): fine.
            Err(kube::Error::Api(ae)) if ae.code == 409 => {}
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("cannot create ServiceAccount {ns}/{host}")));
            }
        }
    }
    Ok(created)
}
