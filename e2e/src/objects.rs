//! The kinds the suite looks at, and helpers to read them.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::{
    api::core::v1::{ConfigMap, ServiceAccount},
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams, PostParams},
};
use serde_json::Value;
use tenant_identity_crd::{TenantIdentity, kinds::ChildKind};

use crate::error::Result;

/// Label on every child (value = TenantIdentity name) and the field manager of every operator
/// write: the API's own constants, defined with its table of child kinds.
pub use tenant_identity_crd::kinds::{FIELD_MANAGER as OPERATOR_MANAGER, TENANT_LABEL};
pub const CLIENT_ID_ANNOTATION: &str = "azure.workload.identity/client-id";
pub const TENANT_ID_ANNOTATION: &str = "azure.workload.identity/tenant-id";
pub const REQUESTED_AT_ANNOTATION: &str = "reconcile.fluxcd.io/requestedAt";
pub const GRANT_ANNOTATION: &str = "identity.tenancy.dev/allowed-client-ids";
pub const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Finalizer the operator puts on TenantIdentities that need cleanup outside Kubernetes.
pub const FINALIZER: &str = "identity.tenancy.dev/cleanup";
/// A syntactically valid tenant id used by most tests.
pub const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

pub fn federated_credential() -> ApiResource {
    ChildKind::FederatedCredential.api_resource()
}

pub fn git_repository() -> ApiResource {
    ChildKind::GitRepository.api_resource()
}

pub fn kustomization() -> ApiResource {
    ChildKind::Kustomization.api_resource()
}

/// Flux's HelmRelease: the vcluster release, which the operator reads and never writes.
pub fn helm_release() -> ApiResource {
    tenant_identity_crd::kinds::ObservedKind::VirtualClusterRelease.api_resource()
}

pub fn dynamic(client: &Client, ns: &str, resource: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), ns, resource)
}

pub fn tenants(client: &Client, ns: &str) -> Api<TenantIdentity> {
    Api::namespaced(client.clone(), ns)
}

pub fn config_maps(client: &Client, ns: &str) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), ns)
}

pub fn service_accounts(client: &Client, ns: &str) -> Api<ServiceAccount> {
    Api::namespaced(client.clone(), ns)
}

pub fn sync_rules_config_map(tenant: &str) -> String {
    format!("{tenant}-vcluster-identity")
}

pub fn git_service_account(tenant: &str) -> String {
    format!("{tenant}-git")
}

pub fn subject(ns: &str, service_account: &str) -> String {
    format!("system:serviceaccount:{ns}:{service_account}")
}

/// A TenantIdentity from its spec (JSON).
pub fn tenant_identity(ns: &str, name: &str, spec: Value) -> Result<TenantIdentity> {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1",
        "kind": "TenantIdentity",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .with_context(|| format!("invalid TenantIdentity {ns}/{name}"))
}

/// ASO's UserAssignedIdentity (`managedidentity.azure.com/v1api20230131`), from the API's kind
/// table like the child kinds.
pub fn user_assigned_identity() -> ApiResource {
    tenant_identity_crd::kinds::aso_user_assigned_identity()
}

/// The platform team's ASO UserAssignedIdentity `name`, as ASO reports it once the identity
/// exists in Azure (`status.clientId`, written by ASO's field manager). Created when missing;
/// an existing one is left as it is.
pub async fn aso_identity(
    client: &Client,
    ns: &str,
    name: &str,
    client_id: &str,
) -> Result<DynamicObject> {
    let resource = user_assigned_identity();
    let api = dynamic(client, ns, &resource);
    if let Some(existing) = api.get_opt(name).await? {
        return Ok(existing);
    }
    let obj: DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {"name": name, "namespace": ns},
        "spec": {"location": "westeurope", "owner": {"name": "rg-tenants"}},
    }))?;
    api.create(&PostParams::default(), &obj)
        .await
        .with_context(|| format!("cannot create UserAssignedIdentity {ns}/{name}"))?;
    let status = serde_json::json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "status": {"clientId": client_id, "principalId": client_id},
    });
    api.patch_status(
        name,
        &kube::api::PatchParams::apply("azure-service-operator").force(),
        &kube::api::Patch::Apply(&status),
    )
    .await
    .with_context(|| format!("cannot report the client id of UserAssignedIdentity {ns}/{name}"))
}

/// Create a TenantIdentity (as a user would with `kubectl create`).
pub async fn create_tenant(
    client: &Client,
    ns: &str,
    name: &str,
    spec: Value,
) -> Result<TenantIdentity> {
    let ti = tenant_identity(ns, name, spec)?;
    // The ASO UserAssignedIdentity a tenant names is the platform team's, created before the
    // tenant; play it (with the tenant's client id) unless the test made its own.
    if let Some(identity) = ti
        .spec
        .azure
        .identity
        .azure_service_operator
        .as_ref()
        .and_then(|a| a.name.as_deref())
    {
        aso_identity(client, ns, identity, &ti.spec.azure.client_id).await?;
    }
    tenants(client, ns)
        .create(&PostParams::default(), &ti)
        .await
        .with_context(|| format!("cannot create TenantIdentity {ns}/{name}"))
}

/// One condition of a TenantIdentity.
pub fn condition<'a>(ti: &'a TenantIdentity, type_: &str) -> Option<&'a Condition> {
    ti.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == type_))
}

/// `type` has `status` (and `reason`, when given).
pub fn has_condition(ti: &TenantIdentity, type_: &str, status: &str, reason: Option<&str>) -> bool {
    condition(ti, type_).is_some_and(|c| c.status == status && reason.is_none_or(|r| c.reason == r))
}

