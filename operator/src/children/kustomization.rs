//! Flux `Kustomization` (`kustomize.toolkit.fluxcd.io/v1`) applying the tenant repository into
//! the vcluster through the kubeconfig Secret vcluster exports (`vc-<vc>`, key `config`).
//!
//! With `kubeConfig` set, kustomize-controller impersonates a ServiceAccount on the target
//! cluster, that is inside the vcluster: `system:serviceaccount:<Kustomization namespace>:<name>`,
//! where the name is `spec.serviceAccountName`, or the controller's `--default-service-account`
//! when that is empty (Flux's impersonator formats the user name from these two strings and
//! nothing else; Flux's Kustomization API docs: "When both .spec.kubeConfig and
//! .spec.ServiceAccountName are specified, the controller will impersonate the service account on
//! the target cluster"). Under Flux's multi-tenancy lockdown (`--default-service-account`, on by
//! default in the AKS Flux extension) it therefore always impersonates, and every apply into the
//! vcluster is forbidden unless that user is bound to a role there. So the Kustomization always
//! names the account ([`Deployer`]) and the sync rules bind it inside the vcluster
//! (`sync_rules`, `experimental.deploy.vcluster.manifests`). Impersonation authorizes by the user
//! name alone, so the account need not exist in the vcluster. It must exist on the host, though:
//! on deletion kustomize-controller's finalizer prunes only if it finds a ServiceAccount of that
//! name in the Kustomization's namespace with its own client (fluxcd/pkg
//! `Impersonator.CanImpersonate`), so the operator creates one there (`deploy_service_account`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};
use tenant_identity_crd::{
    DEFAULT_DEPLOY_CLUSTER_ROLE,
    kinds::{FIELD_MANAGER, MANAGED_BY_LABEL},
};

use super::{Child, ChildKind, child, owned_meta};
use crate::{names, plan::Plan};

/// The default deploy account: `<name>-deploy`.
pub fn default_service_account(name: &str) -> String {
    format!("{name}-deploy")
}

/// The ClusterRoleBinding inside the vcluster: `tenant-identity-operator:<name>:deploy` (the
/// colon keeps it apart from anything the tenant names, as Kubernetes' own `system:` roles do).
pub fn cluster_role_binding_name(name: &str) -> String {
    format!("{FIELD_MANAGER}:{name}:deploy")
}

/// Who kustomize-controller is inside the vcluster, and what it may do there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployer {
    /// The Kustomization's namespace: the TenantIdentity's.
    pub namespace: String,
    /// `spec.serviceAccountName` of the Kustomization (`git.deploy.serviceAccountName`, default
    /// `<name>-deploy`).
    pub service_account: String,
    /// The ClusterRole bound to it inside the vcluster (`git.deploy.clusterRole`, default
    /// `cluster-admin`).
    pub cluster_role: String,
    /// The ClusterRoleBinding's name inside the vcluster.
    pub binding: String,
}

impl Deployer {
    /// The Kubernetes user kustomize-controller acts as inside the vcluster.
    pub fn user(&self) -> String {
        names::service_account_subject(&self.namespace, &self.service_account)
    }

    /// The ClusterRoleBinding inside the vcluster, as data.
    pub fn cluster_role_binding(&self) -> Value {
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {
                "name": self.binding,
                "labels": {MANAGED_BY_LABEL: FIELD_MANAGER},
            },
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": self.cluster_role,
            },
            "subjects": [{
                "kind": "ServiceAccount",
                "name": self.service_account,
                "namespace": self.namespace,
            }],
        })
    }
}

/// The deployer of a plan with `git.deploy`; `None` without one.
pub fn deployer(plan: &Plan) -> Option<Deployer> {
    let deploy = plan.git.as_ref()?.deploy.as_ref()?;
    Some(Deployer {
        namespace: plan.namespace.clone(),
        service_account: deploy
            .service_account_name
            .clone()
            .unwrap_or_else(|| default_service_account(&plan.name)),
        cluster_role: deploy
            .cluster_role
            .clone()
            .unwrap_or_else(|| DEFAULT_DEPLOY_CLUSTER_ROLE.to_string()),
        binding: cluster_role_binding_name(&plan.name),
    })
}

pub fn build(plan: &Plan, owner: &OwnerReference) -> Option<Child> {
    let git = plan.git.as_ref()?;
    let deploy = git.deploy.as_ref()?;
    let deployer = deployer(plan)?;
    let meta = owned_meta(plan, owner, plan.name.clone());
    let spec = json!({
        "interval": git.interval,
        "path": deploy.path,
        "prune": deploy.prune,
        "sourceRef": {"kind": "GitRepository", "name": plan.name},
        "kubeConfig": {"secretRef": {
            "name": names::vcluster_kubeconfig_secret(&plan.vcluster),
            "key": "config",
        }},
        "serviceAccountName": deployer.service_account,
    });
    Some(child(
        ChildKind::Kustomization,
        meta,
        json!({ "spec": spec }),
    ))
}
