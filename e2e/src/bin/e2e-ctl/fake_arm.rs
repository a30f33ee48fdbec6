//! The admin API (`/_fake/`) of the `fake-arm` binary: its fake Entra, ARM identities and
//! Azure DevOps.

use std::{sync::Mutex, time::Duration};

use anyhow::{Context as _, bail};
use futures::future::BoxFuture;
use serde_json::json;
use tenant_identity_e2e::arm::{CallCounts, StoredCredential};
use tenant_identity_e2e::simulate::Entra;

use crate::cli::FakeArmIdentity;

/// The fake Entra of the `fake-arm` binary, through its admin API: where ASO creates the
/// credentials `converge` / `wait-condition --play-aso` mark Ready, as Azure would hold them.
pub(crate) struct FakeEntra {
    url: String,
    http: reqwest::Client,
    /// What was registered and not printed yet: (client id, subject).
    registered: Mutex<Vec<(String, String)>>,
}

impl FakeEntra {
    pub(crate) fn new(url: &str) -> anyhow::Result<Self> {
        Ok(FakeEntra {
            url: url.trim_end_matches('/').to_string(),
            http: http()?,
            registered: Mutex::new(Vec::new()),
        })
    }

    /// Say which credentials were created in Entra since the last call.
    pub(crate) fn print_registered(&self) {
        let registered =
            std::mem::take(&mut *self.registered.lock().unwrap_or_else(|e| e.into_inner()));
        for (client_id, subject) in registered {
            println!("  created in Entra (the fake's) for client id {client_id}: {subject}");
        }
    }
}

impl Entra for FakeEntra {
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            post_json(
                &self.http,
                &format!(
                    "{}/_fake/entra/applications/{client_id}/federated-credentials",
                    self.url
                ),
                &json!({"issuer": issuer, "subject": subject, "audience": audience}),
            )
            .await?;
            self.registered
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((client_id.to_string(), subject.to_string()));
            Ok(())
        })
    }
}

/// POST `body` to `endpoint`; an answer other than 2xx is an error showing it.
async fn post_json(
    http: &reqwest::Client,
    endpoint: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let response = http
        .post(endpoint)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("POST {endpoint}: {status} {body}");
    }
    Ok(())
}

/// POST `body` to `/_fake/<route>` of the `fake-arm` binary at `url`.
pub(crate) async fn admin_post(
    url: &str,
    route: &str,
    body: &serde_json::Value,
) -> anyhow::Result<()> {
    let endpoint = format!("{}/_fake/{route}", url.trim_end_matches('/'));
    post_json(&http()?, &endpoint, body).await
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")
}

/// Create a user-assigned identity in the fake ARM (as `az identity create` would).
pub(crate) async fn fake_arm_identity(args: &FakeArmIdentity) -> anyhow::Result<()> {
    let (url, identity) = args.split();
    let endpoint = format!("{url}/_fake/identities");
    let mut body = serde_json::to_value(&identity)?;
    if let Some(client_id) = &args.client_id {
        body["clientId"] = json!(client_id);
    }
    post_json(&http()?, &endpoint, &body).await?;
    println!("userAssignedIdentity {} created", identity.arm_id());
    Ok(())
}

/// Print the federated credentials of an identity in the fake ARM, like
/// `az identity federated-credential list -o table`, and the calls the fake served.
pub(crate) async fn fake_arm_credentials(args: &FakeArmIdentity) -> anyhow::Result<()> {
    let (url, identity) = args.split();
    let http = http()?;
    let endpoint = format!(
        "{url}/_fake/identities/{}/{}/{}/credentials",
        identity.subscription_id, identity.resource_group, identity.name
    );
    let response = http
        .get(&endpoint)
        .send()
        .await
        .with_context(|| format!("GET {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("GET {endpoint}: {status} {body}");
    }
    let credentials: Vec<StoredCredential> = response
        .json()
        .await
        .with_context(|| format!("GET {endpoint}: unexpected answer"))?;
    println!(
        "$ az identity federated-credential list -g {} --identity-name {} -o table",
        identity.resource_group, identity.name
    );
    let rows: Vec<[String; 4]> = credentials
        .iter()
        .map(|c| {
            [
                c.name.clone(),
                c.issuer.clone(),
                c.subject.clone(),
                c.audiences.join(","),
            ]
        })
        .collect();
    tenant_identity_e2e::show::print_table(["Name", "Issuer", "Subject", "Audiences"], &rows, "  ");
    let calls_url = format!("{url}/_fake/calls");
    let calls: CallCounts = http
        .get(&calls_url)
        .send()
        .await
        .with_context(|| format!("GET {calls_url}"))?
        .json()
        .await
        .with_context(|| format!("GET {calls_url}: unexpected answer"))?;
    println!(
        "  ({} credential(s); ARM calls served so far: {} list, {} get, {} put, {} delete, {} token)",
        credentials.len(),
        calls.list,
        calls.get,
        calls.put,
        calls.delete,
        calls.token
    );
    Ok(())
}
