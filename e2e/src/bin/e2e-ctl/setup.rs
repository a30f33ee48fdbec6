//! Commands that prepare the demo: namespaces, manifests, the pinned upstream files.

use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client, ResourceExt,
    api::{Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_upstream::{Origin, Resolver};

/// Resolve upstream files (every pinned one when `paths` is empty) and say where each is.
pub(crate) async fn fetch_upstream(paths: Vec<String>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let resolver = Resolver::from_env()?;
        let paths = if paths.is_empty() {
            resolver.entries().iter().map(|e| e.path.clone()).collect()
        } else {
            paths
        };
        for rel in paths {
            let found = resolver.locate(&rel)?;
            let origin = match found.origin {
                Origin::Shared => "shared checkout",
                Origin::Cache => "cache",
                Origin::Downloaded => "downloaded, verified, cached",
            };
            println!("{rel}: {} ({origin})", found.path.display());
        }
        Ok(())
    })
    .await
    .context("upstream lookup task panicked")?
}

pub(crate) async fn create_namespaces(client: &Client, names: &[String]) -> anyhow::Result<()> {
    let api: Api<Namespace> = Api::all(client.clone());
    for name in names {
        api.patch(
            name,
            &PatchParams::apply("kubectl").force(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
            ),
        )
        .await
        .with_context(|| format!("cannot create namespace {name}"))?;
        println!("namespace/{name} created");
    }
    Ok(())
}

pub(crate) async fn apply(client: &Client, files: &[PathBuf]) -> anyhow::Result<()> {
    for file in files {
        let applied =
            tenant_identity_e2e::manifests::apply_file(client, file, "kubectl", None).await?;
        for obj in applied {
            let kind = obj
                .types
                .as_ref()
                .map(|t| t.kind.to_lowercase())
                .unwrap_or_default();
            println!(
                "{kind}/{} serverside-applied ({})",
                obj.name_any(),
                obj.namespace().unwrap_or_default()
            );
        }
    }
    Ok(())
}
