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

use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tenant_identity_e2e::{DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, wait_for};

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
