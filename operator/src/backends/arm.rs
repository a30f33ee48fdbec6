//! Azure Resource Manager: the operator writes the credentials itself (`crate::azure`), so
//! removal needs its finalizer. What is ours on an identity is proven by each credential: its
//! name is the one we derive from its own subject (`names::is_own_credential`), never by status
//! and never by a name pattern, which tenants of other namespaces can share; status only records
//! which identities to look at (`status.writtenIdentities`).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use futures::{FutureExt, future::BoxFuture};
use tenant_identity_crd::{MAX_SUBJECTS, reasons};
use tracing::info;

use super::seam::{Binding, CredentialBackend, SyncInput};
use crate::{
    azure::{ArmBackend, ArmError, DesiredCredential, Owns, client::INVALID_PATH_SEGMENT},
    error::{BackendError, Result},
    names,
    plan::{Backend, ManagedIdentity, Plan, SpecError, Teardown},
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

/// The refusal when an identity's client id is not the tenant's.
pub fn mismatch(field: &str, identity: &str, actual: &str, wanted: &str) -> SpecError {
    SpecError {
        reason: reasons::IDENTITY_MISMATCH,
        message: format!(
            "{field} names identity {identity}, whose client id is {actual}, not spec.azure.clientId {wanted}: credentials are only ever written to the identity whose client id is spec.azure.clientId; name that identity, or set clientId to its client id (and have the namespace granted it)"
        ),
    }
}

/// Compare an identity's client id with the tenant's (GUIDs: case-insensitive).
pub fn bind_client_id(field: &str, identity: &str, actual: &str, wanted: &str) -> Binding {
    if actual.eq_ignore_ascii_case(wanted) {
        Binding::Bound
    } else {
        Binding::Refused(mismatch(field, identity, actual, wanted))
    }
}

/// How long a tenant's credentials, once found as desired on its identity, are taken to stay so
/// without asking ARM again (the controller's own resync interval). Any change of the desired
/// credentials, a reconcile request, a failure or a deletion looks again at once.
pub const ARM_RESYNC: Duration = Duration::from_secs(600);

/// What the last sync of a tenant found, for [`ARM_RESYNC`].
struct Synced {
    desired: u64,
    at: Instant,
    observed: CredentialsObserved,
}

/// (identity ARM id, lowercase; namespace/name of the tenant).
type SyncKey = (String, String);

pub struct AzureResourceManager {
    /// None when the operator runs without an Azure identity.
    client: Option<ArmBackend>,
    synced: Mutex<HashMap<SyncKey, Synced>>,
}

impl AzureResourceManager {
    pub fn new(client: Option<ArmBackend>) -> Self {
        Self {
            client,
            synced: Mutex::new(HashMap::new()),
        }
    }

    fn memo(&self) -> std::sync::MutexGuard<'_, HashMap<SyncKey, Synced>> {
        self.synced.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The operator's ARM client, if it has an Azure identity.
    pub fn client(&self) -> Option<&ArmBackend> {
        self.client.as_ref()
    }

    fn required(&self) -> Result<&ArmBackend> {
        Ok(self.client.as_ref().ok_or_else(unavailable)?)
    }

    async fn bind_identity(&self, plan: &Plan, identity: &ManagedIdentity) -> Result<Binding> {
        let client = self.required()?;
        let actual = client
            .client_id(identity)
            .await
            .map_err(BackendError::from)?;
        Ok(bind_client_id(
            "spec.azure.identity.managedIdentity",
            &identity.arm_id(),
            &actual,
            &plan.client_id,
        ))
    }

    async fn sync_identity(
        &self,
        input: SyncInput<'_>,
        identity: &ManagedIdentity,
    ) -> Result<CredentialsObserved> {
        let client = self.required()?;
        let plan = input.plan;
        let owns = |name: &str, subject: &str| {
            names::is_own_credential(&plan.namespace, &plan.name, name, subject)
        };
        let key = (
            identity.arm_id().to_ascii_lowercase(),
            format!("{}/{}", plan.namespace, plan.name),
        );
        let desired_digest = {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            plan.issuer.hash(&mut hasher);
            for s in &plan.subjects {
                (&s.credential_name, &s.subject, &s.audience).hash(&mut hasher);
            }
            hasher.finish()
        };
        let stale_identities = recorded_identities(input)
            .into_iter()
            .any(|old| !old.same_as(identity));
        if !input.requested && !stale_identities {
            let memo = self.memo();
            if let Some(synced) = memo.get(&key)
                && synced.desired == desired_digest
                && synced.at.elapsed() < ARM_RESYNC
            {
                return Ok(synced.observed.clone());
            }
        }
        self.memo().remove(&key);
        // Identities written to before and no longer named: take our credentials off them.
        for old in recorded_identities(input)
            .into_iter()
            .filter(|old| !old.same_as(identity))
        {
            info!(tenant = %plan.name, identity = %old.arm_id(), "removing credentials from an identity the tenant no longer names");
            delete_ignoring_unbuildable(client, &old, &owns).await?;
        }
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
        let report = client
            .sync_owned(identity, &desired, &owns)
            .await
            .map_err(BackendError::from)?;
        if report.writes > 0 {
            info!(tenant = %plan.name, writes = report.writes, "federated credentials written to Azure");
        }
        let states = desired
            .iter()
            .map(|d| (d.name.clone(), CredentialState::Ready))
            .collect();
        let observed = CredentialsObserved {
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
            written_identities: vec![identity.arm_id()],
            rewritten: report.writes > 0,
        };
        let mut memo = self.memo();
        // Entries of tenants not seen for an interval are of no use any more.
        memo.retain(|_, s| s.at.elapsed() < ARM_RESYNC);
        memo.insert(
            key,
            Synced {
                desired: desired_digest,
                at: Instant::now(),
                observed: CredentialsObserved {
                    rewritten: false,
                    ..observed.clone()
                },
            },
        );
        Ok(observed)
    }
}

/// The identities the status records, as ARM coordinates.
fn recorded_identities(input: SyncInput<'_>) -> Vec<ManagedIdentity> {
    input
        .previous
        .map(|s| {
            s.written_identities
                .iter()
                .filter_map(|id| ManagedIdentity::from_arm_id(id))
                .collect()
        })
        .unwrap_or_default()
}

/// Delete our credentials on `identity`. An identity path the client refuses to build (stored
/// under an older, laxer CRD) was never written to by this client either: nothing to delete,
/// and a finalizer must not hang on it.
async fn delete_ignoring_unbuildable(
    client: &ArmBackend,
    identity: &ManagedIdentity,
    owns: &Owns<'_>,
) -> Result<()> {
    match client.delete_owned(identity, owns).await {
        Err(ArmError::InvalidRequest { code, .. }) if code == INVALID_PATH_SEGMENT => Ok(()),
        other => other.map_err(|e| BackendError::from(e).into()),
    }
}

impl CredentialBackend for AzureResourceManager {
    fn needs_finalizer(&self) -> bool {
        true
    }

    fn bind<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Binding>> {
        async move {
            // `Backends::get` only hands this backend ARM plans.
            let Some(identity) = plan.backend.resource_manager() else {
                return Ok(Binding::Bound);
            };
            self.bind_identity(plan, identity).await
        }
        .boxed()
    }

    fn write_target(&self, plan: &Plan) -> Option<String> {
        plan.backend.resource_manager().map(ManagedIdentity::arm_id)
    }

    fn sync<'a>(&'a self, input: SyncInput<'a>) -> BoxFuture<'a, Result<CredentialsObserved>> {
        async move {
            let Some(identity) = input.plan.backend.resource_manager() else {
                return Ok(CredentialsObserved {
                    part: PartState::waiting(reasons::CREDENTIALS_PENDING, "not an ARM tenant"),
                    states: Vec::new(),
                    written_identities: Vec::new(),
                    rewritten: false,
                });
            };
            self.sync_identity(input, identity).await
        }
        .boxed()
    }

    fn delete<'a>(&'a self, teardown: &'a Teardown) -> BoxFuture<'a, Result<()>> {
        async move {
            // Every identity ever written to, and the one the spec names now even when it is
            // refused (binding, claims, grant) and status does not list it: status can be
            // patched, and our credentials there trust our subjects, so they must go. Safe on
            // any identity: only credentials named for exactly our (namespace, name, subject)
            // are deleted, never another tenant's that shares our name prefix.
            let mut identities = teardown.written_identities.clone();
            if let Some(current) = teardown.backend.as_ref().and_then(Backend::resource_manager)
                && !identities.iter().any(|i| i.same_as(current))
            {
                identities.push(current.clone());
            }
            let Some(client) = &self.client else {
                // Without an Azure identity this operator never wrote a credential for a
                // tenant that reports none, so there is nothing to delete and deletion must
                // not hang.
                return if teardown.ever_written {
                    Err(unavailable().into())
                } else {
                    Ok(())
                };
            };
            let owns = |name: &str, subject: &str| teardown.owns(name, subject);
            let tenant = format!("{}/{}", teardown.namespace, teardown.name);
            self.memo().retain(|(_, t), _| *t != tenant);
            for identity in &identities {
                info!(tenant = %teardown.name, identity = %identity.arm_id(), "deleting the tenant's federated credentials");
                delete_ignoring_unbuildable(client, identity, &owns).await?;
            }
            Ok(())
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

    #[test]
    fn binding_compares_client_ids_ignoring_case() {
        let id = "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f";
        assert_eq!(
            bind_client_id("f", "/x", id, &id.to_uppercase()),
            Binding::Bound
        );
        let Binding::Refused(e) = bind_client_id(
            "spec.azure.identity.managedIdentity",
            "/x",
            id,
            "00000000-0000-0000-0000-000000000000",
        ) else {
            panic!("a different client id is refused");
        };
        assert_eq!(e.reason, "IdentityMismatch");
        assert!(
            e.message.contains(id) && e.message.contains("spec.azure.clientId"),
            "{}",
            e.message
        );
    }
}
