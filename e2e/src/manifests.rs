//! Reading manifests and applying them the way kubectl would, through API discovery.

use anyhow::{Context as _, anyhow};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams},
    discovery::{self, Scope},
};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Result;

/// How long a kind may take to appear in discovery after its CRD is Established.
const DISCOVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Every non-empty document of a (multi-document) YAML text, as JSON values.
pub fn documents(text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let value = Value::deserialize(doc).context("invalid YAML document")?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The API resource of an object's apiVersion/kind, and whether it is namespaced.
pub async fn resolve(client: &Client, obj: &Value) -> Result<(ApiResource, bool)> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("object has no apiVersion"))?;
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("object has no kind"))?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    // A CRD that just became Established may not be in discovery yet: a real API server
    // publishes discovery asynchronously (apiextensions' DiscoveryController), so look again
    // for a short while before concluding the kind is not served.
    let (resource, caps) = crate::wait::poll_until(
        &format!("{api_version} {kind} in API discovery"),
        DISCOVERY_TIMEOUT,
        || async {
            Ok(match discovery::pinned_kind(client, &gvk).await {
                Ok(found) => crate::wait::Check::Done(found),
                Err(e) => crate::wait::Check::NotYet(e.to_string()),
            })
        },
    )
    .await
    .with_context(|| format!("the API server does not serve {api_version} {kind}"))?;
    Ok((resource, caps.scope == Scope::Namespaced))
}

fn dynamic_api(
    client: &Client,
    resource: &ApiResource,
    namespaced: bool,
    namespace: Option<&str>,
) -> Result<Api<DynamicObject>> {
    Ok(if namespaced {
        let ns = namespace.ok_or_else(|| anyhow!("{} needs a namespace", resource.kind))?;
        Api::namespaced_with(client.clone(), ns, resource)
    } else {
        Api::all_with(client.clone(), resource)
    })
}

fn with_namespace(mut obj: Value, namespace: Option<&str>) -> (Value, Option<String>) {
    if let Some(ns) = namespace
        && let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut)
    {
        meta.insert("namespace".into(), Value::String(ns.to_string()));
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .map(str::to_string);
    (obj, ns)
}

/// Server-side apply one object (with `force`), optionally moving it to `namespace`.
pub async fn apply(
    client: &Client,
    obj: Value,
    manager: &str,
    namespace: Option<&str>,
) -> Result<DynamicObject> {
    let (resource, namespaced) = resolve(client, &obj).await?;
    let (obj, ns) = with_namespace(obj, namespace);
    let object: DynamicObject = serde_json::from_value(obj).context("not a Kubernetes object")?;
    let name = object.name_any();
    let api = dynamic_api(client, &resource, namespaced, ns.as_deref())?;
    api.patch(
        &name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&object),
    )
    .await
    .with_context(|| format!("cannot apply {} {name}", resource.kind))
}

/// Create one object (POST), optionally moving it to `namespace`. The API error is returned
/// unchanged so callers can inspect rejections.
pub async fn create(
    client: &Client,
    obj: Value,
    manager: &str,
    namespace: Option<&str>,
) -> Result<Result<DynamicObject, kube::Error>> {
    let (resource, namespaced) = resolve(client, &obj).await?;
    let (obj, ns) = with_namespace(obj, namespace);
    let object: DynamicObject = serde_json::from_value(obj).context("not a Kubernetes object")?;
    let api = dynamic_api(client, &resource, namespaced, ns.as_deref())?;
    let params = PostParams {
        field_manager: Some(manager.to_string()),
        ..PostParams::default()
    };
    Ok(api.create(&params, &object).await)
}

/// Apply every document of a YAML file.
pub async fn apply_file(
    client: &Client,
    path: &std::path::Path,
    manager: &str,
    namespace: Option<&str>,
) -> Result<Vec<DynamicObject>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for doc in documents(&text).with_context(|| path.display().to_string())? {
        out.push(apply(client, doc, manager, namespace).await?);
    }
    Ok(out)
}
