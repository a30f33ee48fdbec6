//! `identity.tenancy.dev/v1alpha1` `TenantIdentity`.
//!
//! Validation lives in the schema (OpenAPI patterns and CEL `x-kubernetes-validations`) so that
//! `kubectl apply` rejects bad input before the operator sees it. The operator evaluates this same
//! schema and its CEL rules again (defence in depth) before it plans anything, plus the few checks
//! only it can make (defaults from its flags, host names that collide after hashing).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Microsoft Entra / Azure GUID (client, tenant and subscription ids).
pub const GUID_PATTERN: &str =
    "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
/// RFC 1123 label (namespaces, vcluster names).
pub const DNS1123_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// RFC 1123 subdomain (ServiceAccount names).
pub const DNS1123_SUBDOMAIN_PATTERN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
/// An `https://` URL (issuer, git URL) of printable ASCII, U+0021 to U+007E: no space, control,
/// non-ASCII space, line separator or bidi character. Spelled as a character range, not as
/// `[^\s]`, because `\s` is ASCII-only in the API server's Go regular expressions and Unicode in
/// the operator's Rust ones: with `\s`, an NBSP or a LINE SEPARATOR passed the API server and
/// was refused by the operator.
pub const URL_PATTERN: &str = "^https://[!-~]+$";
/// The token-exchange audience Entra expects unless told otherwise.
pub const DEFAULT_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Entra allows at most 20 federated identity credentials on one identity.
pub const MAX_SUBJECTS: usize = 20;
/// Names derived from `metadata.name` (`<name>-vcluster-identity`, `<name>-git`) must stay valid
/// DNS-1123 labels where Flux uses them as label values, so the TenantIdentity name is capped.
pub const MAX_NAME_LENGTH: usize = 45;

/// A TenantIdentity gives one vcluster tenant a Microsoft Entra workload identity end to end.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "identity.tenancy.dev",
    version = "v1alpha1",
    kind = "TenantIdentity",
    plural = "tenantidentities",
    singular = "tenantidentity",
    shortname = "ti",
    category = "tenancy",
    namespaced,
    status = "TenantIdentityStatus",
    cel,
    validation = Rule::new("size(self.metadata.name) <= 45").message("metadata.name must be at most 45 characters: child object names are derived from it"),
    // Not our own `<name>-git` child (ObjectLevel): that account is garbage-collected with the TenantIdentity,
    // as the Kustomization is, so kustomize-controller's finalizer may not find it and would skip
    // pruning what it applied into the vcluster.
    validation = Rule::new("!has(self.spec.git) || !has(self.spec.git.deploy) || !has(self.spec.git.deploy.serviceAccountName) || (has(self.spec.git.auth) && self.spec.git.auth == 'ControllerLevel') || self.spec.git.deploy.serviceAccountName != self.metadata.name + '-git'").message("must not be <metadata.name>-git with git.auth ObjectLevel: that is the operator's Flux source ServiceAccount, deleted with the TenantIdentity, and kustomize-controller prunes on deletion only while the account exists").field_path(".spec.git.deploy.serviceAccountName"),
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.virtualCluster.mode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("!has(self.virtualCluster) || !has(self.virtualCluster.serviceAccounts) || size(self.virtualCluster.serviceAccounts) + ((has(self.git) && (!has(self.git.auth) || self.git.auth == 'ObjectLevel')) ? 1 : 0) <= 20").message("at most 20 subjects per identity: serviceAccounts plus the Flux source account must not exceed 20").field_path(".virtualCluster.serviceAccounts")
)]
#[serde(rename_all = "camelCase")]
pub struct TenantIdentitySpec {
    /// The vcluster whose workloads get the identity.
    #[serde(default)]
    pub virtual_cluster: VirtualClusterSpec,
    /// The Entra identity and how its federated credentials are managed.
    pub azure: AzureSpec,
    /// Optional Flux source (and deployment into the vcluster) pulled as the identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSpec>,
    /// What happens to Azure federated credentials when the TenantIdentity is deleted.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Stop reconciling; nothing is created, changed or deleted while suspended.
    #[serde(default)]
    pub suspend: bool,
}

