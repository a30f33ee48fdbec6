//! The Azure Resource Manager backend against the fake ARM (`e2e/fake-arm`): TenantIdentity
//! specs with `managedIdentity`, expectations read from status, waits on the fake's state, and
//! a second ARM client playing "someone else" (another team's `az` CLI).
//!
//! The fake is always a local process (127.0.0.1), like the operator, so these helpers work the
//! same against the emulator and against a real cluster (`E2E_KUBECONFIG`).

use std::{future::Future, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tokio::time::Instant;

pub use fake_arm::{
    CallCounts, FakeArm, Fault, IdentityRef, MAX_CREDENTIALS_PER_IDENTITY, Operation,
    StoredCredential,
};

use crate::{
    error::Result,
    objects::{DEFAULT_AUDIENCE, TENANT_ID},
    wait::{Check, poll_until},
};

/// Subscription of every identity the suite creates in the fake.
pub const SUBSCRIPTION_ID: &str = "11111111-2222-4333-8444-555555555555";
/// Resource group of every identity the suite creates in the fake.
pub const RESOURCE_GROUP: &str = "rg-tenants";
/// api-version the operator uses by default (and the second client here).
pub const API_VERSION: &str = "2024-11-30";
/// Issuer of the "foreign" credentials the suite seeds (another cluster's).
pub const FOREIGN_ISSUER: &str =
    "https://oidc.prod-aks.azure.com/00000000-aaaa-4bbb-8ccc-dddddddddddd/";

/// Create a user-assigned identity `name` in the fake (subscription/resource group above).
pub fn create_identity(fake: &FakeArm, name: &str) -> IdentityRef {
    fake.create_identity(SUBSCRIPTION_ID, RESOURCE_GROUP, name)
}

/// `spec.azure.identity` for the ARM backend.
pub fn managed_identity(identity: &IdentityRef) -> Value {
    json!({"managedIdentity": {
        "subscriptionId": identity.subscription_id,
        "resourceGroup": identity.resource_group,
        "name": identity.name,
    }})
}

/// Spec of a Shared-mode TenantIdentity of vcluster `vcluster` with the ARM backend.
pub fn shared_spec(client_id: &str, vcluster: &str, identity: &IdentityRef) -> Value {
    json!({
        "virtualCluster": {"name": vcluster},
        "azure": {
            "clientId": client_id,
            "tenantId": TENANT_ID,
            "identity": managed_identity(identity),
        },
    })
}

/// Spec of a PerServiceAccount TenantIdentity federating the virtual `(namespace, name)`
/// ServiceAccounts of vcluster `vcluster`, with the ARM backend.
pub fn per_service_account_spec(
    client_id: &str,
    vcluster: &str,
    identity: &IdentityRef,
    service_accounts: &[(&str, &str)],
) -> Value {
    let sas: Vec<Value> = service_accounts
        .iter()
        .map(|(ns, name)| json!({"namespace": ns, "name": name}))
        .collect();
    json!({
        "virtualCluster": {
            "name": vcluster,
            "mode": "PerServiceAccount",
            "serviceAccounts": sas,
        },
        "azure": {
            "clientId": client_id,
            "tenantId": TENANT_ID,
            "identity": managed_identity(identity),
        },
    })
}

/// Host name vcluster gives the virtual ServiceAccount `namespace/name` when no part needs
/// hashing (short names): `<name>-x-<namespace>-x-<vcluster>`.
pub fn plain_host_service_account(namespace: &str, name: &str, vcluster: &str) -> String {
    format!("{name}-x-{namespace}-x-{vcluster}")
}

/// The credentials on `identity`, in ARM list order; an error if the identity does not exist.
pub fn credentials(fake: &FakeArm, identity: &IdentityRef) -> Result<Vec<StoredCredential>> {
    fake.credentials(identity).ok_or_else(|| {
        anyhow!(
            "identity {} does not exist in the fake ARM",
            identity.arm_id()
        )
    })
}

fn describe(credentials: &[StoredCredential]) -> String {
    let items: Vec<String> = credentials
        .iter()
        .map(|c| format!("{} ({} {} {:?})", c.name, c.issuer, c.subject, c.audiences))
        .collect();
    format!(
        "{} credential(s): [{}]",
        credentials.len(),
        items.join(", ")
    )
}

/// Poll the fake until the credentials on `identity` satisfy `condition`.
pub async fn wait_credentials(
    fake: &FakeArm,
    identity: &IdentityRef,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&[StoredCredential]) -> bool,
) -> Result<Vec<StoredCredential>> {
    poll_until(
        &format!("{what} on identity {}", identity.name),
        timeout,
        || {
            let found = credentials(fake, identity);
            let outcome = found.map(|found| {
                if condition(&found) {
                    Check::Done(found)
                } else {
                    Check::NotYet(describe(&found))
                }
            });
            async move { outcome }
        },
    )
    .await
}

