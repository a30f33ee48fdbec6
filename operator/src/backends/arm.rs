//! Azure Resource Manager: the operator writes the credentials itself (`crate::azure`), so
//! removal needs its finalizer.

use futures::{FutureExt, future::BoxFuture};
use tenant_identity_crd::{MAX_SUBJECTS, reasons};
use tracing::info;

use super::seam::{CredentialBackend, SyncInput};
use crate::{
    azure::{ArmBackend, ArmError, DesiredCredential, client::INVALID_PATH_SEGMENT},
    error::{BackendError, Result},
    plan::{Backend, ManagedIdentity, Teardown},
    status::{CredentialState, CredentialsObserved, PartState},
};

/// The reason when the operator has no Azure identity of its own.
pub const UNAVAILABLE: &str = "ArmBackendUnavailable";

/// Every reason this backend's errors carry: ARM's, plus [`UNAVAILABLE`].
pub const REASONS: &[&str] = &{
    let mut all = [UNAVAILABLE; ArmError::REASONS.len() + 1];
    let mut i = 0;
    while i < ArmError::REASONS.len() {
        all[i] = ArmError::REASONS[i];
        i += 1;
    }
    all
};

impl From<ArmError> for BackendError {
    fn from(e: ArmError) -> Self {
        BackendError {
            reason: e.reason(),
            terminal: e.is_terminal(),
            retry_after: e.retry_after(),
            message: e.to_string(),
        }
    }
}

/// A managedIdentity tenant while the operator runs without its own Azure identity.
pub fn unavailable() -> BackendError {
    BackendError {
        reason: UNAVAILABLE,
        message: "spec.azure.identity.managedIdentity needs the operator's own Azure workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE): set azure.workloadIdentity.clientId in the Helm values, or use azureServiceOperator".into(),
        terminal: true,
        retry_after: None,
    }
}

pub struct AzureResourceManager {
    /// None when the operator runs without an Azure identity.
    client: Option<ArmBackend>,
}

impl AzureResourceManager {
    pub fn new(client: Option<ArmBackend>) -> Self {
        Self { client }
    }

    fn client(&self) -> Result<&ArmBackend> {
        Ok(self.client.as_ref().ok_or_else(unavailable)?)
    }

    async fn sync_identity(
        &self,
        input: SyncInput<'_>,
        identity: &ManagedIdentity,
    ) -> Result<CredentialsObserved> {
        let client = self.client()?;
        let plan = input.plan;
        let desired: Vec<DesiredCredential> = plan
            .subjects
            .iter()
            .map(|s| DesiredCredential {
                name: s.credential_name.clone(),
                issuer: plan.issuer.clone(),
                subject: s.subject.clone(),
                audience: s.audience.clone(),
            })
            .collect();
        let stale: Vec<String> = reported_credentials(input.previous)
            .into_iter()
            .filter(|n| !desired.iter().any(|d| &d.name == n))
            .collect();
        let report = client
            .sync(identity, &desired, &stale)
            .await
            .map_err(BackendError::from)?;
        if report.writes > 0 {
            info!(tenant = %plan.name, writes = report.writes, "federated credentials written to Azure");
        }
        let states = desired
            .iter()
            .map(|d| (d.name.clone(), CredentialState::Ready))
            .collect();
        Ok(CredentialsObserved {
            part: PartState::ready(
                reasons::CREDENTIALS_READY,
                format!(
                    "{} federated credential(s) on identity {} ({} of {MAX_SUBJECTS} used)",
                    desired.len(),
                    identity.name,
                    report.total
                ),
            ),
            states,
        })
    }

    async fn delete_identity(&self, teardown: &Teardown, identity: &ManagedIdentity) -> Result<()> {
        if teardown.credential_names.is_empty() {
            return Ok(());
        }
        let Some(client) = &self.client else {
            // Without an Azure identity this operator never wrote a credential for a tenant
            // that reported none, so there is nothing to delete and deletion must not hang.
            return if teardown.reported_credentials.is_empty() {
                Ok(())
            } else {
                Err(unavailable().into())
            };
        };
        info!(tenant = %teardown.name, identity = %identity.arm_id(), count = teardown.credential_names.len(), "deleting federated credentials");
        match client.delete(identity, &teardown.credential_names).await {
            // An identity path the client refuses to build (stored under an older, laxer CRD)
            // was never written to by this client either: nothing to delete, and the finalizer
            // must not hang on it.
            Err(ArmError::InvalidRequest { code, .. }) if code == INVALID_PATH_SEGMENT => Ok(()),
            other => other.map_err(|e| BackendError::from(e).into()),
        }
    }
}

/// Credential names this TenantIdentity reported as its own.
fn reported_credentials(
    previous: Option<&tenant_identity_crd::TenantIdentityStatus>,
) -> Vec<String> {
    previous
        .map(|s| {
            s.subjects
                .iter()
                .map(|x| x.credential_name.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl CredentialBackend for AzureResourceManager {
    fn needs_finalizer(&self) -> bool {
        true
    }

    fn sync<'a>(&'a self, input: SyncInput<'a>) -> BoxFuture<'a, Result<CredentialsObserved>> {
        async move {
            match &input.plan.backend {
                Backend::AzureResourceManager(identity) => {
                    self.sync_identity(input, identity).await
                }
                // `Backends::get` only hands this backend ARM plans.
                Backend::AzureServiceOperator(_) => Ok(CredentialsObserved {
                    part: PartState::waiting(reasons::CREDENTIALS_PENDING, "not an ARM tenant"),
                    states: Vec::new(),
                }),
            }
        }
        .boxed()
    }

    fn delete<'a>(&'a self, teardown: &'a Teardown) -> BoxFuture<'a, Result<()>> {
        async move {
            match &teardown.backend {
                Some(Backend::AzureResourceManager(identity)) => {
                    self.delete_identity(teardown, identity).await
                }
                _ => Ok(()),
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_arms_plus_unavailable() {
        assert_eq!(REASONS.len(), ArmError::REASONS.len() + 1);
        assert!(REASONS.contains(&UNAVAILABLE));
        assert!(REASONS.contains(&"Throttled"));
    }
}