/// How vcluster workloads map onto host service accounts.
#[derive(
    JsonSchema,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
)]
pub enum Mode {
    /// Every pod of the vcluster runs on the host as one workload ServiceAccount; tenants cannot
    /// change which identity they get.
    #[default]
    Shared,
    /// Each listed virtual ServiceAccount is synced to the host and federated on its own.
    PerServiceAccount,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shared => "Shared",
            Mode::PerServiceAccount => "PerServiceAccount",
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[x_kube(
    validation = Rule::new("(has(self.mode) && self.mode == 'PerServiceAccount') || !has(self.serviceAccounts) || size(self.serviceAccounts) == 0").message("serviceAccounts is only used in PerServiceAccount mode").field_path(".serviceAccounts"),
    validation = Rule::new("!has(self.mode) || self.mode != 'PerServiceAccount' || (has(self.serviceAccounts) && size(self.serviceAccounts) > 0)").message("PerServiceAccount mode needs at least one entry in serviceAccounts").field_path(".serviceAccounts"),
    validation = Rule::new("!has(self.mode) || self.mode == 'Shared' || !has(self.workloadServiceAccount) || self.workloadServiceAccount == ''").message("workloadServiceAccount is only used in Shared mode").field_path(".workloadServiceAccount")
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualClusterSpec {
    /// The vcluster (Helm release) name; defaults to the TenantIdentity's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 53), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub name: Option<String>,
    /// Shared (default) or PerServiceAccount.
    #[serde(default)]
    pub mode: Mode,
    /// Shared mode: the host ServiceAccount all vcluster pods run as; defaults to
    /// `vc-workload-<virtualCluster.name>` (vcluster's own default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 253),
        regex(pattern = "^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
    )]
    pub workload_service_account: Option<String>,
    /// PerServiceAccount mode: the virtual ServiceAccounts to federate (at most 20).
    #[serde(default)]
    #[schemars(length(max = MAX_SUBJECTS))]
    // A list-map keyed by namespace+name: the API server itself rejects duplicates.
    #[x_kube(merge_strategy = ListMerge::Map(vec!["namespace".into(), "name".into()]))]
    pub service_accounts: Vec<VirtualServiceAccount>,
}

/// A ServiceAccount inside the vcluster.
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub struct VirtualServiceAccount {
    /// Namespace inside the vcluster.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS1123_LABEL_PATTERN))]
    pub namespace: String,
    /// ServiceAccount name inside the vcluster.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub name: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AzureSpec {
    /// Client id (GUID) of the user-assigned managed identity.
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub client_id: String,
    /// Entra tenant (GUID); defaults to the operator's `--azure-tenant-id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub tenant_id: Option<String>,
    /// OIDC issuer of the host cluster, written byte for byte (AKS issuers end in `/`): an
    /// `https://` URL of printable ASCII (no space, control or non-ASCII character). Defaults to
    /// the operator's `--oidc-issuer-url`, else the API server's discovery document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub issuer: Option<String>,
    /// Audience of the federated credentials (exactly one).
    #[serde(default = "default_audience")]
    #[schemars(length(min = 1, max = 600))]
    pub audience: String,
    /// Where the federated identity credentials are managed: exactly one backend.
    pub identity: IdentityBackend,
}

fn default_audience() -> String {
    DEFAULT_AUDIENCE.to_string()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("has(self.managedIdentity) != has(self.azureServiceOperator)").message("exactly one of managedIdentity or azureServiceOperator must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct IdentityBackend {
    /// The operator manages the credentials itself through Azure Resource Manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_identity: Option<ManagedIdentityRef>,
    /// Azure Service Operator manages the credentials (FederatedIdentityCredential objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_service_operator: Option<AsoIdentityRef>,
}

/// One character of an Azure resource group name. Azure's rule: 1-90 characters; underscores,
/// hyphens, periods, parentheses and letters or digits as .NET's `Char.IsLetterOrDigit` defines
/// them (so Unicode letters and decimal digits too); the name cannot end with a period. The ARM
/// OpenAPI parameter `ResourceGroupNameParameter` spells the characters `^[-\w\._\(\)]+$`, where
/// `\w` is .NET's Unicode class; that pattern alone accepts `.`, `..` and a trailing period.
/// Written with explicit Unicode classes (never `\w`, which is ASCII-only in the API server's
/// Go regexp and Unicode in the operator's Rust one) so both engines accept the same names.
macro_rules! resource_group_char {
    () => {
        r"[-\p{L}\p{Nd}_.()]"
    };
}
/// The last character of a resource group name: anything but a period.
macro_rules! resource_group_last_char {
    () => {
        r"[-\p{L}\p{Nd}_()]"
    };
}

/// An Azure resource group name (length checked separately: 1 to 90 characters). No name can
/// be `.` or `..`, so none can move an ARM request path.
pub const RESOURCE_GROUP_PATTERN: &str = concat!(
    "^",
    resource_group_char!(),
    "*",
    resource_group_last_char!(),
    "$"
);

/// The ARM id of a user-assigned identity, as ASO's `owner.armId` takes it. The resource group
/// follows [`RESOURCE_GROUP_PATTERN`] (with its 90-character limit); the subscription and the
/// identity name cannot contain a period, so no segment is `.` or `..` either.
pub const USER_ASSIGNED_IDENTITY_ARM_ID_PATTERN: &str = concat!(
    "^/subscriptions/[0-9a-zA-Z-]+/[rR]esource[gG]roups/",
    resource_group_char!(),
    "{0,89}",
    resource_group_last_char!(),
    r"/providers/[mM]icrosoft\.[mM]anaged[iI]dentity/[uU]ser[aA]ssigned[iI]dentities/[a-zA-Z0-9][a-zA-Z0-9_-]*$"
);

/// An Azure user-assigned managed identity, addressed in ARM.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase")]
pub struct ManagedIdentityRef {
    /// The subscription (a GUID, as ARM's `SubscriptionIdParameter` requires).
    #[schemars(regex(pattern = GUID_PATTERN))]
    pub subscription_id: String,
    /// The resource group: 1-90 letters, digits, `_`, `-`, `.`, `(`, `)`; not ending in `.`.
    #[schemars(length(min = 1, max = 90), regex(pattern = RESOURCE_GROUP_PATTERN))]
    pub resource_group: String,
    /// The identity's name: 3-128 letters, digits, `-` and `_`, starting with a letter or digit.
    #[schemars(
        length(min = 3, max = 128),
        regex(pattern = "^[a-zA-Z0-9][a-zA-Z0-9-_]+$")
    )]
    pub name: String,
}

/// The owner of the ASO FederatedIdentityCredential objects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("has(self.name) != has(self.armId)").message("exactly one of name or armId must be set")
)]
#[serde(rename_all = "camelCase")]
pub struct AsoIdentityRef {
    /// An ASO UserAssignedIdentity in the same namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub name: Option<String>,
    /// The ARM id of an identity ASO does not manage:
    /// `/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.ManagedIdentity/userAssignedIdentities/<name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = USER_ASSIGNED_IDENTITY_ARM_ID_PATTERN))]
    pub arm_id: Option<String>,
}

