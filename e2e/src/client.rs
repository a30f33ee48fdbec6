//! Kubernetes clients from a kubeconfig file, and what the API server says about itself.

use std::path::Path;

use anyhow::{Context as _, anyhow};
use kube::{
    Client, Config,
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::error::Result;

/// A client for the current context of the kubeconfig at `path`.
pub async fn client_from_kubeconfig(path: &Path) -> Result<Client> {
    let kubeconfig = Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))?;
    Client::try_from(config).context("cannot build a Kubernetes client")
}

/// The OIDC issuer the API server publishes in `/.well-known/openid-configuration`.
pub async fn discovered_issuer(client: &Client) -> Result<String> {
    let request = http::Request::get("/.well-known/openid-configuration")
        .body(Vec::new())
        .context("cannot build the discovery request")?;
    let doc: serde_json::Value = client
        .request(request)
        .await
        .context("GET /.well-known/openid-configuration")?;
    doc.get("issuer")
        .and_then(|i| i.as_str())
        .map(str::to_string)
        .ok_or_else(|| anyhow!("discovery document has no issuer: {doc}"))
}
