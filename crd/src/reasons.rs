//! Stable PascalCase condition reasons. Changing one is an API change: dashboards, alerts and
//! users' scripts match on them.

/// Ready=True.
pub const IDENTITY_READY: &str = "IdentityReady";
/// Ready=Unknown / Reconciling=True while children converge.
pub const PROGRESSING: &str = "Progressing";
/// The spec passed the CRD schema but not the operator's own checks.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Another namespace already claims this clientId.
pub const IDENTITY_CLAIM_CONFLICT: &str = "IdentityClaimConflict";
/// The identity named in `spec.azure.identity` does not have `spec.azure.clientId` as its
/// client id: nothing is written to it and what exists is revoked.
pub const IDENTITY_MISMATCH: &str = "IdentityMismatch";
/// The ASO UserAssignedIdentity does not report its client id yet (`status.clientId`).
pub const IDENTITY_NOT_READY: &str = "IdentityNotReady";
/// An ASO `owner.armId` cannot be checked: the operator has no Azure identity to read it with.
pub const IDENTITY_UNVERIFIABLE: &str = "IdentityUnverifiable";
/// `--require-namespace-grant` is on and the namespace does not grant this clientId.
pub const IDENTITY_NOT_GRANTED: &str = "IdentityNotGranted";
/// No tenantId in the spec and no `--azure-tenant-id`.
pub const TENANT_ID_MISSING: &str = "TenantIdMissing";
/// No issuer in the spec or flags, and API server discovery failed.
pub const ISSUER_UNAVAILABLE: &str = "IssuerUnavailable";
/// The vcluster's host workload ServiceAccount does not exist (yet).
pub const VIRTUAL_CLUSTER_NOT_FOUND: &str = "VirtualClusterNotFound";
/// Host-side objects applied.
pub const HOST_SYNC_APPLIED: &str = "HostSyncApplied";
/// Credentials exist and are Ready.
pub const CREDENTIALS_READY: &str = "CredentialsReady";
/// Credentials applied but their backend has not reported Ready yet.
pub const CREDENTIALS_PENDING: &str = "CredentialsPending";
/// An ASO credential reports a failure.
pub const CREDENTIALS_FAILED: &str = "CredentialsFailed";
/// The GitRepository has not reported Ready=True yet, or reported False.
pub const GIT_SOURCE_NOT_READY: &str = "GitSourceNotReady";
/// `spec.suspend: true`.
pub const SUSPENDED: &str = "Suspended";
/// A write to the Kubernetes API failed.
pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
/// A required CRD (Flux, ASO) is not installed on the cluster.
pub const DEPENDENCY_MISSING: &str = "DependencyMissing";
/// An object named like one of the children already exists and is not this TenantIdentity's:
/// it is left untouched, never taken over.
pub const CHILD_CONFLICT: &str = "ChildConflict";

// HostSyncReady: does the vcluster really run with the sync rules, and are its host
// ServiceAccounts annotated?

/// PerServiceAccount mode: a listed virtual ServiceAccount has no synced host ServiceAccount yet
/// (not created inside the vcluster, or the vcluster does not sync ServiceAccounts).
pub const SERVICE_ACCOUNTS_NOT_SYNCED: &str = "ServiceAccountsNotSynced";
/// The vcluster's Flux HelmRelease does not take the sync rules ConfigMap in `valuesFrom`.
pub const SYNC_RULES_NOT_REFERENCED: &str = "SyncRulesNotReferenced";
/// The vcluster's HelmRelease references the sync rules, but its own `values` set some of the
/// same keys to something else (inline values win over `valuesFrom`).
pub const SYNC_RULES_OVERRIDDEN: &str = "SyncRulesOverridden";
/// No Flux HelmRelease for the vcluster: the operator cannot check that it carries the sync
/// rules (HostSyncReady stays True; the message says what to verify by hand).
pub const SYNC_RULES_UNVERIFIED: &str = "SyncRulesUnverified";
/// Flux is installing or upgrading the vcluster (its HelmRelease is not Ready for its
/// generation yet).
pub const VIRTUAL_CLUSTER_UPGRADING: &str = "VirtualClusterUpgrading";
/// The vcluster's HelmRelease reports Ready=False (an install or upgrade failed).
pub const VIRTUAL_CLUSTER_RELEASE_FAILED: &str = "VirtualClusterReleaseFailed";
/// The vcluster cannot carry the identity: chart below 0.21 (pod label keys are rewritten, so the
/// webhook never sees `azure.workload.identity/use`) or multi-namespace mode (host names differ).
pub const VIRTUAL_CLUSTER_UNSUPPORTED: &str = "VirtualClusterUnsupported";

// Verification (conditions IdentityVerified and GitAccessVerified).
/// IdentityVerified=True: Entra exchanged a token of every subject.
pub const TOKEN_EXCHANGE_SUCCEEDED: &str = "TokenExchangeSucceeded";
/// IdentityVerified / GitAccessVerified Unknown, Ready=False with Reconciling=True: a check
/// waits for its turn, for the credentials, or for Entra to take in a credential just written.
pub const VERIFYING: &str = "Verifying";
/// Entra found no federated credential matching the presented issuer, subject and audience
/// (AADSTS70021, 700211, 700212, 700213, 7002138).
pub const FEDERATION_MISMATCH: &str = "FederationMismatch";
/// Entra could not fetch the issuer's OIDC discovery document or keys (AADSTS50166).
pub const ISSUER_UNREACHABLE: &str = "IssuerUnreachable";
/// Entra knows no application with this client id in this tenant (AADSTS700016, 90002).
pub const CLIENT_NOT_FOUND: &str = "ClientNotFound";
/// Any other refusal of the exchange, with Entra's message; or Entra could not be reached.
pub const EXCHANGE_FAILED: &str = "ExchangeFailed";
/// GitAccessVerified=True: the repository answered the Flux identity's token.
pub const GIT_ACCESS_GRANTED: &str = "GitAccessGranted";
/// The repository answered 401 or 403 to the Flux identity's token.
pub const GIT_ACCESS_DENIED: &str = "GitAccessDenied";
/// The repository answered 404.
pub const REPOSITORY_NOT_FOUND: &str = "RepositoryNotFound";
/// The git server answered something else (5xx, a redirect): retried.
pub const GIT_CHECK_FAILED: &str = "GitCheckFailed";
/// GitAccessVerified with `git.auth: ControllerLevel`: the operator cannot act as Flux's
/// source-controller, so there is nothing it can check.
pub const NOT_APPLICABLE: &str = "NotApplicable";
/// Both verification conditions when the operator runs with `--verify=false`.
pub const VERIFICATION_DISABLED: &str = "VerificationDisabled";
