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
/// No git source configured.
pub const GIT_SOURCE_NOT_CONFIGURED: &str = "GitSourceNotConfigured";
/// `spec.suspend: true`.
pub const SUSPENDED: &str = "Suspended";
/// A write to the Kubernetes API failed.
pub const KUBERNETES_API_ERROR: &str = "KubernetesApiError";
/// A required CRD (Flux, ASO) is not installed on the cluster.
pub const DEPENDENCY_MISSING: &str = "DependencyMissing";
/// An object named like one of the children already exists and is not this TenantIdentity's:
/// it is left untouched, never taken over.
pub const CHILD_CONFLICT: &str = "ChildConflict";
