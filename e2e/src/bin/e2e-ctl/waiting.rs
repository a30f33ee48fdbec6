//! The simulate and wait commands: play ASO and Flux, wait for conditions and URLs.

use std::time::{Duration, Instant};

use kube::{Client, ResourceExt, api::DynamicObject};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    objects, simulate,
    wait::{Check, poll_until},
};

use crate::{cli::Target, fake_arm::FakeEntra};

pub(crate) async fn wait_ready(
    client: &Client,
    timeout: Duration,
    targets: &[Target],
) -> anyhow::Result<()> {
    for Target {
        namespace: ns,
        name,
    } in targets
    {
        let target = format!("{ns}/{name}");
        let api = objects::tenants(client, ns);
        let ti = poll_until(
            &format!("TenantIdentity {target} Ready"),
            timeout,
            || async {
                let ti = api.get(name).await?;
                Ok(if objects::is_ready(&ti) {
                    Check::Done(ti)
                } else {
                    Check::NotYet(condition_text(&ti, "Ready"))
                })
            },
        )
        .await?;
        println!("tenantidentity/{name} ({ns}) is Ready");
        print_verified(&ti);
    }
    Ok(())
}

/// `TYPE=STATUS REASON: message`, or that there is no such condition.
fn condition_text(ti: &TenantIdentity, type_: &str) -> String {
    objects::condition(ti, type_)
        .map(|c| format!("{type_}={} {}: {}", c.status, c.reason, c.message))
        .unwrap_or_else(|| format!("no {type_} condition"))
}

/// The verification conditions of a Ready tenant, one line each.
fn print_verified(ti: &TenantIdentity) {
    for type_ in ["IdentityVerified", "GitAccessVerified"] {
        if let Some(c) = objects::condition(ti, type_) {
            println!("  {type_}={} {}: {}", c.status, c.reason, c.message);
        }
    }
}

pub(crate) async fn converge(
    client: &Client,
    timeout: Duration,
    targets: Vec<Target>,
    entra: Option<&FakeEntra>,
) -> anyhow::Result<()> {
    for Target {
        namespace: ns,
        name,
    } in targets
    {
        let ti = match entra {
            Some(entra) => simulate::converge_in_entra(client, &ns, &name, timeout, entra).await?,
            None => simulate::converge(client, &ns, &name, timeout).await?,
        };
        let subjects = ti
            .status
            .as_ref()
            .map(|s| s.subjects.len())
            .unwrap_or_default();
        println!(
            "tenantidentity/{name} ({ns}) is Ready: {subjects} credential(s) marked Ready as ASO would, GitRepository as Flux would"
        );
        if let Some(entra) = entra {
            entra.print_registered();
        }
        print_verified(&ti);
    }
    Ok(())
}

/// The condition `wait-condition` waits for.
pub(crate) struct Wanted {
    pub(crate) type_: String,
    pub(crate) status: String,
    pub(crate) reason: String,
}

/// ASO reports the credential Ready for its current generation.
fn aso_reports_ready(obj: &DynamicObject) -> bool {
    let generation = obj.metadata.generation.unwrap_or(1);
    obj.data
        .pointer("/status/conditions")
        .and_then(serde_json::Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "Ready"
                    && c["status"] == "True"
                    && c["observedGeneration"].as_i64() == Some(generation)
            })
        })
}

/// ASO, one round: every credential of `ti` not Ready yet is created in `entra` and marked Ready.
async fn play_aso(client: &Client, ti: &TenantIdentity, entra: &FakeEntra) -> anyhow::Result<()> {
    let ns = ti.namespace().unwrap_or_default();
    for obj in objects::credentials(client, &ns, &ti.name_any())
        .await?
        .values()
    {
        if !aso_reports_ready(obj) {
            simulate::aso_credential_in_entra(entra, &ti.spec.azure.client_id, obj).await?;
            simulate::aso_credential_ready(client, obj).await?;
        }
    }
    Ok(())
}

/// Wait (bounded poll) until the condition holds for the tenant's current generation, playing
/// ASO meanwhile when `entra` is given; print the condition and how long it took.
pub(crate) async fn wait_condition(
    client: &Client,
    timeout: Duration,
    target: &Target,
    wanted: &Wanted,
    entra: Option<&FakeEntra>,
) -> anyhow::Result<()> {
    let Target {
        namespace: ns,
        name,
    } = target;
    let Wanted {
        type_,
        status,
        reason,
    } = wanted;
    let api = objects::tenants(client, ns);
    let started = Instant::now();
    let ti = poll_until(
        &format!("TenantIdentity {ns}/{name} {type_}={status} {reason}"),
        timeout,
        || async {
            let ti = api.get(name).await?;
            let current =
                ti.status.as_ref().and_then(|s| s.observed_generation) == ti.metadata.generation;
            if current && objects::has_condition(&ti, type_, status, Some(reason)) {
                return Ok(Check::Done(ti));
            }
            if let Some(entra) = entra {
                play_aso(client, &ti, entra).await?;
            }
            Ok(Check::NotYet(condition_text(&ti, type_)))
        },
    )
    .await?;
    if let Some(entra) = entra {
        entra.print_registered();
    }
    let message = objects::condition(&ti, type_)
        .map(|c| c.message.clone())
        .unwrap_or_default();
    println!(
        "tenantidentity/{name} ({ns}): {type_}={status} {reason} (waited {}s)",
        started.elapsed().as_secs()
    );
    println!("  message: {message}");
    if let Some(ready) = objects::condition(&ti, "Ready").filter(|_| type_ != "Ready") {
        let said = if ready.message == message {
            " (the same message)".to_string()
        } else {
            format!(": {}", ready.message)
        };
        println!("  Ready={} {}{said}", ready.status, ready.reason);
    }
    Ok(())
}

pub(crate) async fn wait_url(timeout: Duration, url: &str) -> anyhow::Result<()> {
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
