//! Issue 11, item 2: Flux multi-tenancy lockdown. With `kubeConfig` set, kustomize-controller
//! impersonates `system:serviceaccount:<Kustomization namespace>:<serviceAccountName>` on the
//! target cluster, the vcluster, and under `--default-service-account` (the AKS Flux
//! extension's default) it always does, with `default` when the Kustomization names none. The
//! Kustomization must name an account, and the vcluster must bind that user to a role, or every
//! apply into the vcluster is forbidden.
//!
//! Here kustomize-controller under lockdown is played by computing the user it would impersonate
//! from the Kustomization the operator wrote, and the vcluster by reading the ClusterRoleBinding
//! the values fragment makes it create (`experimental.deploy.vcluster.manifests`). Before this
//! change the Kustomization named no account (the user was `...:default`) and nothing bound any:
//! the first assertion fails there.
//!
//! The account must also exist on the host, in the Kustomization's namespace, until Flux has
//! pruned: kustomize-controller's finalizer prunes only if it finds it there (played by
//! `simulate::kustomize_controller_finalizes`). Before the operator created it, every deletion
//! left what Flux had applied in the vcluster.

use k8s_openapi::api::{core::v1::ServiceAccount, rbac::v1::ClusterRoleBinding};
use kube::{
    ResourceExt,
    api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, GC_TIMEOUT, TestEnv,
    namespace::random_guid,
    objects::*,
    simulate::{self, Finalized},
    wait_for, wait_gone,
};