/// Ready=True for the current generation (kstatus "Current").
pub fn is_ready(ti: &TenantIdentity) -> bool {
    let generation = ti.metadata.generation;
    let status = ti.status.as_ref();
    status.is_some_and(|s| s.observed_generation == generation)
        && condition(ti, "Ready")
            .is_some_and(|c| c.status == "True" && c.observed_generation == generation)
}

/// A child as found by label: kind, name, uid, resourceVersion.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ChildRef {
    pub kind: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
}

/// Every kind the operator creates children of (the API's table of child kinds).
pub fn child_kinds() -> Vec<ApiResource> {
    tenant_identity_crd::kinds::owned_resources()
}

/// Every object in `ns` labelled as a child of `tenant`, sorted by kind and name.
pub async fn children(client: &Client, ns: &str, tenant: &str) -> Result<Vec<ChildRef>> {
    let selector = format!("{TENANT_LABEL}={tenant}");
    let mut out = Vec::new();
    for resource in child_kinds() {
        let api = dynamic(client, ns, &resource);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .with_context(|| format!("cannot list {} in {ns}", resource.kind))?;
        out.extend(list.items.into_iter().map(|o| ChildRef {
            kind: resource.kind.clone(),
            name: o.name_any(),
            uid: o.uid().unwrap_or_default(),
            resource_version: o.resource_version().unwrap_or_default(),
        }));
    }
    out.sort();
    Ok(out)
}

/// `kind/name` of each child, for compact assertions.
pub fn kind_names(children: &[ChildRef]) -> Vec<String> {
    children
        .iter()
        .map(|c| format!("{}/{}", c.kind, c.name))
        .collect()
}

/// The FederatedIdentityCredentials of `tenant`, by name.
pub async fn credentials(
    client: &Client,
    ns: &str,
    tenant: &str,
) -> Result<BTreeMap<String, DynamicObject>> {
    let api = dynamic(client, ns, &federated_credential());
    let list = api
        .list(&ListParams::default().labels(&format!("{TENANT_LABEL}={tenant}")))
        .await
        .with_context(|| format!("cannot list FederatedIdentityCredentials in {ns}"))?;
    Ok(list.items.into_iter().map(|o| (o.name_any(), o)).collect())
}

/// The `spec.subject` of each credential, sorted.
pub fn credential_subjects(credentials: &BTreeMap<String, DynamicObject>) -> Vec<String> {
    let mut subjects: Vec<String> = credentials
        .values()
        .filter_map(|o| o.data.pointer("/spec/subject").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    subjects.sort();
    subjects
}

/// The parsed `values.yaml` of the sync-rules ConfigMap.
pub fn sync_rules_values(cm: &ConfigMap) -> Result<Value> {
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get("values.yaml"))
        .with_context(|| format!("ConfigMap {} has no values.yaml", cm.name_any()))?;
    serde_yaml::from_str(text).with_context(|| format!("values.yaml is not YAML:\n{text}"))
}

/// The controller owner reference points at `ti`.
pub fn controlled_by(meta: &kube::api::ObjectMeta, ti: &TenantIdentity) -> bool {
    meta.owner_references.iter().flatten().any(|o| {
        o.controller == Some(true)
            && o.kind == "TenantIdentity"
            && o.name == ti.name_any()
            && Some(&o.uid) == ti.metadata.uid.as_ref()
    })
}

/// Azure DevOps URL used by git scenarios.
pub const GIT_URL: &str = "https://dev.azure.com/contoso/platform/_git/tenants";

/// Spec of a Shared-mode TenantIdentity of vcluster `vcluster` with the ASO backend.
pub fn shared_spec(client_id: &str, vcluster: &str) -> Value {
    serde_json::json!({
        "virtualCluster": {"name": vcluster},
        "azure": {
            "clientId": client_id,
            "tenantId": TENANT_ID,
            "identity": {"azureServiceOperator": {"name": format!("{vcluster}-identity")}},
        },
    })
}

/// `spec` plus an ObjectLevel git source (and a deploy Kustomization when `deploy`).
pub fn with_git(mut spec: Value, deploy: bool) -> Value {
    let mut git = serde_json::json!({
        "url": GIT_URL,
        "ref": {"branch": "main"},
        "interval": "5m",
        "auth": "ObjectLevel",
    });
    if deploy {
        git["deploy"] = serde_json::json!({"path": "./clusters/tenant", "prune": true});
    }
    spec["git"] = git;
    spec
}

/// Ask for a reconcile the way Flux does (`reconcile.fluxcd.io/requestedAt=<token>`) and wait
/// until the operator reports it handled (`status.lastHandledReconcileAt=<token>`).
pub async fn request_reconcile(
    client: &Client,
    ns: &str,
    name: &str,
    token: &str,
    timeout: std::time::Duration,
) -> Result<TenantIdentity> {
    let api = tenants(client, ns);
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(
            serde_json::json!({"metadata": {"annotations": {REQUESTED_AT_ANNOTATION: token}}}),
        ),
    )
    .await
    .with_context(|| format!("cannot annotate TenantIdentity {ns}/{name}"))?;
    crate::wait::wait_for(
        &api,
        name,
        &format!("lastHandledReconcileAt={token}"),
        timeout,
        |t| {
            t.status
                .as_ref()
                .and_then(|s| s.last_handled_reconcile_at.as_deref())
                == Some(token)
        },
    )
    .await
}

/// The TenantIdentity carries the operator's finalizer.
pub fn has_finalizer(ti: &TenantIdentity) -> bool {
    ti.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}