/// The credential this TenantIdentity wants for `subject`, as it reports it in
/// `status.subjects` (the deterministic name), with `issuer` and the default audience.
pub fn expected_credential(
    ti: &TenantIdentity,
    issuer: &str,
    subject: &str,
) -> Result<StoredCredential> {
    let status = ti
        .status
        .as_ref()
        .ok_or_else(|| anyhow!("TenantIdentity has no status"))?;
    let reported = status
        .subjects
        .iter()
        .find(|s| s.subject == subject)
        .ok_or_else(|| {
            anyhow!(
                "status.subjects does not list {subject}: {:?}",
                status.subjects
            )
        })?;
    Ok(StoredCredential::new(
        reported.credential_name.clone(),
        issuer,
        subject,
        DEFAULT_AUDIENCE,
    ))
}

/// The credentials this TenantIdentity wants (one per `subjects`), sorted by name.
pub fn expected_credentials(
    ti: &TenantIdentity,
    issuer: &str,
    subjects: &[String],
) -> Result<Vec<StoredCredential>> {
    let mut out = subjects
        .iter()
        .map(|s| expected_credential(ti, issuer, s))
        .collect::<Result<Vec<_>>>()?;
    out.sort_by_key(|c| c.name.to_ascii_lowercase());
    Ok(out)
}

/// `credentials` without those whose name is in `except`, sorted by name.
pub fn without(
    credentials: &[StoredCredential],
    except: &[StoredCredential],
) -> Vec<StoredCredential> {
    let mut out: Vec<StoredCredential> = credentials
        .iter()
        .filter(|c| !except.iter().any(|e| e.name.eq_ignore_ascii_case(&c.name)))
        .cloned()
        .collect();
    out.sort_by_key(|c| c.name.to_ascii_lowercase());
    out
}

/// A credential some other team created on the identity (another cluster's issuer).
pub fn foreign_credential(index: usize) -> StoredCredential {
    StoredCredential::new(
        format!("other-team-{index:02}"),
        FOREIGN_ISSUER,
        format!("system:serviceaccount:other-team:app-{index}"),
        DEFAULT_AUDIENCE,
    )
}

/// Seed `count` foreign credentials on `identity`; returns them sorted by name.
pub fn seed_foreign(
    fake: &FakeArm,
    identity: &IdentityRef,
    count: usize,
) -> Result<Vec<StoredCredential>> {
    let mut seeded = Vec::with_capacity(count);
    for i in 0..count {
        let credential = foreign_credential(i);
        fake.seed_credential(identity, credential.clone())
            .map_err(|e| anyhow!("cannot seed {}: {e}", credential.name))?;
        seeded.push(credential);
    }
    seeded.sort_by_key(|c| c.name.to_ascii_lowercase());
    Ok(seeded)
}

/// Sort credentials by (case-insensitive) name, like ARM lists them.
pub fn sorted(mut credentials: Vec<StoredCredential>) -> Vec<StoredCredential> {
    credentials.sort_by_key(|c| c.name.to_ascii_lowercase());
    credentials
}