/// What kustomize-controller started with `--default-service-account=default` impersonates for
/// a Kustomization (Flux's impersonator: the Kustomization's `serviceAccountName`, else the
/// default, in the Kustomization's namespace).
fn impersonated_user(kustomization: &kube::api::DynamicObject) -> String {
    let ns = kustomization.metadata.namespace.clone().unwrap_or_default();
    let account = kustomization.data["spec"]["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .unwrap_or("default");
    format!("system:serviceaccount:{ns}:{account}")
}

/// The ClusterRoleBindings the vcluster creates from the values fragment.
fn bindings_in_the_vcluster(values: &Value) -> Vec<ClusterRoleBinding> {
    let Some(manifests) = values
        .pointer("/experimental/deploy/vcluster/manifests")
        .and_then(Value::as_str)
    else {
        return Vec::new();
    };
    serde_yaml::Deserializer::from_str(manifests)
        .filter_map(|doc| {
            let v: Value = serde::Deserialize::deserialize(doc).ok()?;
            (v["kind"] == "ClusterRoleBinding")
                .then(|| serde_json::from_value(v).ok())
                .flatten()
        })
        .collect()
}

/// The ClusterRoles the vcluster grants `user` (a ServiceAccount user name).
fn roles_of(user: &str, bindings: &[ClusterRoleBinding]) -> Vec<String> {
    bindings
        .iter()
        .filter(|b| {
            b.subjects.iter().flatten().any(|s| {
                s.kind == "ServiceAccount"
                    && format!(
                        "system:serviceaccount:{}:{}",
                        s.namespace.as_deref().unwrap_or_default(),
                        s.name
                    ) == user
            })
        })
        .map(|b| b.role_ref.name.clone())
        .collect()
}

/// Whether `sa` is owned by `kustomization` (its uid), and only by it.
fn owned_by(sa: &ServiceAccount, kustomization: &DynamicObject) -> bool {
    let owners = sa.owner_references();
    owners.len() == 1
        && owners[0].kind == "Kustomization"
        && owners[0].name == kustomization.name_any()
        && Some(&owners[0].uid) == kustomization.metadata.uid.as_ref()
}

/// Wait for the host ServiceAccount `name` the operator creates for kustomize-controller's
/// finalizer, owned by the Kustomization.
async fn host_deploy_account(
    client: &kube::Client,
    ns: &str,
    name: &str,
    kustomization: &DynamicObject,
) -> ServiceAccount {
    wait_for(
        &service_accounts(client, ns),
        name,
        "the deploy account on the host, owned by the Kustomization",
        DEFAULT_TIMEOUT,
        |sa| owned_by(sa, kustomization),
    )
    .await
    .unwrap()
}

async fn deployed(
    client: &kube::Client,
    ns: &str,
    tenant: &str,
    what: &str,
    check: impl Fn(&kube::api::DynamicObject) -> bool,
) -> (kube::api::DynamicObject, Value) {
    let ks = wait_for(
        &dynamic(client, ns, &kustomization()),
        tenant,
        what,
        DEFAULT_TIMEOUT,
        check,
    )
    .await
    .unwrap();
    let user = impersonated_user(&ks);
    let cm = wait_for(
        &config_maps(client, ns),
        &sync_rules_config_map(tenant),
        &format!("a binding of {user} in the values fragment"),
        DEFAULT_TIMEOUT,
        |cm| {
            sync_rules_values(cm)
                .is_ok_and(|v| !roles_of(&user, &bindings_in_the_vcluster(&v)).is_empty())
        },
    )
    .await
    .unwrap();
    (ks, sync_rules_values(&cm).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_impersonated_deploy_account_is_bound_inside_the_vcluster() {
    let env = TestEnv::start("flux-lockdown", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let spec = with_git(shared_spec(&random_guid(), "vc-l"), true);
    create_tenant(&client, &ns, "team-l", spec.clone())
        .await
        .unwrap();

    // Default: <name>-deploy, bound to cluster-admin.
    let (ks, values) = deployed(&client, &ns, "team-l", "the Kustomization", |_| true).await;
    assert_eq!(ks.data["spec"]["serviceAccountName"], "team-l-deploy");
    let user = impersonated_user(&ks);
    assert_eq!(user, format!("system:serviceaccount:{ns}:team-l-deploy"));
    host_deploy_account(&client, &ns, "team-l-deploy", &ks).await;
    let bindings = bindings_in_the_vcluster(&values);
    assert_eq!(
        roles_of(&user, &bindings),
        vec!["cluster-admin"],
        "{values}"
    );
    assert_eq!(bindings.len(), 1, "one binding, for that account only");
    assert_eq!(
        bindings[0].metadata.name.as_deref(),
        Some("tenant-identity-operator:team-l:deploy")
    );
    // Flux still reaches the vcluster through its Service.
    assert_eq!(
        values["exportKubeConfig"]["server"],
        json!(format!("https://vc-l.{ns}:443"))
    );

    // The tenant's own account and role.
    let tis = tenants(&client, &ns);
    let mut custom = spec.clone();
    custom["git"]["deploy"]["serviceAccountName"] = json!("flux-applier");
    custom["git"]["deploy"]["clusterRole"] = json!("edit");
    tis.patch(
        "team-l",
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1",
            "kind": "TenantIdentity",
            "metadata": {"name": "team-l"},
            "spec": custom,
        })),
    )
    .await
    .unwrap();
    let (ks, values) = deployed(
        &client,
        &ns,
        "team-l",
        "serviceAccountName flux-applier",
        |k| k.data["spec"]["serviceAccountName"] == "flux-applier",
    )
    .await;
    let user = impersonated_user(&ks);
    let bindings = bindings_in_the_vcluster(&values);
    assert_eq!(roles_of(&user, &bindings), vec!["edit"]);
    assert!(
        roles_of(
            &format!("system:serviceaccount:{ns}:team-l-deploy"),
            &bindings
        )
        .is_empty(),
        "the old account is no longer bound"
    );
    // On the host too, the account follows: the new one is created, the old one deleted.
    host_deploy_account(&client, &ns, "flux-applier", &ks).await;
    wait_gone(
        &service_accounts(&client, &ns),
        "team-l-deploy",
        DEFAULT_TIMEOUT,
    )
    .await
    .unwrap();
    // Deleted by hand, the account comes back well before any resync (120 s or more): the
    // ServiceAccount watch maps its events to the tenant whose Kustomization names it.
    let sas = service_accounts(&client, &ns);
    let before = sas.get("flux-applier").await.unwrap();
    sas.delete("flux-applier", &DeleteParams::default())
        .await
        .unwrap();
    let again = wait_for(
        &sas,
        "flux-applier",
        "the deploy account created again after a manual delete",
        DEFAULT_TIMEOUT,
        |sa| sa.metadata.uid != before.metadata.uid && owned_by(sa, &ks),
    )
    .await
    .unwrap();
    assert_ne!(again.metadata.uid, before.metadata.uid);

    // Removing git.deploy deletes the Kustomization; its finalizer still finds the account, so
    // Flux prunes what it applied, and then the account goes with the Kustomization.
    simulate::kustomize_controller_adds_finalizer(&client, &ns, "team-l")
        .await
        .unwrap();
    tis.patch(
        "team-l",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"git": {"deploy": null}}})),
    )
    .await
    .unwrap();
    let kustomizations = dynamic(&client, &ns, &kustomization());
    wait_for(
        &kustomizations,
        "team-l",
        "the Kustomization terminating",
        DEFAULT_TIMEOUT,
        |k| k.metadata.deletion_timestamp.is_some(),
    )
    .await
    .unwrap();
    assert_eq!(
        simulate::kustomize_controller_finalizes(&client, &ns, "team-l")
            .await
            .unwrap(),
        Finalized::Pruned {
            account: "flux-applier".into()
        }
    );
    wait_gone(&kustomizations, "team-l", GC_TIMEOUT)
        .await
        .unwrap();
    wait_gone(&service_accounts(&client, &ns), "flux-applier", GC_TIMEOUT)
        .await
        .unwrap();

    // Names the API server would refuse inside the vcluster are refused here, naming the field.
    for (field, value) in [
        ("clusterRole", ".."),
        ("clusterRole", "a/b"),
        ("clusterRole", "cluster admin"),
        ("serviceAccountName", "Flux_Applier"),
    ] {
        let mut bad = spec.clone();
        bad["git"]["deploy"][field] = json!(value);
        let err = create_tenant(&client, &ns, "bad-deploy", bad)
            .await
            .expect_err(&format!("{field}={value:?} must be rejected"));
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("spec.git.deploy.{field}")),
            "{field}={value:?}: {text}"
        );
    }

    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flux_finds_the_deploy_account_on_the_host_and_prunes_on_deletion() {
    let env = TestEnv::start("flux-prune", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let sas = service_accounts(&client, &ns);

    // A platform team's account of the name a tenant asks for: it satisfies kustomize-controller
    // as it is, so the operator leaves it alone (no conflict, no owner reference, no write).
    let foreign = sas
        .create(
            &PostParams::default(),
            &ServiceAccount {
                metadata: ObjectMeta {
                    name: Some("platform-deployer".into()),
                    labels: Some([("team".to_string(), "platform".to_string())].into()),
                    ..ObjectMeta::default()
                },
                ..ServiceAccount::default()
            },
        )
        .await
        .unwrap();
    let mut spec = with_git(shared_spec(&random_guid(), "vc-f"), true);
    spec["git"]["deploy"]["serviceAccountName"] = json!("platform-deployer");
    create_tenant(&client, &ns, "team-f", spec).await.unwrap();
    simulate::helm_workload_service_account(&client, &ns, "vc-f")
        .await
        .unwrap();
    let ti = simulate::converge(&client, &ns, "team-f", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    assert!(is_ready(&ti), "{:?}", ti.status);
    request_reconcile(&client, &ns, "team-f", "after-ready", DEFAULT_TIMEOUT)
        .await
        .unwrap();
    let now = sas.get("platform-deployer").await.unwrap();
    assert_eq!(
        now.resource_version(),
        foreign.resource_version(),
        "the platform's account was written: {now:?}"
    );
    assert!(now.owner_references().is_empty(), "{now:?}");

    // The default account: created on the host, owned by the Kustomization (so it outlives the
    // TenantIdentity until Flux has finalized), not by the TenantIdentity.
    create_tenant(
        &client,
        &ns,
        "team-p",
        with_git(shared_spec(&random_guid(), "vc-p"), true),
    )
    .await
    .unwrap();
    let kustomizations = dynamic(&client, &ns, &kustomization());
    let ks = wait_for(
        &kustomizations,
        "team-p",
        "the Kustomization",
        DEFAULT_TIMEOUT,
        |_| true,
    )
    .await
    .unwrap();
    let sa = host_deploy_account(&client, &ns, "team-p-deploy", &ks).await;
    let owner = &sa.owner_references()[0];
    assert_ne!(owner.controller, Some(true), "{owner:?}");
    assert_ne!(owner.block_owner_deletion, Some(true), "{owner:?}");
    assert_eq!(
        sa.labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("tenant-identity-operator")
    );
    simulate::kustomize_controller_adds_finalizer(&client, &ns, "team-p")
        .await
        .unwrap();

    // Deleting the TenantIdentity deletes the Kustomization (garbage collection); its finalizer
    // runs while it is terminating, and finds the account, so Flux prunes the vcluster.
    tenants(&client, &ns)
        .delete("team-p", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        &kustomizations,
        "team-p",
        "the Kustomization terminating",
        GC_TIMEOUT,
        |k| k.metadata.deletion_timestamp.is_some(),
    )
    .await
    .unwrap();
    assert_eq!(
        simulate::kustomize_controller_finalizes(&client, &ns, "team-p")
            .await
            .unwrap(),
        Finalized::Pruned {
            account: "team-p-deploy".into()
        },
        "kustomize-controller would leave everything it applied in the vcluster"
    );
    // Then the account goes with its owner.
    wait_gone(&kustomizations, "team-p", GC_TIMEOUT)
        .await
        .unwrap();
    wait_gone(&sas, "team-p-deploy", GC_TIMEOUT).await.unwrap();

    env.finish().await;
}
