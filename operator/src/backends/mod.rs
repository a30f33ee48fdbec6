//! The credential-backend seam: where a tenant's federated identity credentials are written.
//!
//! The reconcile pipeline talks to a backend only through [`CredentialBackend`]; [`Backends`]
//! picks the implementation for a plan's [`Backend`]. The Kubernetes objects a backend needs
//! (ASO's `FederatedIdentityCredential`s) are child kinds in the child table
//! (`crate::children`), so apply, prune and watches treat them like every other child.
//!
//! Adding a backend: a module here implementing [`CredentialBackend`], a [`Backend`] variant in
//! `crate::plan` (and the CRD field it is chosen by), and one arm in [`Backends::get`] and
//! [`all_reasons`]. docs/architecture.md walks through it.

pub mod arm;
pub mod aso;

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use tenant_identity_crd::TenantIdentityStatus;

use crate::{
    azure::ArmBackend,
    error::Result,
    plan::{Backend, Plan, Teardown},
    status::CredentialsObserved,
};

/// What a backend's sync sees of one reconcile.
#[derive(Clone, Copy, Debug)]
pub struct SyncInput<'a> {
    pub plan: &'a Plan,
    /// The children applied this reconcile, as the API server returned them.
    pub applied: &'a [DynamicObject],
    /// The status before this reconcile.
    pub previous: Option<&'a TenantIdentityStatus>,
}

pub trait CredentialBackend: Send + Sync {
    /// Whether removing a TenantIdentity needs the operator (a finalizer) to remove its
    /// credentials, because garbage collection cannot.
    fn needs_finalizer(&self) -> bool;

    /// Make the identity carry exactly the plan's credentials and report their state.
    fn sync<'a>(&'a self, input: SyncInput<'a>) -> BoxFuture<'a, Result<CredentialsObserved>>;

    /// Remove the tenant's credentials (revocation; deletion under `deletionPolicy: Delete`).
    fn delete<'a>(&'a self, teardown: &'a Teardown) -> BoxFuture<'a, Result<()>>;
}

/// Every backend the operator runs, built once per process.
pub struct Backends {
    aso: aso::AzureServiceOperator,
    arm: arm::AzureResourceManager,
}

impl Backends {
    /// `arm` is None when the operator runs without an Azure identity of its own.
    pub fn new(arm: Option<ArmBackend>) -> Self {
        Self {
            aso: aso::AzureServiceOperator,
            arm: arm::AzureResourceManager::new(arm),
        }
    }

    pub fn get(&self, backend: &Backend) -> &dyn CredentialBackend {
        match backend {
            Backend::AzureServiceOperator(_) => &self.aso,
            Backend::AzureResourceManager(_) => &self.arm,
        }
    }
}

/// Every reason a backend's errors can carry (pre-created metric series).
pub fn all_reasons() -> impl Iterator<Item = &'static str> {
    aso::REASONS.iter().chain(arm::REASONS).copied()
}
