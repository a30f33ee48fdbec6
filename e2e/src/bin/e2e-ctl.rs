//! A small kubectl stand-in for `hack/demo.sh` (machines without kubectl). Reads `KUBECONFIG`.
//!
//! ```text
//! e2e-ctl install-crds                 install ours + Flux + ASO CRDs, wait Established
//! e2e-ctl create-namespace NAME...     create namespaces (idempotent)
//! e2e-ctl apply FILE...                server-side apply every document (manager kubectl)
//! e2e-ctl host-sa NAMESPACE VCLUSTER   create vc-workload-<vcluster> as the vcluster Helm release would
//! e2e-ctl simulate-ready NAMESPACE TI  mark credentials / GitRepository Ready as ASO / Flux would
//! e2e-ctl converge SECONDS NAMESPACE/TI...     play ASO and Flux until each TenantIdentity is Ready
//! e2e-ctl wait-ready SECONDS NAMESPACE/TI...   wait until each TenantIdentity is Ready
//! e2e-ctl wait-url SECONDS URL                 wait until URL answers 2xx
//! e2e-ctl show                         print TenantIdentities, conditions, subjects, children
//! e2e-ctl fake-arm-identity URL SUBSCRIPTION RESOURCE_GROUP NAME     create an identity in the fake ARM
//! e2e-ctl fake-arm-credentials URL SUBSCRIPTION RESOURCE_GROUP NAME  list its federated credentials
//! ```
//!
//! The `fake-arm-*` commands talk to the admin API (`/_fake/`) of the `fake-arm` binary at URL
//! and need no KUBECONFIG.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::{api::core::v1::Namespace, jiff::Timestamp};
use kube::{
    Api, Client, ResourceExt,
    api::{ListParams, Patch, PatchParams},
};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::arm::{CallCounts, IdentityRef, StoredCredential};
use tenant_identity_e2e::{
    cluster, objects,
    simulate::{self},
    wait::{Check, poll_until},
};

const USAGE: &str = "usage: e2e-ctl install-crds | create-namespace NAME... | apply FILE... | host-sa NAMESPACE VCLUSTER | simulate-ready NAMESPACE TENANT | converge SECONDS NAMESPACE/TENANT... | wait-ready SECONDS NAMESPACE/TENANT... | wait-url SECONDS URL | show | fake-arm-identity URL SUBSCRIPTION RESOURCE_GROUP NAME | fake-arm-credentials URL SUBSCRIPTION RESOURCE_GROUP NAME";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-ctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn client() -> anyhow::Result<Client> {
    match std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        Some(path) => cluster::client_from_kubeconfig(&PathBuf::from(path)).await,
        None => Client::try_default()
            .await
            .context("cannot build a Kubernetes client"),
    }
}

async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let Some((command, rest)) = args.split_first() else {
        bail!("{USAGE}");
    };
    match command.as_str() {
        "wait-url" => return wait_url(rest).await,
        "fake-arm-identity" => return fake_arm_identity(rest).await,
        "fake-arm-credentials" => return fake_arm_credentials(rest).await,
        _ => {}
    }
    let client = client().await?;
    match command.as_str() {
        "install-crds" => cluster::install_crds(&client).await,
        "create-namespace" => create_namespaces(&client, rest).await,
        "apply" => apply(&client, rest).await,
        "host-sa" => match rest {
            [ns, vc] => {
                let sa = simulate::helm_workload_service_account(&client, ns, vc).await?;
                println!("serviceaccount/{} created (by helm)", sa.name_any());
                Ok(())
            }
            _ => bail!("{USAGE}"),
        },
        "simulate-ready" => match rest {
            [ns, tenant] => {
                let n = simulate::aso_all_credentials_ready(&client, ns, tenant).await?;
                println!(
                    "  {ns}/{tenant}: {n} FederatedIdentityCredential(s) marked Ready (as ASO)"
                );
                simulate::everything_ready(&client, ns, tenant).await?;
                Ok(())
            }
            _ => bail!("{USAGE}"),
        },
        "wait-ready" => wait_ready(&client, rest).await,
        "converge" => converge(&client, rest).await,
        "show" => show(&client).await,
        _ => bail!("{USAGE}"),
    }
}

