//! The kinds a TenantIdentity owns, and the labels on them: one table that the operator (apply,
//! prune, watches, status), the end-to-end suite and the chart's RBAC check all read.
//!
//! Adding a kind means adding a [`ChildKind`] variant; every `match` on it, here and in the
//! operator, then fails to compile until the new kind has a resource, a builder and a watch.

use kube::api::ApiResource;
use strum::{EnumIter, IntoEnumIterator, IntoStaticStr};

/// Field manager of every server-side apply the operator makes, and the value of
/// [`MANAGED_BY_LABEL`] on its children.
pub const FIELD_MANAGER: &str = "tenant-identity-operator";
/// Label on every child, value = TenantIdentity name.
pub const TENANT_LABEL: &str = "identity.tenancy.dev/tenant";
/// Label on every child, value = [`FIELD_MANAGER`]; the owned-object watches select on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// ASO's `UserAssignedIdentity`: neither a child nor a tenant's vcluster object, but read (never
/// written) by the ASO backend's identity binding for its `status.clientId`, watched and cached,
/// and granted by the `rbac` command from here.
pub fn aso_user_assigned_identity() -> ApiResource {
    ApiResource {
        group: "managedidentity.azure.com".into(),
        version: "v1api20230131".into(),
        api_version: "managedidentity.azure.com/v1api20230131".into(),
        kind: "UserAssignedIdentity".into(),
        plural: "userassignedidentities".into(),
    }
}

/// A kind of object the operator creates with a controller owner reference. The order of the
/// variants is the apply order: things referenced come before the things referencing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, IntoStaticStr)]
pub enum ChildKind {
    /// ConfigMap `<name>-vcluster-identity`: the vcluster values fragment.
    SyncRules,
    /// ServiceAccount `<name>-git`: the identity Flux's source-controller uses (ObjectLevel).
    GitServiceAccount,
    /// Azure Service Operator `FederatedIdentityCredential`, one per subject (ASO backend).
    FederatedCredential,
    /// Flux `GitRepository` with `provider: azure`.
    GitRepository,
    /// Flux `Kustomization` applying the repository into the vcluster.
    Kustomization,
}

impl ChildKind {
    /// Every kind, in apply order.
    pub fn all() -> impl Iterator<Item = ChildKind> {
        ChildKind::iter()
    }

    /// Where the kind is served.
    pub fn api_resource(self) -> ApiResource {
        let (group, version, kind, plural) = self.coordinates();
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        ApiResource {
            group: group.into(),
            version: version.into(),
            api_version,
            kind: kind.into(),
            plural: plural.into(),
        }
    }

    /// (group, version, kind, plural).
    fn coordinates(self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            ChildKind::SyncRules => ("", "v1", "ConfigMap", "configmaps"),
            ChildKind::GitServiceAccount => ("", "v1", "ServiceAccount", "serviceaccounts"),
            ChildKind::FederatedCredential => (
                "managedidentity.azure.com",
                "v1api20230131",
                "FederatedIdentityCredential",
                "federatedidentitycredentials",
            ),
            ChildKind::GitRepository => (
                "source.toolkit.fluxcd.io",
                "v1",
                "GitRepository",
                "gitrepositories",
            ),
            ChildKind::Kustomization => (
                "kustomize.toolkit.fluxcd.io",
                "v1",
                "Kustomization",
                "kustomizations",
            ),
        }
    }

    /// Served by every cluster (core API), so the operator watches it unconditionally; the others
    /// come from CRDs (Flux, ASO) that may not be installed.
    pub fn is_builtin(self) -> bool {
        self.coordinates().0.is_empty()
    }

    /// The kind a child of this kind is, as the API server spells it.
    pub fn kind_name(self) -> &'static str {
        self.coordinates().2
    }

    /// Whether another controller reports on children of this kind in their `status` (ASO on
    /// its credentials, Flux's source-controller on the GitRepository), which the reconcile
    /// mirrors into the tenant's conditions: the child cache keeps their `status`.
    pub fn reports_upstream_status(self) -> bool {
        match self {
            ChildKind::FederatedCredential | ChildKind::GitRepository => true,
            ChildKind::SyncRules | ChildKind::GitServiceAccount | ChildKind::Kustomization => false,
        }
    }

    /// The owned kind of a `kind` name, if it is one of ours. Two child kinds may share an API
    /// kind (ConfigMap, ServiceAccount are both core); the first in apply order is returned.
    pub fn by_api_kind(api_version: &str, kind: &str) -> Option<ChildKind> {
        ChildKind::all().find(|k| {
            let r = k.api_resource();
            r.kind == kind && r.api_version == api_version
        })
    }
}

/// A kind the operator reads but never writes: another controller's object whose state decides a
/// part of the status. Watched without a label selector (they are not ours) and granted read
/// access only (`tenant-identity-operator rbac`); never pruned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, EnumIter, IntoStaticStr)]
pub enum ObservedKind {
    /// Flux `HelmRelease` named like `virtualCluster.name`: the vcluster release, which must take
    /// the sync rules ConfigMap in `valuesFrom` and be Ready for its generation.
    VirtualClusterRelease,
}

impl ObservedKind {
    /// Every observed kind.
    pub fn all() -> impl Iterator<Item = ObservedKind> {
        ObservedKind::iter()
    }

    /// The kind as the API server spells it.
    pub fn kind_name(self) -> &'static str {
        match self {
            ObservedKind::VirtualClusterRelease => "HelmRelease",
        }
    }

    /// Where the kind is served.
    pub fn api_resource(self) -> ApiResource {
        match self {
            ObservedKind::VirtualClusterRelease => ApiResource {
                group: "helm.toolkit.fluxcd.io".into(),
                version: "v2".into(),
                api_version: "helm.toolkit.fluxcd.io/v2".into(),
                kind: self.kind_name().into(),
                plural: "helmreleases".into(),
            },
        }
    }
}

/// Every API resource the operator only reads (see [`ObservedKind`]).
pub fn observed_resources() -> Vec<ApiResource> {
    ObservedKind::all()
        .map(ObservedKind::api_resource)
        .collect()
}

/// Every distinct API resource the operator owns children of (ConfigMaps and ServiceAccounts
/// appear once even if several child kinds use them).
pub fn owned_resources() -> Vec<ApiResource> {
    let mut out: Vec<ApiResource> = Vec::new();
    for kind in ChildKind::all() {
        let r = kind.api_resource();
        if !out
            .iter()
            .any(|o| o.api_version == r.api_version && o.kind == r.kind)
        {
            out.push(r);
        }
    }
    out
}

/// The label selector every owned child matches: `app.kubernetes.io/managed-by=<FIELD_MANAGER>`.
pub fn managed_by_selector() -> String {
    format!("{MANAGED_BY_LABEL}={FIELD_MANAGER}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_are_joined_from_group_and_version() {
        assert_eq!(ChildKind::SyncRules.api_resource().api_version, "v1");
        assert_eq!(
            ChildKind::GitRepository.api_resource().api_version,
            "source.toolkit.fluxcd.io/v1"
        );
    }

    #[test]
    fn owned_resources_are_distinct_and_cover_every_kind() {
        let resources = owned_resources();
        assert_eq!(resources.len(), 5, "five distinct kinds today");
        for kind in ChildKind::all() {
            assert!(
                resources.iter().any(|r| r.kind == kind.kind_name()),
                "{kind:?}"
            );
        }
        assert_eq!(
            ChildKind::by_api_kind("v1", "ServiceAccount"),
            Some(ChildKind::GitServiceAccount)
        );
        assert_eq!(ChildKind::by_api_kind("v1", "Secret"), None);
    }
}