/// `provider: azure` makes source-controller send an Entra token to the URL's host, so the host
/// must be Azure DevOps whatever the auth mode, and the URL carries no credentials. The two rules
/// are separate so that each failure says what is wrong: the host rule skips a user part (the
/// credentials rule refuses it), so `https://user:pat@dev.azure.com/...` gets only the
/// credentials message, and `https://dev.azure.com@evil.example/...` both.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(
    validation = Rule::new("!self.url.matches('^https://[^/?#]*@')").message("must not carry credentials or a user name (user:password@ or org@ before the host): Flux authenticates as the workload identity, and anything in the URL is readable by everyone who can read the GitRepository").field_path(".url"),
    validation = Rule::new("self.url.matches('^https://([^/?#]*@)?(dev\\\\.azure\\\\.com|[a-zA-Z0-9-]+\\\\.visualstudio\\\\.com)/')").message("must be an Azure DevOps URL (https://dev.azure.com/... or https://<org>.visualstudio.com/...) in both auth modes: with provider azure, source-controller sends an Entra token to the URL's host").field_path(".url")
)]
#[serde(rename_all = "camelCase")]
pub struct GitSpec {
    /// HTTPS URL of the Azure DevOps repository (`https://dev.azure.com/<org>/<project>/_git/<repo>`
    /// or `https://<org>.visualstudio.com/...`), without credentials or a user name; printable
    /// ASCII (percent-encode anything else, as Azure DevOps' clone URLs do).
    #[schemars(length(max = 2048), regex(pattern = URL_PATTERN))]
    pub url: String,
    /// What to check out; Flux's default branch when omitted.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<GitRef>,
    /// How often Flux checks the repository (Go duration, e.g. `5m`, `1h30m`). The pattern is
    /// Flux's own for `GitRepository.spec.interval`.
    #[serde(default = "default_interval")]
    #[schemars(length(max = 32), regex(pattern = "^([0-9]+(\\.[0-9]+)?(ms|s|m|h))+$"))]
    pub interval: String,
    /// ObjectLevel: Flux authenticates as `<name>-git` (Flux >= 2.7 with the
    /// ObjectLevelWorkloadIdentity gate); ControllerLevel: as source-controller's own identity,
    /// which gives the tenant every repository that identity can read.
    #[serde(default)]
    pub auth: GitAuth,
    /// Optional Kustomization applying the repository into the vcluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeploySpec>,
}

fn default_interval() -> String {
    "5m".to_string()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("(has(self.branch) ? 1 : 0) + (has(self.tag) ? 1 : 0) + (has(self.semver) ? 1 : 0) + (has(self.commit) ? 1 : 0) == 1").message("exactly one of branch, tag, semver or commit must be set")
)]
pub struct GitRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub semver: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9a-f]{7,64}$"))]
    pub commit: Option<String>,
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum GitAuth {
    #[default]
    ObjectLevel,
    ControllerLevel,
}

