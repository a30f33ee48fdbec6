//! The bare baseline: a plain kube-rs client doing exactly what the operator would, and the
//! removal of its namespaces.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource as _, ResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{TestNamespace, objects};

use crate::tenants::{CONCURRENCY, Tenant, is_service_account};

/// Field manager of the bare baseline client.
const BARE_MANAGER: &str = "bare-baseline";

/// The API resource of a rendered object: a child kind, or the host ServiceAccount.
fn resource_of(obj: &DynamicObject) -> anyhow::Result<ApiResource> {
    let types = obj
        .types
        .as_ref()
        .context("a rendered object has no kind")?;
    if types.kind == "ServiceAccount" {
        return Ok(ApiResource::erase::<ServiceAccount>(&()));
    }
    objects::child_kinds()
        .into_iter()
        .find(|r| r.kind == types.kind && r.api_version == types.api_version)
        .with_context(|| format!("render printed an unknown kind {}", types.kind))
}

/// The bare client: per tenant, create it, apply its children, apply its status once.
pub(crate) async fn bare_run(
    client: &Client,
    fleet: &[Tenant],
    children: &HashMap<(String, String), Vec<DynamicObject>>,
) -> anyhow::Result<()> {
    let apply = PatchParams::apply(BARE_MANAGER).force();
    stream::iter(fleet)
        .map(|t| {
            let apply = apply.clone();
            async move {
                let tenants = objects::tenants(client, &t.ns);
                let ti = tenants
                    .create(
                        &PostParams::default(),
                        &objects::tenant_identity(&t.ns, &t.name, t.spec())?,
                    )
                    .await?;
                let owner = ti.controller_owner_ref(&());
                let mut subjects = Vec::new();
                let docs = children.get(&t.key()).map(Vec::as_slice).unwrap_or(&[]);
                for doc in docs {
                    let mut obj = doc.clone();
                    if !is_service_account(&obj) {
                        obj.metadata.owner_references = owner.clone().map(|o| vec![o]);
                    }
                    if let Some(subject) = obj.data.pointer("/spec/subject") {
                        subjects.push(json!({
                            "subject": subject,
                            "credentialName": obj.name_any(),
                            "state": "Ready",
                        }));
                    }
                    objects::dynamic(client, &t.ns, &resource_of(&obj)?)
                        .patch(&obj.name_any(), &apply, &Patch::Apply(&obj))
                        .await
                        .with_context(|| format!("bare apply of {}", obj.name_any()))?;
                }
                let generation = ti.metadata.generation.unwrap_or(1);
                let condition = |type_: &str| {
                    json!({
                        "type": type_, "status": "True", "reason": "Succeeded",
                        "message": "", "observedGeneration": generation,
                        "lastTransitionTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    })
                };
                let conditions =
                    ["Ready", "HostSyncReady", "FederatedCredentialsReady", "GitSourceReady"]
                        .map(condition);
                let status = json!({
                    "apiVersion": TenantIdentity::api_version(&()),
                    "kind": TenantIdentity::kind(&()),
                    "status": {
                        "observedGeneration": generation,
                        "conditions": conditions,
                        "subjects": subjects,
                        "hostServiceAccounts": [format!("vc-workload-{}", t.name)],
                    },
                });
                tenants
                    .patch_status(&t.name, &apply, &Patch::Apply(&status))
                    .await
                    .with_context(|| format!("bare status of {}/{}", t.ns, t.name))?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

/// Delete the baseline's namespaces (and so its tenants and children) and wait until they are
/// gone, so the operator never sees them.
pub(crate) async fn remove_namespaces(client: &Client, namespaces: Vec<TestNamespace>) {
    let names: Vec<String> = namespaces.iter().map(|n| n.name().to_string()).collect();
    futures::future::join_all(namespaces.into_iter().map(TestNamespace::cleanup)).await;
    let api: Api<Namespace> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(300);
    for name in names {
        while let Ok(Some(_)) = api.get_opt(&name).await {
            if Instant::now() > deadline {
                eprintln!("warning: namespace {name} is still there; the operator will see it");
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
