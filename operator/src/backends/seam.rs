//! The trait every credential backend implements, and what its steps are given.

use futures::future::BoxFuture;
use kube::api::DynamicObject;
use tenant_identity_crd::TenantIdentityStatus;

use crate::{
    error::Result,
    plan::{Plan, SpecError, Teardown},
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
    /// A reconcile request (`reconcile.fluxcd.io/requestedAt`) asks to look again now: no memo
    /// of an earlier look may stand in for it.
    pub requested: bool,
}

/// Whether the identity the plan names is the one its client id says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    /// The identity's client id is `spec.azure.clientId`: credentials may be written to it.
    Bound,
    /// It is not, or it cannot be checked: nothing is written and what exists is revoked.
    Refused(SpecError),
}

pub trait CredentialBackend: Send + Sync {
    /// Whether removing a TenantIdentity needs the operator (a finalizer) to remove its
    /// credentials, because garbage collection cannot.
    fn needs_finalizer(&self) -> bool;

    /// Identity binding, before anything is written: a credential is only ever written to the
    /// identity whose client id is `spec.azure.clientId`. An identity that is not ready to say
    /// is an error (retried), not a refusal.
    fn bind<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Binding>>;

    /// Where this plan's credentials will be written (an ARM id), when the status must record
    /// it before the first write so a crash can never leave a credential nobody looks for.
    fn write_target(&self, plan: &Plan) -> Option<String>;

    /// Make the identity carry exactly the plan's credentials and report their state.
    fn sync<'a>(&'a self, input: SyncInput<'a>) -> BoxFuture<'a, Result<CredentialsObserved>>;

    /// Remove the tenant's credentials (revocation; deletion under `deletionPolicy: Delete`).
    fn delete<'a>(&'a self, teardown: &'a Teardown) -> BoxFuture<'a, Result<()>>;
}
