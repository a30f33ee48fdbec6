//! Azure Service Operator: the credentials are `FederatedIdentityCredential` children (built and
//! observed by `crate::children::federated_credential`); ASO writes them to Entra, and garbage
//! collection of the children makes ASO delete them. Nothing to call, nothing to finalize; but
//! the identity the children name must be the tenant's: `owner.name` is checked against the
//! UserAssignedIdentity object's `status.clientId` (what ASO read from Azure), `owner.armId`
//! against ARM itself when the operator has an Azure identity.

use std::sync::RwLock;

use futures::{FutureExt, future::BoxFuture};
use kube::{
    Api, Client,
    api::DynamicObject,
    runtime::reflector::{ObjectRef, Store},
};
use tenant_identity_crd::{
    kinds::{self, ChildKind},
    reasons,
};

use super::{
    arm::bind_client_id,
    seam::{Binding, CredentialBackend, SyncInput},
};
use crate::{
    azure::ArmBackend,
    children::{self, Observation},
    error::{BackendError, Error, Result},
    plan::{AsoOwner, ManagedIdentity, Plan, SpecError, Teardown},
    status::{CredentialsObserved, PartState},
};

/// The reasons this backend's errors carry (its other failures reach status through the
/// mirrored children).
pub const REASONS: &[&str] = &[reasons::IDENTITY_NOT_READY];

pub struct AzureServiceOperator {
    client: Client,
    /// For `owner.armId`: None when the operator has no Azure identity.
    arm: Option<ArmBackend>,
    /// The watch's cache of UserAssignedIdentities, once a controller run has one: the binding
    /// then reads no object from the API server.
    identities: RwLock<Option<IdentityCache>>,
}

/// UserAssignedIdentities as a controller run's watch sees them.
pub type IdentityCache = Store<DynamicObject>;

impl AzureServiceOperator {
    pub fn new(client: Client, arm: Option<ArmBackend>) -> Self {
        Self {
            client,
            arm,
            identities: RwLock::new(None),
        }
    }

    pub fn use_identity_cache(&self, cache: IdentityCache) {
        *self.identities.write().unwrap_or_else(|e| e.into_inner()) = Some(cache);
    }

    /// The UserAssignedIdentity `name` of `ns`: from the cache once it has listed, else read.
    async fn identity(&self, ns: &str, name: &str) -> Result<Option<DynamicObject>> {
        let cache = self
            .identities
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(store) = cache
            && store.wait_until_ready().now_or_never().is_some()
        {
            let reference =
                ObjectRef::new_with(name, kinds::aso_user_assigned_identity()).within(ns);
            return Ok(store.get(&reference).map(|obj| (*obj).clone()));
        }
        let api: Api<DynamicObject> = Api::namespaced_with(
            self.client.clone(),
            ns,
            &kinds::aso_user_assigned_identity(),
        );
        crate::read::by_name(&api, name)
            .await
            .map_err(Error::KubernetesApiError)
    }

    async fn bind_named(&self, plan: &Plan, name: &str) -> Result<Binding> {
        let what = format!("UserAssignedIdentity {}/{name}", plan.namespace);
        let not_ready = |message: String| -> Error {
            BackendError {
                reason: reasons::IDENTITY_NOT_READY,
                message,
                terminal: false,
                retry_after: None,
            }
            .into()
        };
        let Some(uai) = self.identity(&plan.namespace, name).await? else {
            return Err(not_ready(format!(
                "{what} (spec.azure.identity.azureServiceOperator.name) does not exist: create it with Azure Service Operator; credentials are written only once its status.clientId is spec.azure.clientId"
            )));
        };
        let Some(actual) = uai
            .data
            .pointer("/status/clientId")
            .and_then(|c| c.as_str())
            .filter(|c| !c.is_empty())
        else {
            return Err(not_ready(format!(
                "{what} does not report status.clientId yet: Azure Service Operator has not created it in Azure"
            )));
        };
        Ok(bind_client_id(
            "spec.azure.identity.azureServiceOperator.name",
            &what,
            actual,
            &plan.client_id,
        ))
    }

    async fn bind_arm_id(&self, plan: &Plan, arm_id: &str) -> Result<Binding> {
        let Some(arm) = &self.arm else {
            return Ok(Binding::Refused(SpecError {
                reason: reasons::IDENTITY_UNVERIFIABLE,
                message: format!(
                    "spec.azure.identity.azureServiceOperator.armId {arm_id}: the operator has no Azure identity to read that identity's client id with, so it cannot check that it is spec.azure.clientId's; use owner name (an ASO UserAssignedIdentity in this namespace), or give the operator an Azure identity (azure.workloadIdentity.clientId)"
                ),
            }));
        };
        let Some(identity) = ManagedIdentity::from_arm_id(arm_id) else {
            return Ok(Binding::Refused(SpecError::invalid(format!(
                "spec.azure.identity.azureServiceOperator.armId {arm_id:?} is not a user-assigned identity id"
            ))));
        };
        let actual = arm.client_id(&identity).await.map_err(BackendError::from)?;
        Ok(bind_client_id(
            "spec.azure.identity.azureServiceOperator.armId",
            arm_id,
            &actual,
            &plan.client_id,
        ))
    }
}

impl CredentialBackend for AzureServiceOperator {
    fn needs_finalizer(&self) -> bool {
        false
    }

    fn bind<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Binding>> {
        async move {
            match plan.backend.service_operator() {
                Some(AsoOwner::Name(name)) => self.bind_named(plan, name).await,
                Some(AsoOwner::ArmId(id)) => self.bind_arm_id(plan, id).await,
                // `Backends::get` only hands this backend ASO plans.
                None => Ok(Binding::Bound),
            }
        }
        .boxed()
    }

    fn write_target(&self, _plan: &Plan) -> Option<String> {
        // The children are the record: garbage collection finds them.
        None
    }

    fn sync<'a>(&'a self, input: SyncInput<'a>) -> BoxFuture<'a, Result<CredentialsObserved>> {
        let observed =
            match children::observe(ChildKind::FederatedCredential, input.plan, input.applied) {
                Some(Observation::Credentials(c)) => c,
                // The plan chose this backend, so the children exist; an empty set still
                // reports honestly rather than claiming Ready.
                _ => CredentialsObserved {
                    part: PartState::waiting(
                        reasons::CREDENTIALS_PENDING,
                        "waiting for Azure Service Operator FederatedIdentityCredential objects",
                    ),
                    states: Vec::new(),
                    written_identities: Vec::new(),
                    rewritten: false,
                },
            };
        async move { Ok(observed) }.boxed()
    }

    fn delete<'a>(&'a self, _teardown: &'a Teardown) -> BoxFuture<'a, Result<()>> {
        async { Ok(()) }.boxed()
    }
}
