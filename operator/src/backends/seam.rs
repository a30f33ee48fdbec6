//! The trait every credential backend implements, and what its sync is given.

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use tenant_identity_crd::TenantIdentityStatus;

use crate::{
    error::Result,
    plan::{Plan, Teardown},
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