async fn create_namespaces(client: &Client, names: &[String]) -> anyhow::Result<()> {
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

async fn apply(client: &Client, files: &[String]) -> anyhow::Result<()> {
    for file in files {
        let applied = tenant_identity_e2e::manifests::apply_file(
            client,
            &PathBuf::from(file),
            "kubectl",
            None,
        )
        .await?;
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

async fn wait_ready(client: &Client, rest: &[String]) -> anyhow::Result<()> {
    let Some((seconds, targets)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    let timeout = Duration::from_secs(seconds.parse().context("SECONDS")?);
    for target in targets {
        let (ns, name) = target
            .split_once('/')
            .ok_or_else(|| anyhow!("expected NAMESPACE/TENANT, got {target}"))?;
        let api = objects::tenants(client, ns);
        poll_until(
            &format!("TenantIdentity {target} Ready"),
            timeout,
            || async {
                let ti = api.get(name).await?;
                Ok(if objects::is_ready(&ti) {
                    Check::Done(())
                } else {
                    let ready = objects::condition(&ti, "Ready")
                        .map(|c| format!("{} {}: {}", c.status, c.reason, c.message))
                        .unwrap_or_else(|| "no Ready condition".into());
                    Check::NotYet(ready)
                })
            },
        )
        .await?;
        println!("tenantidentity/{name} ({ns}) is Ready");
    }
    Ok(())
}

fn age(ti: &TenantIdentity) -> String {
    let Some(created) = ti.metadata.creation_timestamp.as_ref() else {
        return "<unknown>".into();
    };
    let secs = Timestamp::now()
        .as_second()
        .saturating_sub(created.0.as_second())
        .max(0);
    if secs < 120 {
        format!("{secs}s")
    } else {
        format!("{}m", secs / 60)
    }
}

async fn show(client: &Client) -> anyhow::Result<()> {
    let api: Api<TenantIdentity> = Api::all(client.clone());
    let mut list = api.list(&ListParams::default()).await?.items;
    list.sort_by_key(|t| (t.namespace(), t.name_any()));

    println!("$ kubectl get tenantidentities -A");
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|ti| {
            let ready = objects::condition(ti, "Ready");
            [
                ti.namespace().unwrap_or_default(),
                ti.name_any(),
                ready.map(|c| c.status.clone()).unwrap_or_default(),
                ready.map(|c| c.reason.clone()).unwrap_or_default(),
                format!("{:?}", ti.spec.virtual_cluster.mode),
                age(ti),
            ]
        })
        .collect();
    let header = ["NAMESPACE", "NAME", "READY", "REASON", "MODE", "AGE"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("   ").trim_end());
    }

    for ti in &list {
        let ns = ti.namespace().unwrap_or_default();
        let name = ti.name_any();
        println!("\n$ kubectl describe tenantidentity -n {ns} {name}");
        let status = ti.status.clone().unwrap_or_default();
        println!(
            "  observedGeneration: {} (generation {})",
            status
                .observed_generation
                .map(|g| g.to_string())
                .unwrap_or_else(|| "-".into()),
            ti.metadata.generation.unwrap_or_default()
        );
        if let Some(issuer) = &status.issuer {
            println!("  issuer: {issuer}");
        }
        println!("  conditions:");
        for c in &status.conditions {
            println!(
                "    {:<27} {:<7} {:<24} {}",
                c.type_, c.status, c.reason, c.message
            );
        }
        if !status.subjects.is_empty() {
            println!("  subjects:");
            for s in &status.subjects {
                println!(
                    "    {:<8} {} -> {}{}",
                    s.state,
                    s.subject,
                    s.credential_name,
                    s.message
                        .as_ref()
                        .map(|m| format!(" ({m})"))
                        .unwrap_or_default()
                );
            }
        }
        if !status.host_service_accounts.is_empty() {
            println!(
                "  host service accounts: {}",
                status.host_service_accounts.join(", ")
            );
        }
        let children = objects::children(client, &ns, &name).await?;
        println!("  children (label {}={name}):", objects::TENANT_LABEL);
        if children.is_empty() {
            println!("    (none)");
        }
        for child in objects::kind_names(&children) {
            println!("    {child}");
        }
    }
    Ok(())
}

fn targets(rest: &[String]) -> anyhow::Result<(Duration, Vec<(String, String)>)> {
    let Some((seconds, targets)) = rest.split_first() else {
        bail!("{USAGE}");
    };
    let timeout = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let targets = targets
        .iter()
        .map(|t| {
            t.split_once('/')
                .map(|(ns, name)| (ns.to_string(), name.to_string()))
                .ok_or_else(|| anyhow!("expected NAMESPACE/TENANT, got {t}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((timeout, targets))
}

async fn converge(client: &Client, rest: &[String]) -> anyhow::Result<()> {
    let (timeout, targets) = targets(rest)?;
    for (ns, name) in targets {
        let ti = simulate::converge(client, &ns, &name, timeout).await?;
        let subjects = ti.status.map(|s| s.subjects.len()).unwrap_or_default();
        println!(
            "tenantidentity/{name} ({ns}) is Ready: {subjects} credential(s) marked Ready as ASO would, GitRepository as Flux would"
        );
    }
    Ok(())
}

async fn wait_url(rest: &[String]) -> anyhow::Result<()> {
    let [seconds, url] = rest else {
        bail!("{USAGE}");
    };
    let timeout = Duration::from_secs(seconds.parse().context("SECONDS")?);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    poll_until(&format!("{url} to answer 2xx"), timeout, || async {
        let r = http.get(url).send().await?;
        Ok(if r.status().is_success() {
            Check::Done(())
        } else {
            Check::NotYet(r.status().to_string())
        })
    })
    .await
}

fn fake_arm_identity_args(rest: &[String]) -> anyhow::Result<(String, IdentityRef)> {
    let [url, subscription, resource_group, name] = rest else {
        bail!("{USAGE}");
    };
    Ok((
        url.trim_end_matches('/').to_string(),
        IdentityRef::new(subscription, resource_group, name),
    ))
}

fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("cannot build an HTTP client")
}

/// Create a user-assigned identity in the fake ARM (as `az identity create` would).
async fn fake_arm_identity(rest: &[String]) -> anyhow::Result<()> {
    let (url, identity) = fake_arm_identity_args(rest)?;
    let endpoint = format!("{url}/_fake/identities");
    let response = http()?
        .post(&endpoint)
        .json(&identity)
        .send()
        .await
        .with_context(|| format!("POST {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        bail!("POST {endpoint}: {status} {body}");
    }
    println!("userAssignedIdentity {} created", identity.arm_id());
    Ok(())
}

/// Print the federated credentials of an identity in the fake ARM, like
/// `az identity federated-credential list -o table`, and the calls the fake served.
async fn fake_arm_credentials(rest: &[String]) -> anyhow::Result<()> {
    let (url, identity) = fake_arm_identity_args(rest)?;
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
    let header = ["Name", "Issuer", "Subject", "Audiences"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
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
