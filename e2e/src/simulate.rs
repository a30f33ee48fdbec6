//! Playing the other controllers of a real cluster: Azure Service Operator marking credentials
//! Ready, Flux's source-controller reporting on a GitRepository, and the vcluster Helm release
//! creating its workload ServiceAccount. Each writes as the real one would: its own field
//! manager, the status subresource, `observedGeneration`.

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
/// recreated meanwhile), until the TenantIdentity is Ready for its generation.
pub async fn converge(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
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