/// What kustomize-controller applies into the vcluster, and as whom. With `kubeConfig` set,
/// kustomize-controller impersonates `system:serviceaccount:<namespace>:<serviceAccountName>` on
/// the target cluster (Flux's impersonation: the name is formatted from the Kustomization's
/// namespace and `serviceAccountName`, or the controller's `--default-service-account` when empty),
/// so inside the vcluster; under Flux's multi-tenancy lockdown it always impersonates. The
/// operator therefore always names the account and binds it inside the vcluster (the values
/// fragment's `experimental.deploy.vcluster.manifests`). Kubernetes authorizes an impersonated
/// user by its name alone, so the account need not exist in the vcluster; but kustomize-controller
/// prunes on deletion only if a ServiceAccount of that name exists in the Kustomization's
/// namespace on the host (its finalizer looks it up, fluxcd/pkg `Impersonator.CanImpersonate`), so
/// the operator creates one there when none exists, owned by the Kustomization.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[x_kube(
    validation = Rule::new("!has(self.clusterRole) || (self.clusterRole != '.' && self.clusterRole != '..')").message("must be a ClusterRole name inside the vcluster: '.' and '..' are not valid object names").field_path(".clusterRole")
)]
#[serde(rename_all = "camelCase")]
pub struct DeploySpec {
    /// Path inside the repository.
    #[serde(default = "default_path")]
    #[schemars(length(min = 1, max = 1024))]
    pub path: String,
    /// Delete objects removed from the repository.
    #[serde(default = "default_true")]
    pub prune: bool,
    /// The account kustomize-controller impersonates inside the vcluster (the Kustomization's
    /// `serviceAccountName`); default `<metadata.name>-deploy`. Unless one of that name exists, the
    /// operator also creates it in this namespace, owned by the Kustomization: Flux prunes on
    /// deletion only if it finds it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS1123_SUBDOMAIN_PATTERN))]
    pub service_account_name: Option<String>,
    /// The ClusterRole inside the vcluster bound to that account; default `cluster-admin`. Any
    /// name Kubernetes accepts for one (no `/`, `%`, `.` or `..`), without ASCII whitespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = "^[^/% \\t\\n\\r\\f\\v]+$")
    )]
    pub cluster_role: Option<String>,
}

/// The ClusterRole the deploy account gets inside the vcluster unless `clusterRole` says otherwise.
pub const DEFAULT_DEPLOY_CLUSTER_ROLE: &str = "cluster-admin";

fn default_path() -> String {
    "./".to_string()
}

fn default_true() -> bool {
    true
}

#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the federated credentials with the TenantIdentity.
    #[default]
    Delete,
    /// Keep them (e.g. while migrating a tenant between clusters).
    Retain,
}

/// Observed state, kstatus-compatible.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TenantIdentityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The issuer written into the federated credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    #[serde(default)]
    pub subjects: Vec<SubjectStatus>,
    /// Host ServiceAccounts the tenant's workloads run as.
    #[serde(default)]
    pub host_service_accounts: Vec<String>,
    /// The last `reconcile.fluxcd.io/requestedAt` value handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// ARM ids of the identities the operator wrote credentials to (recorded before the first
    /// write), so a switch of identity or a deletion cleans each of them. Only places to look:
    /// on each, only credentials whose name is this TenantIdentity's are ever touched.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub written_identities: Vec<String>,
    /// When the chain was last checked end to end and what was checked, so the schedule of
    /// verification survives a restart of the operator (absent while verification is off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
}

/// The schedule of the end-to-end verification (conditions `IdentityVerified` and
/// `GitAccessVerified` carry the result).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// A digest of what was verified (client, tenant, issuer, each subject and audience, the
    /// git URL): any change starts a new verification with a new propagation grace.
    pub fingerprint: String,
    /// When this fingerprint was first seen (RFC 3339): the propagation grace counts from here.
    pub since: String,
    /// When the last check ran (RFC 3339).
    pub last_checked: String,
    /// Checks that failed in a row since the last success (0 after a success): the retry
    /// backoff grows with it.
    #[serde(default)]
    pub failures: u32,
}

/// One federated subject and its credential.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SubjectStatus {
    pub subject: String,
    pub credential_name: String,
    /// Ready, Pending or Failed.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The token exchange for this subject, as the reason of `IdentityVerified` spells it
    /// (`TokenExchangeSucceeded`, `Verifying`, `FederationMismatch`, ...); absent until checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<String>,
}
