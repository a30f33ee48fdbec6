//! Azure Service Operator: the credentials are `FederatedIdentityCredential` children (built and
//! observed by `crate::children::federated_credential`); ASO writes them to Entra, and garbage
//! collection of the children makes ASO delete them. Nothing to call, nothing to finalize.

use futures::{FutureExt, future::BoxFuture};
use tenant_identity_crd::{kinds::ChildKind, reasons};

use super::seam::{CredentialBackend, SyncInput};
use crate::{
    children::{self, Observation},
    error::Result,
    plan::Teardown,
    status::{CredentialsObserved, PartState},
};

/// ASO's failures reach status through the mirrored children, never as errors.
pub const REASONS: &[&str] = &[];

pub struct AzureServiceOperator;

impl CredentialBackend for AzureServiceOperator {
    fn needs_finalizer(&self) -> bool {
        false
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
                },
            };
        async move { Ok(observed) }.boxed()
    }

    fn delete<'a>(&'a self, _teardown: &'a Teardown) -> BoxFuture<'a, Result<()>> {
        async { Ok(()) }.boxed()
    }
}
