//! The host ServiceAccount named like the Kustomization's `serviceAccountName` (`<name>-deploy`
//! by default), in the TenantIdentity's namespace.
//!
//! kustomize-controller impersonates that account inside the vcluster, where impersonation
//! authorizes by the user name alone. But when the Kustomization is deleted, its finalizer
//! prunes what it applied only if `impersonation.CanImpersonate(ctx)` holds (Flux
//! kustomize-controller `internal/controller/kustomization_controller.go`, `finalize`), and
//! fluxcd/pkg `runtime/client/impersonator.go` `Impersonator.CanImpersonate` GETs the
//! ServiceAccount `<serviceAccountName>` in the Kustomization's namespace with the controller's
//! own client, that is on the host, whatever `kubeConfig` says. Not found, it logs "skiping
//! pruning, failed to find account to impersonate" and removes its finalizer: everything it
//! applied stays in the vcluster despite `prune: true`. So the operator makes sure an account of
//! that name exists on the host.
//!
//! It exists only for that check: it has no RBAC on the host and no federated credential names
//! it. It is created (never applied) only when missing, and owned by the Kustomization, not the
//! TenantIdentity: garbage collection removes a dependent only once its owner no longer exists,
//! and an owner whose finalizer still runs does exist, so the account outlives the Kustomization's
//! finalizer and goes after it. (Foreground deletion of the TenantIdentity is the exception: the
//! garbage collector then deletes the Kustomization in the foreground too, since it has a
//! dependent, and so may delete the account before Flux's finalizer looks it up; kubernetes
//! `pkg/controller/garbagecollector/garbagecollector.go`, `attemptToDeleteItem`.) No `blockOwnerDeletion` (setting it needs `update` on
//! `kustomizations/finalizers`), no controller flag (kustomize-controller does not manage it).
//! An account of that name that already exists (a platform team's) satisfies the check as it is
//! and is left alone.
//!
//! It carries our managed-by label but not the tenant label: that label marks the
//! TenantIdentity's own children, which prune and every listing of children rely on, and this
//! account is the Kustomization's.

use k8s_openapi::{
    api::core::v1::ServiceAccount, apimachinery::pkg::apis::meta::v1::OwnerReference,
};
use kube::{
    ResourceExt,
    api::{DynamicObject, ObjectMeta},
};
use tenant_identity_crd::{
    TenantIdentity,
    kinds::{ChildKind, FIELD_MANAGER, MANAGED_BY_LABEL},
};

use super::{host_service_account, kustomization};
use crate::plan::Plan;

/// The account kustomize-controller looks up when the plan's Kustomization is deleted; `None`
/// without `git.deploy`.
pub fn name(plan: &Plan) -> Option<String> {
    kustomization::deployer(plan).map(|d| d.service_account)
}

/// The account a TenantIdentity's Kustomization names, read leniently from its spec (no
/// validation), for mapping a ServiceAccount event to the tenants it concerns.
pub fn wanted(ti: &TenantIdentity) -> Option<String> {
    let deploy = ti.spec.git.as_ref()?.deploy.as_ref()?;
    Some(
        deploy
            .service_account_name
            .clone()
            .unwrap_or_else(|| kustomization::default_service_account(&ti.name_any())),
    )
}

/// Who else provides an account of that name, if anyone: then the operator never creates it
/// (the vcluster's Helm release or syncer would find theirs taken). Our own ObjectLevel
/// `<name>-git` child cannot be named: the CRD refuses it, since it is deleted with the
/// TenantIdentity, before kustomize-controller's finalizer looks for it.
pub fn provided_by(plan: &Plan, name: &str) -> Option<&'static str> {
    host_service_account::names(plan)
        .iter()
        .any(|n| n == name)
        .then_some("the vcluster (a host ServiceAccount its pods run as)")
}

/// The owner reference to the Kustomization as applied (`None` before it has a uid).
pub fn owner(kustomization: &DynamicObject) -> Option<OwnerReference> {
    let uid = kustomization.uid().filter(|u| !u.is_empty())?;
    Some(OwnerReference {
        api_version: ChildKind::Kustomization.api_resource().api_version,
        kind: ChildKind::Kustomization.kind_name().to_string(),
        name: kustomization.name_any(),
        uid,
        controller: None,
        block_owner_deletion: None,
    })
}

