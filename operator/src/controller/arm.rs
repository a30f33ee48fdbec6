//! The managedIdentity backend: federated credentials written to Azure Resource Manager.

use kube::ResourceExt;
use tenant_identity_crd::{TenantIdentity, conditions, reasons};
use tracing::info;

use super::Context;
use crate::{
    azure::{ArmBackend, DesiredCredential, ManagedIdentityRef},
    error::{Error, Result},
    plan::Plan,
    status::{CredentialState, PartState},
};

fn arm(ctx: &Context) -> Result<&ArmBackend> {
    ctx.shared.arm.as_ref().ok_or_else(|| {
        Error::ArmBackendUnavailable(
            "spec.azure.identity.managedIdentity needs the operator's own Azure workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE): set azure.workloadIdentity.clientId in the Helm values, or use azureServiceOperator".into(),
        )
    })
}

/// Credential names this TenantIdentity reported as its own.
pub(super) fn reported_credentials(ti: &TenantIdentity) -> Vec<String> {
    ti.status
        .as_ref()
        .map(|s| {
            s.subjects
                .iter()
                .map(|x| x.credential_name.clone())
                .collect()
        })
        .unwrap_or_default()
}

pub(super) fn refused(ti: &TenantIdentity) -> bool {
    ti.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .is_some_and(|c| {
            c.reason == reasons::IDENTITY_CLAIM_CONFLICT
                || c.reason == reasons::IDENTITY_NOT_GRANTED
        })
}

pub(super) async fn delete_arm_credentials(
    ti: &TenantIdentity,
    ctx: &Context,
    names: Vec<String>,
) -> Result<()> {
    let Some(mi) = &ti.spec.azure.identity.managed_identity else {
        return Ok(());
    };
    if names.is_empty() {
        return Ok(());
    }
    arm(ctx)?
        .delete(&ManagedIdentityRef::from(mi), &names)
        .await
        .map_err(Error::from)
}

/// ARM backend: make the identity carry exactly our desired credentials.
pub(super) async fn sync_arm_credentials(
    ti: &TenantIdentity,
    plan: &Plan,
    mi: &tenant_identity_crd::ManagedIdentityRef,
    ctx: &Context,
) -> Result<(PartState, Vec<(String, CredentialState)>)> {
    let backend = arm(ctx)?;
    let desired: Vec<DesiredCredential> = plan
        .subjects
        .iter()
        .map(|s| DesiredCredential {
            name: s.credential_name.clone(),
            issuer: plan.issuer.clone(),
            subject: s.subject.clone(),
            audience: plan.audience.clone(),
        })
        .collect();
    let stale: Vec<String> = reported_credentials(ti)
        .into_iter()
        .filter(|n| !desired.iter().any(|d| &d.name == n))
        .collect();
    let report = backend
        .sync(&ManagedIdentityRef::from(mi), &desired, &stale)
        .await?;
    if report.writes > 0 {
        info!(tenant = %ti.name_any(), writes = report.writes, "federated credentials written to Azure");
    }
    let states = desired
        .iter()
        .map(|d| (d.name.clone(), CredentialState::Ready))
        .collect();
    Ok((
        PartState::ready(
            reasons::CREDENTIALS_READY,
            format!(
                "{} federated credential(s) on identity {} ({} of 20 used)",
                desired.len(),
                mi.name,
                report.total
            ),
        ),
        states,
    ))
}
