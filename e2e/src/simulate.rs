//! Playing the other controllers of a real cluster: Azure Service Operator marking credentials
//! Ready, Flux's source-controller reporting on a GitRepository, Flux's helm-controller reporting
//! on the vcluster HelmRelease, the vcluster Helm release creating its workload ServiceAccount,
//! and vcluster's ServiceAccount syncer creating the host ServiceAccounts of virtual ones. Each
//! writes as the real one would: its own field manager, the status subresource,
//! `observedGeneration`.

use std::collections::BTreeMap;

use anyhow::Context as _;
use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::{
    Client, ResourceExt,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::{
    error::Result,
    objects::{self, TENANT_LABEL},
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

/// Everything ASO and Flux would report for a healthy tenant: every credential Ready, and the
/// GitRepository Ready when there is one.
pub async fn everything_ready(client: &Client, ns: &str, tenant: &str) -> Result<()> {
    aso_all_credentials_ready(client, ns, tenant).await?;
    let repos = objects::dynamic(client, ns, &objects::git_repository())
        .list(&ListParams::default().labels(&format!("{TENANT_LABEL}={tenant}")))
        .await
        .with_context(|| format!("cannot list GitRepositories in {ns}"))?;
    for repo in repos.items {
        flux_git_ready(client, ns, &repo.name_any()).await?;
    }
    Ok(())
}

fn reports_ready(obj: &DynamicObject) -> bool {
    let generation = obj.metadata.generation.unwrap_or(1);
    obj.data
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some("Ready")
                    && c.get("status").and_then(Value::as_str) == Some("True")
                    && c.get("observedGeneration").and_then(Value::as_i64) == Some(generation)
            })
        })
}

/// Play ASO and Flux until `tenant` is Ready: every credential and GitRepository that does not
/// report Ready for its current generation is marked Ready, repeatedly (children may appear or be
/// recreated meanwhile), until the TenantIdentity is Ready for its generation. A PerServiceAccount
/// tenant's virtual ServiceAccounts are taken to exist: vcluster's syncer is played too
/// ([`vcluster_syncs_service_accounts`]).
pub async fn converge(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
) -> Result<tenant_identity_crd::TenantIdentity> {
    converge_with(client, ns, tenant, timeout, None).await
}

/// Where ASO "creates" a credential in Azure: the fake Entra, in-process ([`fake_arm::FakeArm`])
/// or behind the `fake-arm` binary's admin API (`e2e-ctl`).
pub trait Entra: Sync {
    /// The application `client_id` now has the federated credential issuer/subject/audience.
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>>;
}

impl Entra for fake_arm::FakeArm {
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        self.register_federated_credential(client_id, issuer, subject, audience);
        Box::pin(async { Ok(()) })
    }
}

/// [`converge`], where ASO also creates each credential in Azure: every credential it marks
/// Ready is registered with `entra` under the tenant's client id ([`aso_credential_in_entra`]),
/// so that verification can exchange tokens against it.
pub async fn converge_in_entra(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
    entra: &dyn Entra,
) -> Result<tenant_identity_crd::TenantIdentity> {
    converge_with(client, ns, tenant, timeout, Some(entra)).await
}

/// ASO created the credential `obj` (a FederatedIdentityCredential) in Azure: `entra` now knows
/// `spec.issuer`, `spec.subject` and `spec.audiences[0]` for `client_id`.
pub async fn aso_credential_in_entra(
    entra: &dyn Entra,
    client_id: &str,
    obj: &DynamicObject,
) -> Result<()> {
    let field = |pointer: &str| {
        obj.data
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("credential {} has no {pointer}", obj.name_any()))
    };
    entra
        .register_credential(
            client_id,
            field("/spec/issuer")?,
            field("/spec/subject")?,
            field("/spec/audiences/0")?,
        )
        .await
}

async fn converge_with(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
    entra: Option<&dyn Entra>,
) -> Result<tenant_identity_crd::TenantIdentity> {
    let selector = format!("{TENANT_LABEL}={tenant}");
    crate::wait::poll_until(
        &format!("TenantIdentity {ns}/{tenant} Ready (ASO and Flux simulated)"),
        timeout,
        || {
            let selector = selector.clone();
            async move {
                let ti = objects::tenants(client, ns).get(tenant).await?;
                if objects::is_ready(&ti) {
                    return Ok(crate::wait::Check::Done(ti));
                }
                vcluster_syncs_service_accounts(client, ns, &ti).await?;
                // The platform team's ASO identity the tenant names, as ASO reports it.
                if let Some(identity) = ti
                    .spec
                    .azure
                    .identity
                    .azure_service_operator
                    .as_ref()
                    .and_then(|a| a.name.as_deref())
                {
                    objects::aso_identity(client, ns, identity, &ti.spec.azure.client_id).await?;
                }
                for resource in [objects::federated_credential(), objects::git_repository()] {
                    let api = objects::dynamic(client, ns, &resource);
                    for obj in api
                        .list(&ListParams::default().labels(&selector))
                        .await?
                        .items
                    {
                        if reports_ready(&obj) {
                            continue;
                        }
                        if resource.kind == "GitRepository" {
                            flux_git_ready(client, ns, &obj.name_any()).await?;
                        } else {
                            if let Some(entra) = entra {
                                aso_credential_in_entra(entra, &ti.spec.azure.client_id, &obj)
                                    .await?;
                            }
                            aso_credential_ready(client, &obj).await?;
                        }
                    }
                }
                let ready = objects::condition(&ti, "Ready")
                    .map(|c| format!("Ready={} {}: {}", c.status, c.reason, c.message))
                    .unwrap_or_else(|| "no Ready condition".into());
                Ok(crate::wait::Check::NotYet(ready))
            }
        },
    )
    .await
}