/// The ServiceAccount to create when none of that name exists, owned by `owner` (the
/// Kustomization; none offline, where it has no uid yet). `None` without `git.deploy`, or when
/// another party provides the account ([`provided_by`]).
pub fn build(plan: &Plan, owner: Option<&OwnerReference>) -> Option<ServiceAccount> {
    let name = name(plan)?;
    if provided_by(plan, &name).is_some() {
        return None;
    }
    Some(ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(plan.namespace.clone()),
            labels: Some([(MANAGED_BY_LABEL.to_string(), FIELD_MANAGER.to_string())].into()),
            owner_references: owner.map(|o| vec![o.clone()]),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Settings, resolve};
    use serde_json::json;

    fn ti(spec: serde_json::Value) -> TenantIdentity {
        serde_json::from_value(json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
            "metadata": {"name": "team-a", "namespace": "vc-team-a", "uid": "uid-1"},
            "spec": spec,
        }))
        .unwrap()
    }

    fn plan(spec: serde_json::Value) -> Plan {
        let ti = ti(spec);
        let settings = Settings {
            default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            require_namespace_grant: false,
        };
        resolve(&ti, &settings, "https://issuer.example/").unwrap()
    }

    fn spec(git: serde_json::Value) -> serde_json::Value {
        json!({
            "virtualCluster": {"name": "vc"},
            "azure": {"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
                "identity": {"azureServiceOperator": {"name": "uai"}}},
            "git": git,
        })
    }

    fn kustomization(uid: Option<&str>) -> DynamicObject {
        let mut k = DynamicObject::new("team-a", &ChildKind::Kustomization.api_resource())
            .within("vc-team-a");
        k.metadata.uid = uid.map(str::to_string);
        k
    }

    #[test]
    fn the_account_the_finalizer_looks_up_unless_someone_else_provides_it() {
        let url = "https://dev.azure.com/o/p/_git/r";
        // (git, account created, provided by)
        let cases = [
            (json!({"url": url}), None, None),
            (
                json!({"url": url, "deploy": {}}),
                Some("team-a-deploy"),
                None,
            ),
            (
                json!({"url": url, "deploy": {"serviceAccountName": "flux-applier"}}),
                Some("flux-applier"),
                None,
            ),
            // The vcluster's workload ServiceAccount: the Helm release's, never created by us.
            (
                json!({"url": url, "deploy": {"serviceAccountName": "vc-workload-vc"}}),
                None,
                Some("the vcluster"),
            ),
            // ControllerLevel: there is no `<name>-git`, so the name is free.
            (
                json!({"url": url, "auth": "ControllerLevel",
                    "deploy": {"serviceAccountName": "team-a-git"}}),
                Some("team-a-git"),
                None,
            ),
        ];
        let owner = owner(&kustomization(Some("ks-uid"))).unwrap();
        for (git, created, by) in cases {
            let plan = plan(spec(git.clone()));
            // What the watch mapping reads from the spec is the plan's account.
            assert_eq!(wanted(&ti(spec(git.clone()))), name(&plan), "{git}");
            let sa = build(&plan, Some(&owner));
            assert_eq!(
                sa.as_ref().map(|s| s.name_any()).as_deref(),
                created,
                "{git}"
            );
            let provider = name(&plan).and_then(|n| provided_by(&plan, &n));
            match by {
                Some(text) => assert!(provider.is_some_and(|p| p.contains(text)), "{git}"),
                None => assert_eq!(provider, None, "{git}"),
            }
            let Some(sa) = sa else { continue };
            assert_eq!(sa.namespace().as_deref(), Some("vc-team-a"));
            assert_eq!(
                sa.labels().get(MANAGED_BY_LABEL).map(String::as_str),
                Some(FIELD_MANAGER)
            );
            assert!(
                !sa.labels().contains_key(crate::names::TENANT_LABEL),
                "not a child of the TenantIdentity"
            );
            assert_eq!(sa.owner_references(), std::slice::from_ref(&owner));
            assert!(sa.annotations().is_empty(), "no workload identity: {sa:?}");
        }
    }

    #[test]
    fn owned_by_the_kustomization_without_blocking_or_controlling() {
        assert_eq!(owner(&kustomization(None)), None, "no uid yet");
        assert_eq!(owner(&kustomization(Some(""))), None);
        let o = owner(&kustomization(Some("ks-uid"))).unwrap();
        assert_eq!(
            (
                o.api_version.as_str(),
                o.kind.as_str(),
                o.name.as_str(),
                o.uid.as_str()
            ),
            (
                "kustomize.toolkit.fluxcd.io/v1",
                "Kustomization",
                "team-a",
                "ks-uid"
            )
        );
        // blockOwnerDeletion would need `update` on kustomizations/finalizers.
        assert_eq!((o.controller, o.block_owner_deletion), (None, None));
        // Offline (render) there is no Kustomization uid: no reference rather than a bad one.
        let sa = build(
            &plan(spec(
                json!({"url": "https://dev.azure.com/o/p/_git/r", "deploy": {}}),
            )),
            None,
        )
        .unwrap();
        assert!(sa.metadata.owner_references.is_none());
    }

    #[test]
    fn render_prints_the_account_with_how_it_is_written() {
        let input = r#"
apiVersion: identity.tenancy.dev/v1alpha1
kind: TenantIdentity
metadata: {name: team-a, namespace: vc-team-a}
spec:
  azure:
    clientId: 6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f
    identity: {azureServiceOperator: {name: uai}}
  git: {url: "https://dev.azure.com/o/p/_git/r", deploy: {}}
"#;
        let options = crate::render::RenderOptions {
            issuer: Some("https://issuer.example/".into()),
            tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            namespace: "default".into(),
        };
        let out = crate::render::render(input, &options).unwrap();
        let at = out
            .find("# Created on the host when missing")
            .unwrap_or_else(|| panic!("no deploy account in\n{out}"));
        let doc: serde_json::Value =
            serde_yaml::from_str(out[at..].split("\n---\n").next().unwrap_or_default()).unwrap();
        assert_eq!(doc["kind"], "ServiceAccount");
        assert_eq!(doc["metadata"]["name"], "team-a-deploy");
        assert!(doc["metadata"].get("ownerReferences").is_none());
        // Without git.deploy, none.
        let without = input.replace(", deploy: {}", "");
        assert!(
            !crate::render::render(&without, &options)
                .unwrap()
                .contains("team-a-deploy")
        );
    }
}
