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
mod seam;

pub use seam::{Binding, CredentialBackend, SyncInput};

use kube::Client;

use crate::{azure::ArmBackend, plan::Backend};

/// Every backend the operator runs, built once per process.
pub struct Backends {
    aso: aso::AzureServiceOperator,
    arm: arm::AzureResourceManager,
}

impl Backends {
    /// `arm` is None when the operator runs without an Azure identity of its own.
    pub fn new(client: Client, arm: Option<ArmBackend>) -> Self {
        Self {
            aso: aso::AzureServiceOperator::new(client, arm.clone()),
            arm: arm::AzureResourceManager::new(arm),
        }
    }

    /// Let the ASO binding read UserAssignedIdentities from a controller run's watch.
    pub fn use_identity_cache(&self, cache: aso::IdentityCache) {
        self.aso.use_identity_cache(cache);
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