/// Client id of [`OtherClient`], a trusted caller of the fake Entra.
pub const OTHER_CLIENT_ID: &str = "0f0f0f0f-1111-4222-8333-444444444444";

/// Another ARM client (not the operator): exchanges its own assertion at the fake Entra and
/// calls ARM like `az identity federated-credential delete` would.
pub struct OtherClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl OtherClient {
    /// Sign in at the fake token endpoint of `fake`.
    pub async fn sign_in(fake: &FakeArm) -> Result<Self> {
        Self::sign_in_at(&fake.url()).await
    }

    /// Sign in at the fake token endpoint served at `base`. Its assertion is not a real token,
    /// so it first makes its client id a trusted caller through the fake's admin API.
    pub async fn sign_in_at(base: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_string();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .context("cannot build an HTTP client")?;
        let trust = format!("{base}/_fake/entra/trusted-clients");
        let trusted = http
            .post(&trust)
            .json(&json!({ "clientId": OTHER_CLIENT_ID }))
            .send()
            .await
            .with_context(|| format!("POST {trust}"))?;
        if !trusted.status().is_success() {
            bail!("POST {trust}: {}", trusted.status());
        }
        let url = format!("{base}/{TENANT_ID}/oauth2/v2.0/token");
        let scope = format!("{base}/.default");
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", OTHER_CLIENT_ID),
            ("scope", scope.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", "another-teams-assertion"),
        ];
        let response = http
            .post(&url)
            .form(&form)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let body: Value = response
            .json()
            .await
            .with_context(|| format!("POST {url}: unreadable answer"))?;
        if !status.is_success() {
            bail!("POST {url}: {status} {body}");
        }
        let token = body
            .get("access_token")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("POST {url}: no access_token"))?
            .to_string();
        Ok(Self { http, base, token })
    }

    fn credential_url(&self, identity: &IdentityRef, name: &str) -> String {
        format!(
            "{}/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}/federatedIdentityCredentials/{name}?api-version={API_VERSION}",
            self.base, identity.subscription_id, identity.resource_group, identity.name
        )
    }

    /// DELETE one credential; fails unless ARM answers 200 (deleted).
    pub async fn delete(&self, identity: &IdentityRef, name: &str) -> Result<()> {
        let url = self.credential_url(identity, name);
        let response = self
            .http
            .delete(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("DELETE {url}"))?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            let body = response.text().await.unwrap_or_default();
            bail!("DELETE {url}: {status} {body}");
        }
        Ok(())
    }
}

/// Call counts of the fake sampled while `work` runs: the first sample is taken before, the
/// last after, and one whenever the counts changed in between (sampled every 10 ms).
pub async fn sample_calls<F: Future>(
    fake: &FakeArm,
    work: F,
) -> (F::Output, Vec<(Instant, CallCounts)>) {
    let mut samples = vec![(Instant::now(), fake.calls())];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => {
                samples.push((Instant::now(), fake.calls()));
                return (out, samples);
            }
            _ = tick.tick() => {
                let calls = fake.calls();
                if samples.last().is_none_or(|(_, last)| *last != calls) {
                    samples.push((Instant::now(), calls));
                }
            }
        }
    }
}

/// When each new call of `op` was first seen in `samples` (one entry per call; several calls
/// within one sample interval share its instant).
pub fn call_times(samples: &[(Instant, CallCounts)], op: Operation) -> Vec<Instant> {
    let count = |c: &CallCounts| match op {
        Operation::Get => c.get,
        Operation::Put => c.put,
        Operation::Delete => c.delete,
        Operation::List => c.list,
        Operation::Token => c.token,
    };
    let mut out = Vec::new();
    let mut previous: Option<u64> = None;
    for (at, calls) in samples {
        let n = count(calls);
        if let Some(p) = previous {
            for _ in p..n {
                out.push(*at);
            }
        }
        previous = Some(n);
    }
    out
}
