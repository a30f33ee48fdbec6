//! Playing ASO and Flux until a tenant is Ready ([`converge`]), optionally creating each
//! credential in a fake Entra ([`Entra`]).

use anyhow::Context as _;
use kube::{
    Client, ResourceExt,
    api::{DynamicObject, ListParams},
};
use serde_json::Value;

use super::{
    aso_all_credentials_ready, aso_credential_ready, flux_git_ready,
    vcluster_syncs_service_accounts,
};
use crate::{
    error::Result,
    objects::{self, TENANT_LABEL},
};

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
/// recreated meanwhile), until the TenantIdentity is Ready for its generation. A PerServiceAccount
/// tenant's virtual ServiceAccounts are taken to exist: vcluster's syncer is played too
/// ([`vcluster_syncs_service_accounts`]).
pub async fn converge(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
) -> Result<tenant_identity_crd::TenantIdentity> {
    converge_with(client, ns, tenant, timeout, None).await
}

/// Where ASO "creates" a credential in Azure: the fake Entra, in-process ([`fake_arm::FakeArm`])
/// or behind the `fake-arm` binary's admin API (`e2e-ctl`).
pub trait Entra: Sync {
    /// The application `client_id` now has the federated credential issuer/subject/audience.
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>>;
}

impl Entra for fake_arm::FakeArm {
    fn register_credential<'a>(
        &'a self,
        client_id: &'a str,
        issuer: &'a str,
        subject: &'a str,
        audience: &'a str,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        self.register_federated_credential(client_id, issuer, subject, audience);
        Box::pin(async { Ok(()) })
    }
}

/// [`converge`], where ASO also creates each credential in Azure: every credential it marks
/// Ready is registered with `entra` under the tenant's client id ([`aso_credential_in_entra`]),
/// so that verification can exchange tokens against it.
pub async fn converge_in_entra(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
    entra: &dyn Entra,
) -> Result<tenant_identity_crd::TenantIdentity> {
    converge_with(client, ns, tenant, timeout, Some(entra)).await
}

/// ASO created the credential `obj` (a FederatedIdentityCredential) in Azure: `entra` now knows
/// `spec.issuer`, `spec.subject` and `spec.audiences[0]` for `client_id`.
pub async fn aso_credential_in_entra(
    entra: &dyn Entra,
    client_id: &str,
    obj: &DynamicObject,
) -> Result<()> {
    let field = |pointer: &str| {
        obj.data
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow::anyhow!("credential {} has no {pointer}", obj.name_any()))
    };
    entra
        .register_credential(
            client_id,
            field("/spec/issuer")?,
            field("/spec/subject")?,
            field("/spec/audiences/0")?,
        )
        .await
}

async fn converge_with(
    client: &Client,
    ns: &str,
    tenant: &str,
    timeout: std::time::Duration,
    entra: Option<&dyn Entra>,
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
                vcluster_syncs_service_accounts(client, ns, &ti).await?;
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
                            if let Some(entra) = entra {
                                aso_credential_in_entra(entra, &ti.spec.azure.client_id, &obj)
                                    .await?;
                            }
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
