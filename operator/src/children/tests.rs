use super::*;
use crate::{
    plan::{Settings, resolve},
    status::{CredentialState, PartState},
};
use kube::Resource;
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_crd::conditions::Status;

fn ti(spec: serde_json::Value) -> TenantIdentity {
    serde_json::from_value(json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": "vc-team-a", "uid": "uid-1"},
        "spec": spec,
    }))
    .unwrap()
}

fn build(spec: serde_json::Value) -> (Plan, Vec<Child>) {
    let t = ti(spec);
    let settings = Settings {
        default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        require_namespace_grant: false,
    };
    let plan = resolve(&t, &settings, "https://issuer.example/").unwrap();
    let owner = t.controller_owner_ref(&()).unwrap();
    let children = owned(&plan, &owner);
    (plan, children)
}

/// What the child table reports for ASO credentials.
fn credentials(plan: &Plan, objs: &[DynamicObject]) -> (PartState, Vec<(String, CredentialState)>) {
    match observe(ChildKind::FederatedCredential, plan, objs) {
        Some(Observation::Credentials(c)) => (c.part, c.states),
        other => panic!("not a credential observation: {other:?}"),
    }
}

/// What the child table reports for the GitRepository.
fn git(plan: &Plan, objs: &[DynamicObject]) -> (Option<PartState>, Option<(String, String)>) {
    match observe(ChildKind::GitRepository, plan, objs) {
        Some(Observation::GitSource(g)) => (Some(g.part), g.stalled),
        None => (None, None),
        other => panic!("not a git observation: {other:?}"),
    }
}

const CLIENT: &str = "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f";

fn kinds(children: &[Child]) -> Vec<(String, String)> {
    children
        .iter()
        .map(|c| (c.resource.kind.clone(), c.name()))
        .collect()
}

#[test]
fn shared_aso_children() {
    let (plan, children) = build(
        json!({"azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}}),
    );
    assert_eq!(
        kinds(&children),
        vec![
            ("ConfigMap".into(), "team-a-vcluster-identity".into()),
            (
                "FederatedIdentityCredential".into(),
                plan.subjects[0].credential_name.clone()
            ),
        ]
    );
    for c in &children {
        let meta = &c.object.metadata;
        assert_eq!(meta.labels.as_ref().unwrap()[names::TENANT_LABEL], "team-a");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("TenantIdentity", "uid-1", Some(true))
        );
    }
    let fic = &children[1].object.data["spec"];
    assert_eq!(fic["owner"], json!({"name": "uai"}));
    assert_eq!(fic["audiences"], json!(["api://AzureADTokenExchange"]));
    assert_eq!(fic["issuer"], "https://issuer.example/");
    assert_eq!(
        fic["subject"],
        "system:serviceaccount:vc-team-a:vc-workload-team-a"
    );
    let values: serde_json::Value = serde_yaml::from_str(
        children[0].object.data["data"]["values.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let wsa = &values["controlPlane"]["advanced"]["workloadServiceAccount"];
    assert_eq!(
        wsa["annotations"]["azure.workload.identity/client-id"],
        CLIENT
    );
    assert_eq!(wsa["name"], "vc-workload-team-a");
    assert!(
        values.get("exportKubeConfig").is_none(),
        "only with git.deploy"
    );

    let sas = host_service_account::annotations(&plan);
    assert_eq!(sas.len(), 1, "Shared mode: the one workload ServiceAccount");
    let sa = &sas[0];
    assert_eq!(sa.metadata.name.as_deref(), Some("vc-workload-team-a"));
    assert!(
        sa.metadata.owner_references.is_none(),
        "the host SA is Helm's, never ours"
    );
    assert_eq!(sa.metadata.annotations.as_ref().unwrap().len(), 2);
}

#[test]
fn per_service_account_with_arm_has_no_credential_objects() {
    let (plan, children) = build(json!({
        "virtualCluster": {"mode": "PerServiceAccount", "serviceAccounts": [{"namespace": "default", "name": "app"}]},
        "azure": {"clientId": CLIENT, "identity": {"managedIdentity": {
            "subscriptionId": "11111111-2222-4333-8444-555555555555", "resourceGroup": "rg", "name": "id-x"}}}
    }));
    assert_eq!(
        kinds(&children),
        vec![("ConfigMap".into(), "team-a-vcluster-identity".into())]
    );
    // The synced host ServiceAccount gets the two annotations (never an owner reference).
    let sas = host_service_account::annotations(&plan);
    assert_eq!(sas.len(), 1);
    assert_eq!(
        sas[0].metadata.name.as_deref(),
        Some("app-x-default-x-team-a")
    );
    assert!(sas[0].metadata.owner_references.is_none());
    assert_eq!(
        sas[0].metadata.annotations.as_ref().unwrap()[names::CLIENT_ID_ANNOTATION],
        CLIENT
    );
    assert_eq!(sas[0].metadata.annotations.as_ref().unwrap().len(), 2);
    let values: serde_json::Value = serde_yaml::from_str(
        children[0].object.data["data"]["values.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(values["sync"]["toHost"]["serviceAccounts"]["enabled"], true);
    assert_eq!(
        values["sync"]["toHost"]["pods"]["useSecretsForSATokens"],
        true
    );
}

#[test]
fn git_object_level_with_deploy() {
    let (_, children) = build(json!({
        "virtualCluster": {"name": "vc1"},
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"armId": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x"}}},
        "git": {"url": "https://dev.azure.com/o/p/_git/r", "ref": {"tag": "v1"}, "deploy": {"path": "./t"}}
    }));
    let k = kinds(&children);
    assert_eq!(k[0].0, "ConfigMap");
    assert_eq!(k[1], ("ServiceAccount".into(), "team-a-git".into()));
    assert_eq!(k[2].0, "FederatedIdentityCredential");
    assert_eq!(
        k[3].0, "FederatedIdentityCredential",
        "workload + flux subject"
    );
    assert_eq!(k[4], ("GitRepository".into(), "team-a".into()));
    assert_eq!(k[5], ("Kustomization".into(), "team-a".into()));

    let git_sa = &children[1].object.metadata.annotations.as_ref().unwrap();
    assert_eq!(git_sa.len(), 2, "Flux needs client-id and tenant-id");
    let repo = &children[4].object.data["spec"];
    assert_eq!(repo["provider"], "azure");
    assert_eq!(repo["serviceAccountName"], "team-a-git");
    assert_eq!(repo["ref"], json!({"tag": "v1"}));
    let ks = &children[5].object.data["spec"];
    assert_eq!(
        ks["kubeConfig"],
        json!({"secretRef": {"name": "vc-vc1", "key": "config"}})
    );
    assert_eq!(
        ks["sourceRef"],
        json!({"kind": "GitRepository", "name": "team-a"})
    );
    assert_eq!(ks["prune"], true);
    let values: serde_json::Value = serde_yaml::from_str(
        children[0].object.data["data"]["values.yaml"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        values["exportKubeConfig"]["server"],
        "https://vc1.vc-team-a:443"
    );
    assert!(
        children[3].object.data["spec"]["owner"]["armId"]
            .as_str()
            .unwrap()
            .ends_with("/userAssignedIdentities/x")
    );
}

#[test]
fn controller_level_git_has_no_flux_identity() {
    let (plan, children) = build(json!({
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
        "git": {"url": "https://dev.azure.com/o/p/_git/r", "auth": "ControllerLevel"}
    }));
    assert_eq!(plan.subjects.len(), 1);
    let k = kinds(&children);
    assert!(!k.iter().any(|(kind, _)| kind == "ServiceAccount"));
    let repo = children
        .iter()
        .find(|c| c.resource.kind == "GitRepository")
        .unwrap();
    assert!(repo.object.data["spec"].get("serviceAccountName").is_none());
    assert_eq!(repo.object.data["spec"]["provider"], "azure");
}

fn with_status(child: &Child, generation: i64, status: serde_json::Value) -> DynamicObject {
    let mut obj = child.object.clone();
    obj.metadata.generation = Some(generation);
    obj.data["status"] = status;
    obj
}

#[test]
fn aso_readiness_is_mirrored_per_credential() {
    let (plan, children) = build(json!({
        "virtualCluster": {"mode": "PerServiceAccount", "serviceAccounts": [
            {"namespace": "a", "name": "x"}, {"namespace": "b", "name": "y"}]},
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}
    }));
    let fics: Vec<&Child> = children
        .iter()
        .filter(|c| c.resource.kind == "FederatedIdentityCredential")
        .collect();
    let ready = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": 2}]});
    let failed = json!({"conditions": [{"type": "Ready", "status": "False", "severity": "Error",
        "reason": "BadRequest", "message": "issuer must be https", "observedGeneration": 2}]});
    let stale = json!({"conditions": [{"type": "Ready", "status": "True", "reason": "Succeeded", "observedGeneration": 1}]});

    let all_ready = [
        with_status(fics[0], 2, ready.clone()),
        with_status(fics[1], 2, ready.clone()),
    ];
    let (part, states) = credentials(&plan, &all_ready);
    assert_eq!(
        (part.status, part.reason.as_str()),
        (Status::True, "CredentialsReady")
    );
    assert!(states.iter().all(|(_, s)| *s == CredentialState::Ready));

    let one_failed = [
        with_status(fics[0], 2, ready.clone()),
        with_status(fics[1], 2, failed),
    ];
    let (part, states) = credentials(&plan, &one_failed);
    assert_eq!(
        (part.status, part.reason.as_str()),
        (Status::False, "CredentialsFailed")
    );
    assert!(
        part.message.contains("issuer must be https"),
        "{}",
        part.message
    );
    assert_eq!(
        states[1].1,
        CredentialState::Failed("issuer must be https".into())
    );

    // A Ready about an older generation says nothing about the current spec.
    let one_stale = [
        with_status(fics[0], 2, ready),
        with_status(fics[1], 2, stale),
    ];
    let (part, states) = credentials(&plan, &one_stale);
    assert_eq!(part.reason, "CredentialsPending");
    assert!(part.message.contains("1 of 2"), "{}", part.message);
    assert!(matches!(states[1].1, CredentialState::Pending(_)));

    let none: [DynamicObject; 0] = [];
    assert_eq!(credentials(&plan, &none).0.reason, "CredentialsPending");
}

#[test]
fn git_readiness_and_stall_are_mirrored_from_flux() {
    let spec = json!({
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
        "git": {"url": "https://dev.azure.com/o/p/_git/r"}
    });
    let (plan, children) = build(spec);
    let repo = children
        .iter()
        .find(|c| c.resource.kind == "GitRepository")
        .unwrap();

    let (part, stalled) = git(&plan, std::slice::from_ref(&repo.object));
    assert_eq!(
        part.unwrap().status,
        Status::Unknown,
        "no status from Flux yet"
    );
    assert!(stalled.is_none());

    let auth = with_status(
        repo,
        1,
        json!({"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "AuthenticationFailed", "message": "401 Unauthorized"}]}),
    );
    let (part, _) = git(&plan, &[auth]);
    let part = part.unwrap();
    assert_eq!(
        (part.status, part.reason.as_str(), part.message.as_str()),
        (Status::False, "AuthenticationFailed", "401 Unauthorized")
    );
    assert!(!part.terminal);

    let gate = with_status(
        repo,
        1,
        json!({"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "False", "reason": "FeatureGateDisabled", "message": "enable it"},
        {"type": "Stalled", "status": "True", "reason": "FeatureGateDisabled", "message": "enable it"}]}),
    );
    let (part, stalled) = git(&plan, &[gate]);
    assert!(part.unwrap().terminal);
    assert_eq!(
        stalled,
        Some(("FeatureGateDisabled".into(), "enable it".into()))
    );

    let old = with_status(
        repo,
        2,
        json!({"observedGeneration": 1, "conditions": [
        {"type": "Ready", "status": "True", "reason": "Succeeded", "message": "stored artifact"}]}),
    );
    let (part, _) = git(&plan, &[old]);
    assert_eq!(
        part.unwrap().status,
        Status::Unknown,
        "Ready about an older generation"
    );

    let (no_git, _) = build(
        json!({"azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}}),
    );
    assert_eq!(git(&no_git, &[]), (None, None));
}

/// The reconcile-policy annotation of every FederatedIdentityCredential child, and of every
/// other child (which must never carry it).
fn reconcile_policies(children: &[Child]) -> (Vec<Option<String>>, Vec<Option<String>>) {
    let policy = |c: &Child| {
        c.object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(federated_credential::RECONCILE_POLICY_ANNOTATION))
            .cloned()
    };
    let (fics, others): (Vec<&Child>, Vec<&Child>) = children
        .iter()
        .partition(|c| c.resource.kind == "FederatedIdentityCredential");
    (
        fics.into_iter().map(policy).collect(),
        others.into_iter().map(policy).collect(),
    )
}

#[test]
fn aso_credentials_detach_on_delete_under_retain_only() {
    let detach = Some("detach-on-delete".to_string());
    let per_sa = json!({"mode": "PerServiceAccount", "serviceAccounts": [
        {"namespace": "default", "name": "app"}, {"namespace": "batch", "name": "job"}]});
    let by_name = json!({"azureServiceOperator": {"name": "uai"}});
    let by_arm_id = json!({"azureServiceOperator": {"armId": "/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x"}});
    let git = json!({"url": "https://dev.azure.com/o/p/_git/r"});
    // (deletionPolicy, virtualCluster, identity, git, credential objects, expected annotation)
    let cases = [
        (None, json!({}), by_name.clone(), None, 1, None),
        (Some("Delete"), json!({}), by_name.clone(), None, 1, None),
        (
            Some("Retain"),
            json!({}),
            by_name.clone(),
            None,
            1,
            detach.clone(),
        ),
        (
            Some("Retain"),
            json!({}),
            by_arm_id.clone(),
            Some(git.clone()),
            2,
            detach.clone(),
        ),
        (
            Some("Delete"),
            json!({}),
            by_arm_id,
            Some(git.clone()),
            2,
            None,
        ),
        (
            Some("Retain"),
            per_sa.clone(),
            by_name.clone(),
            Some(git),
            3,
            detach.clone(),
        ),
        (Some("Delete"), per_sa, by_name, None, 2, None),
    ];
    for (policy, virtual_cluster, identity, git, count, expected) in cases {
        let mut spec = json!({"virtualCluster": virtual_cluster, "azure": {"clientId": CLIENT, "identity": identity}});
        if let Some(policy) = policy {
            spec["deletionPolicy"] = json!(policy);
        }
        if let Some(git) = git {
            spec["git"] = git;
        }
        let (_, children) = build(spec.clone());
        let (fics, others) = reconcile_policies(&children);
        assert_eq!(fics, vec![expected.clone(); count], "{spec}");
        assert!(others.iter().all(Option::is_none), "{spec}: {others:?}");
        if expected.is_none() {
            // Nothing is sent: server-side apply then drops an annotation we applied before.
            for c in children
                .iter()
                .filter(|c| c.resource.kind == "FederatedIdentityCredential")
            {
                assert_eq!(c.object.metadata.annotations, None, "{spec}");
            }
        }
    }
}

#[test]
fn arm_backend_has_no_reconcile_policy_to_carry() {
    let (_, children) = build(json!({
        "azure": {"clientId": CLIENT, "identity": {"managedIdentity": {
            "subscriptionId": "11111111-2222-4333-8444-555555555555", "resourceGroup": "rg", "name": "id-x"}}},
        "deletionPolicy": "Retain",
    }));
    let (fics, others) = reconcile_policies(&children);
    assert!(fics.is_empty(), "the ARM backend writes credentials itself");
    assert!(others.iter().all(Option::is_none));
}

// Host ServiceAccounts in PerServiceAccount mode, the Flux watch label, the deploy account, and
// the vcluster's HelmRelease (issue 11).

fn per_sa(sas: serde_json::Value) -> serde_json::Value {
    json!({
        "virtualCluster": {"name": "vc", "mode": "PerServiceAccount", "serviceAccounts": sas},
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}
    })
}

#[test]
fn per_service_account_host_accounts_are_the_synced_names() {
    // One short name and one vcluster hashes (an upstream vector).
    let long = "a".repeat(54);
    let spec = per_sa(json!([
        {"namespace": "default", "name": "app"},
        {"namespace": "ns", "name": long},
    ]));
    let (plan, _) = build(spec.clone());
    let names = host_service_account::names(&plan);
    assert_eq!(
        names,
        vec![
            "app-x-default-x-vc".to_string(),
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-b8d0c4da7c".to_string(),
        ],
        "subject order (virtual ServiceAccounts sorted by namespace, then name)"
    );
    // The lenient reading (other tenants, the watch) agrees with the plan.
    let mut wanted = host_service_account::wanted(&ti(spec));
    let mut sorted = names.clone();
    wanted.sort();
    sorted.sort();
    assert_eq!(wanted, sorted);
    assert_eq!(
        host_service_account::virtual_of(&plan, "app-x-default-x-vc"),
        Some(("default".into(), "app".into()))
    );
    assert_eq!(
        host_service_account::virtual_of(&plan, "vc-workload-vc"),
        None
    );
    let patches = host_service_account::annotations(&plan);
    assert_eq!(patches.len(), 2);
    for p in &patches {
        let a = p.metadata.annotations.as_ref().unwrap();
        assert_eq!(
            (a.len(), a[names::CLIENT_ID_ANNOTATION].as_str()),
            (2, CLIENT)
        );
        assert!(p.metadata.labels.is_none() && p.metadata.owner_references.is_none());
    }
    // Shared: the workload ServiceAccount, by default or as set.
    let shared = ti(
        json!({"virtualCluster": {"name": "vc", "workloadServiceAccount": "custom"}, "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}}),
    );
    assert_eq!(host_service_account::wanted(&shared), vec!["custom"]);
}

#[test]
fn sync_rules_config_map_is_watched_by_helm_controller() {
    for spec in [
        json!({"azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}}),
        per_sa(json!([{"namespace": "default", "name": "app"}])),
    ] {
        let (_, children) = build(spec);
        let cm = children
            .iter()
            .find(|c| c.kind == ChildKind::SyncRules)
            .unwrap();
        let labels = cm.object.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["reconcile.fluxcd.io/watch"], "Enabled");
        assert_eq!(labels[names::TENANT_LABEL], "team-a", "still ours");
        assert_eq!(labels["app.kubernetes.io/managed-by"], names::FIELD_MANAGER);
        let text = cm.object.data["data"]["values.yaml"].as_str().unwrap();
        assert!(
            text.contains(
                "valuesFrom: [{kind: ConfigMap, name: team-a-vcluster-identity, valuesKey: values.yaml}]"
            ),
            "{text}"
        );
    }
    // No other child carries it: helm-controller would watch them for nothing.
    let (_, children) = build(json!({
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
        "git": {"url": "https://dev.azure.com/o/p/_git/r", "deploy": {}}
    }));
    for c in children.iter().filter(|c| c.kind != ChildKind::SyncRules) {
        assert!(
            !c.object
                .metadata
                .labels
                .as_ref()
                .unwrap()
                .contains_key("reconcile.fluxcd.io/watch"),
            "{:?}",
            c.kind
        );
    }
}

fn values_of(children: &[Child]) -> serde_json::Value {
    let cm = children
        .iter()
        .find(|c| c.kind == ChildKind::SyncRules)
        .unwrap();
    serde_yaml::from_str(cm.object.data["data"]["values.yaml"].as_str().unwrap()).unwrap()
}

#[test]
fn deploy_account_is_impersonated_and_bound_in_the_vcluster() {
    // (deploy, expected account, expected ClusterRole)
    let cases = [
        (json!({}), "team-a-deploy", "cluster-admin"),
        (
            json!({"serviceAccountName": "flux-applier"}),
            "flux-applier",
            "cluster-admin",
        ),
        (
            json!({"clusterRole": "system:aggregate-to-edit"}),
            "team-a-deploy",
            "system:aggregate-to-edit",
        ),
        (
            // Odd but valid names stay data: quoting is serde_yaml's, not ours.
            json!({"serviceAccountName": "a.b", "clusterRole": "edit#1'\":{}"}),
            "a.b",
            "edit#1'\":{}",
        ),
    ];
    for (deploy, account, role) in cases {
        let (_, children) = build(json!({
            "virtualCluster": {"name": "vc1"},
            "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
            "git": {"url": "https://dev.azure.com/o/p/_git/r", "deploy": deploy},
        }));
        let ks = children
            .iter()
            .find(|c| c.kind == ChildKind::Kustomization)
            .unwrap();
        assert_eq!(
            ks.object.data["spec"]["serviceAccountName"], account,
            "{deploy}"
        );
        let values = values_of(&children);
        let manifests = values["experimental"]["deploy"]["vcluster"]["manifests"]
            .as_str()
            .unwrap_or_else(|| panic!("{deploy}: no manifests in {values}"));
        let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
            serde_yaml::from_str(manifests).unwrap_or_else(|e| panic!("{e}:\n{manifests}"));
        assert_eq!(
            binding.metadata.name.as_deref(),
            Some("tenant-identity-operator:team-a:deploy")
        );
        assert_eq!(
            (
                binding.role_ref.kind.as_str(),
                binding.role_ref.name.as_str()
            ),
            ("ClusterRole", role),
            "{deploy}"
        );
        let subjects = binding.subjects.unwrap();
        assert_eq!(subjects.len(), 1);
        // kustomize-controller impersonates system:serviceaccount:<Kustomization ns>:<account>.
        assert_eq!(
            (
                subjects[0].kind.as_str(),
                subjects[0].namespace.as_deref(),
                subjects[0].name.as_str()
            ),
            ("ServiceAccount", Some("vc-team-a"), account),
            "{deploy}"
        );
        let deployer = kustomization::deployer(&build(json!({
            "virtualCluster": {"name": "vc1"},
            "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
            "git": {"url": "https://dev.azure.com/o/p/_git/r", "deploy": deploy},
        }))
        .0)
        .unwrap();
        assert_eq!(
            deployer.user(),
            format!("system:serviceaccount:vc-team-a:{account}")
        );
    }
    // Without deploy there is nothing to bind, and no Kustomization.
    let (plan, children) = build(json!({
        "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
        "git": {"url": "https://dev.azure.com/o/p/_git/r"},
    }));
    assert!(kustomization::deployer(&plan).is_none());
    assert!(values_of(&children).get("experimental").is_none());
}

#[test]
fn deploy_account_and_role_are_validated() {
    let settings = Settings {
        default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        require_namespace_grant: false,
    };
    // (deploy, the field the refusal names)
    let cases = [
        (json!({"clusterRole": ".."}), "clusterRole"),
        (json!({"clusterRole": "."}), "clusterRole"),
        (json!({"clusterRole": "a/b"}), "clusterRole"),
        (json!({"clusterRole": "a%2F"}), "clusterRole"),
        (json!({"clusterRole": "cluster admin"}), "clusterRole"),
        (json!({"clusterRole": "edit\nkind: Secret"}), "clusterRole"),
        (json!({"clusterRole": ""}), "clusterRole"),
        (
            json!({"serviceAccountName": "Flux_Applier"}),
            "serviceAccountName",
        ),
        (json!({"serviceAccountName": ""}), "serviceAccountName"),
    ];
    for (deploy, field) in cases {
        let t = ti(json!({
            "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}},
            "git": {"url": "https://dev.azure.com/o/p/_git/r", "deploy": deploy},
        }));
        let err = resolve(&t, &settings, "https://issuer.example/").unwrap_err();
        assert_eq!(err.reason, "InvalidSpec", "{deploy}");
        assert!(err.message.contains(field), "{deploy}: {}", err.message);
    }
}

mod release {
    use super::*;
    use crate::children::vcluster_release::{
        self, HostServiceAccounts, Release, chart_version, host_sync, major_minor, overrides,
    };
    use tenant_identity_crd::kinds::ObservedKind;

    const ENTRY: &str = "{kind: ConfigMap, name: team-a-vcluster-identity, valuesKey: values.yaml}";

    fn referenced() -> serde_json::Value {
        json!([{"kind": "ConfigMap", "name": "team-a-vcluster-identity", "valuesKey": "values.yaml"}])
    }

    /// A HelmRelease `vc` of generation 2 with `spec` fields and `status`.
    fn hr(spec: serde_json::Value, status: serde_json::Value) -> DynamicObject {
        let resource = ObservedKind::VirtualClusterRelease.api_resource();
        let mut obj = DynamicObject::new("vc", &resource).within("vc-team-a");
        obj.metadata.generation = Some(2);
        let mut full = json!({"interval": "10m", "chart": {"spec": {"chart": "vcluster",
            "version": ">=0.21.0 <1.0.0", "sourceRef": {"kind": "HelmRepository", "name": "loft"}}}});
        for (k, v) in spec.as_object().unwrap() {
            full[k] = v.clone();
        }
        obj.data = json!({"spec": full, "status": status});
        obj
    }

    fn condition(type_: &str, status: &str, reason: &str, generation: i64) -> serde_json::Value {
        json!({"type": type_, "status": status, "reason": reason, "message": format!("{reason} message"),
            "observedGeneration": generation, "lastTransitionTime": "2026-01-01T00:00:00Z"})
    }

    fn ready(generation: i64, version: &str) -> serde_json::Value {
        json!({"observedGeneration": generation,
            "conditions": [condition("Ready", "True", "UpgradeSucceeded", generation)],
            "history": [{"chartName": "vcluster", "chartVersion": version}]})
    }

    fn all_annotated(plan: &Plan) -> HostServiceAccounts {
        HostServiceAccounts {
            annotated: host_service_account::names(plan),
            missing: Vec::new(),
        }
    }

    fn shared_plan(git_deploy: bool) -> Plan {
        let mut spec = json!({"virtualCluster": {"name": "vc"},
            "azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {"name": "uai"}}}});
        if git_deploy {
            spec["git"] = json!({"url": "https://dev.azure.com/o/p/_git/r", "deploy": {}});
        }
        build(spec).0
    }

    /// (plan, HelmRelease, status, reason, terminal, message parts)
    type Case<'a> = (&'a Plan, DynamicObject, Status, &'a str, bool, Vec<&'a str>);

    #[test]
    fn the_release_decides_host_sync() {
        let shared = shared_plan(false);
        let deploy = shared_plan(true);
        let per_sa_plan = build(per_sa(json!([{"namespace": "default", "name": "app"}]))).0;
        let ok = || ready(2, "0.24.1");
        let cases: Vec<Case> = vec![
            (
                &shared,
                hr(json!({"valuesFrom": referenced()}), ok()),
                Status::True,
                "HostSyncApplied",
                false,
                vec![
                    "HelmRelease vc-team-a/vc takes ConfigMap team-a-vcluster-identity",
                    "generation 2",
                    "chart 0.24.1",
                    "vc-workload-vc",
                ],
            ),
            (
                // valuesKey defaults to values.yaml.
                &shared,
                hr(
                    json!({"valuesFrom": [{"kind": "ConfigMap", "name": "team-a-vcluster-identity"}]}),
                    ok(),
                ),
                Status::True,
                "HostSyncApplied",
                false,
                vec![],
            ),
            (
                &shared,
                hr(json!({}), ok()),
                Status::False,
                "SyncRulesNotReferenced",
                true,
                vec!["does not take the sync rules", ENTRY, "spec.valuesFrom"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": [{"kind": "Secret", "name": "team-a-vcluster-identity"},
                    {"kind": "ConfigMap", "name": "other"}]}),
                    ok(),
                ),
                Status::False,
                "SyncRulesNotReferenced",
                true,
                vec![ENTRY],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": [{"kind": "ConfigMap", "name": "team-a-vcluster-identity", "valuesKey": "other.yaml"}]}),
                    ok(),
                ),
                Status::False,
                "SyncRulesNotReferenced",
                true,
                vec!["valuesKey \"other.yaml\"", ENTRY],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": [{"kind": "ConfigMap", "name": "team-a-vcluster-identity", "targetPath": "vcluster"}]}),
                    ok(),
                ),
                Status::False,
                "SyncRulesNotReferenced",
                true,
                vec!["targetPath \"vcluster\"", ENTRY],
            ),
            (
                // Flux has not seen generation 2 yet.
                &shared,
                hr(json!({"valuesFrom": referenced()}), ready(1, "0.24.1")),
                Status::False,
                "VirtualClusterUpgrading",
                false,
                vec!["not Ready for generation 2", "UpgradeSucceeded"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": referenced()}),
                    json!({"observedGeneration": 2, "conditions": [
                    condition("Ready", "Unknown", "Progressing", 2), condition("Reconciling", "True", "Progressing", 2)]}),
                ),
                Status::False,
                "VirtualClusterUpgrading",
                false,
                vec!["Progressing: Progressing message"],
            ),
            (
                &shared,
                hr(json!({"valuesFrom": referenced()}), json!({})),
                Status::False,
                "VirtualClusterUpgrading",
                false,
                vec!["Flux is installing or upgrading HelmRelease vc-team-a/vc"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": referenced()}),
                    json!({"observedGeneration": 2, "conditions": [
                    condition("Ready", "False", "UpgradeFailed", 2), condition("Reconciling", "True", "ProgressingWithRetry", 2)]}),
                ),
                Status::False,
                "VirtualClusterReleaseFailed",
                false,
                vec!["is not Ready: UpgradeFailed: UpgradeFailed message"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": referenced()}),
                    json!({"observedGeneration": 2, "conditions": [
                    condition("Ready", "False", "UpgradeFailed", 2), condition("Stalled", "True", "RetriesExceeded", 2)]}),
                ),
                Status::False,
                "VirtualClusterReleaseFailed",
                true,
                vec!["Flux stopped retrying (RetriesExceeded"],
            ),
            (
                &shared,
                hr(json!({"valuesFrom": referenced()}), ready(2, "0.20.4")),
                Status::False,
                "VirtualClusterUnsupported",
                true,
                vec![
                    "chart 0.20.4",
                    "azure.workload.identity/use",
                    "0.21 or later",
                ],
            ),
            (
                // Nothing deployed yet, but the spec pins a version below 0.21.
                &shared,
                hr(
                    json!({"valuesFrom": referenced(), "chart": {"spec": {"chart": "vcluster", "version": "0.20.x",
                    "sourceRef": {"kind": "HelmRepository", "name": "loft"}}}}),
                    json!({}),
                ),
                Status::False,
                "VirtualClusterUnsupported",
                true,
                vec!["chart 0.20.x"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": referenced(), "values": {"sync": {"toHost": {"namespaces": {"enabled": true}}}}}),
                    ok(),
                ),
                Status::False,
                "VirtualClusterUnsupported",
                true,
                vec!["sync.toHost.namespaces.enabled", "single-namespace"],
            ),
            (
                &shared,
                hr(
                    json!({"valuesFrom": referenced(), "targetNamespace": "elsewhere"}),
                    ok(),
                ),
                Status::False,
                "VirtualClusterUnsupported",
                true,
                vec!["into namespace elsewhere (spec.targetNamespace)"],
            ),
            (
                // The TenantIdentity's own namespace as target is what it is anyway.
                &shared,
                hr(
                    json!({"valuesFrom": referenced(), "targetNamespace": "vc-team-a"}),
                    ok(),
                ),
                Status::True,
                "HostSyncApplied",
                false,
                vec![],
            ),
            (
                // An OCIRepository chart reports `<version>+<digest>`.
                &shared,
                hr(
                    json!({"valuesFrom": referenced()}),
                    json!({"observedGeneration": 2,
                    "conditions": [condition("Ready", "True", "UpgradeSucceeded", 2)],
                    "lastAttemptedRevision": "0.20.1+0123456789ab"}),
                ),
                Status::False,
                "VirtualClusterUnsupported",
                true,
                vec!["chart 0.20.1+0123456789ab"],
            ),
            (
                // Inline values win over valuesFrom.
                &per_sa_plan,
                hr(
                    json!({"valuesFrom": referenced(), "values": {"sync": {"toHost": {"serviceAccounts": {"enabled": false}}}}}),
                    ok(),
                ),
                Status::False,
                "SyncRulesOverridden",
                true,
                vec![
                    "sets sync.toHost.serviceAccounts.enabled in its spec.values",
                    "remove it",
                ],
            ),
            (
                &deploy,
                hr(
                    json!({"valuesFrom": referenced(), "values": {"experimental": {"deploy": {"vcluster": {"manifests": "kind: Namespace"}}}}}),
                    ok(),
                ),
                Status::False,
                "SyncRulesOverridden",
                true,
                vec![
                    "experimental.deploy.vcluster.manifests",
                    "manifestsTemplate",
                ],
            ),
            (
                // The same values inline, or other keys of the same maps, are no override.
                &shared,
                hr(
                    json!({"valuesFrom": referenced(), "values": {"controlPlane": {"advanced": {"workloadServiceAccount": {
                    "enabled": true, "annotations": {"example.com/team": "a"}}}}, "sync": {"fromHost": {"nodes": {"enabled": false}}}}}),
                    ok(),
                ),
                Status::True,
                "HostSyncApplied",
                false,
                vec![],
            ),
        ];
        for (plan, release, status, reason, terminal, parts) in cases {
            let part = host_sync(plan, Release::Found(&release), &all_annotated(plan));
            let case = format!("{reason} for {}", release.data);
            assert_eq!(
                (part.status, part.reason.as_str()),
                (status, reason),
                "{case}: {}",
                part.message
            );
            assert_eq!(part.terminal, terminal, "{case}");
            for p in parts {
                assert!(
                    part.message.contains(p),
                    "{case}: {p:?} in {}",
                    part.message
                );
            }
        }
    }

    #[test]
    fn without_a_release_it_says_what_to_verify_by_hand() {
        let plan = shared_plan(false);
        let part = host_sync(&plan, Release::Absent, &all_annotated(&plan));
        assert_eq!(
            (part.status, part.reason.as_str(), part.terminal),
            (Status::True, "SyncRulesUnverified", false)
        );
        for p in [
            "no Flux HelmRelease vc-team-a/vc",
            "verify by hand",
            "helm get values vc -n vc-team-a",
            "ConfigMap team-a-vcluster-identity key values.yaml",
            "0.21 or later",
            "sync.toHost.namespaces.enabled",
            "vc-workload-vc",
        ] {
            assert!(part.message.contains(p), "{p:?} in {}", part.message);
        }
        let part = host_sync(
            &plan,
            Release::Unreadable("forbidden"),
            &all_annotated(&plan),
        );
        assert_eq!(
            (part.status, part.reason.as_str()),
            (Status::True, "SyncRulesUnverified")
        );
        assert!(
            part.message.contains("rbac.flux") && part.message.contains("forbidden"),
            "{}",
            part.message
        );
    }

    #[test]
    fn missing_host_accounts_are_listed_with_the_command_that_creates_them() {
        let plan = build(per_sa(json!([
            {"namespace": "default", "name": "app"},
            {"namespace": "batch", "name": "job"},
        ])))
        .0;
        let accounts = HostServiceAccounts {
            annotated: vec!["app-x-default-x-vc".into()],
            missing: vec!["job-x-batch-x-vc".into()],
        };
        for release in [hr(json!({"valuesFrom": referenced()}), ready(2, "0.24.1"))] {
            for found in [Release::Absent, Release::Found(&release)] {
                let part = host_sync(&plan, found, &accounts);
                assert_eq!(
                    (part.status, part.reason.as_str(), part.terminal),
                    (Status::False, "ServiceAccountsNotSynced", false)
                );
                for p in [
                    "1 of 2 ServiceAccount(s) not synced",
                    "batch/job (host job-x-batch-x-vc)",
                    "vcluster connect vc -n vc-team-a -- kubectl create serviceaccount job -n batch",
                    "sync.toHost.serviceAccounts.enabled",
                    "annotations applied to app-x-default-x-vc",
                ] {
                    assert!(part.message.contains(p), "{p:?} in {}", part.message);
                }
            }
            // The release explains first: while Flux rolls it, that is the reason.
            let rolling = hr(json!({"valuesFrom": referenced()}), ready(1, "0.24.1"));
            let part = host_sync(&plan, Release::Found(&rolling), &accounts);
            assert_eq!(part.reason, "VirtualClusterUpgrading");
        }
        // Shared: the workload ServiceAccount missing is VirtualClusterNotFound, as before.
        let shared = shared_plan(false);
        let none = HostServiceAccounts {
            annotated: vec![],
            missing: vec!["vc-workload-vc".into()],
        };
        let part = host_sync(&shared, Release::Absent, &none);
        assert_eq!(
            (part.status, part.reason.as_str()),
            (Status::False, "VirtualClusterNotFound")
        );
        assert!(
            part.message
                .contains("vc-team-a/vc-workload-vc does not exist"),
            "{}",
            part.message
        );
    }

    #[test]
    fn chart_versions_and_overrides() {
        assert_eq!(major_minor("0.21.0"), Some((0, 21)));
        assert_eq!(major_minor("v0.20.3"), Some((0, 20)));
        assert_eq!(major_minor("0.22.0-beta.1+abc"), Some((0, 22)));
        assert_eq!(major_minor("0.20.x"), Some((0, 20)));
        assert_eq!(major_minor("1"), None);
        assert_eq!(major_minor("latest"), None);
        assert!(major_minor("0.9.1").unwrap() < vcluster_release::MIN_CHART);
        assert!(major_minor("1.0.0").unwrap() >= vcluster_release::MIN_CHART);

        let with = |status: serde_json::Value, version: &str| {
            let mut o = hr(json!({}), status);
            o.data["spec"]["chart"]["spec"]["version"] = json!(version);
            chart_version(&o)
        };
        assert_eq!(
            with(ready(2, "0.23.0"), "0.20.0").as_deref(),
            Some("0.23.0"),
            "deployed wins"
        );
        assert_eq!(
            with(json!({"lastAttemptedRevision": "0.22.1"}), "*").as_deref(),
            Some("0.22.1")
        );
        assert_eq!(with(json!({}), "0.21.2").as_deref(), Some("0.21.2"));
        assert_eq!(
            with(json!({}), ">=0.20.0 <1.0.0"),
            None,
            "a range says nothing"
        );
        assert_eq!(with(json!({}), "*"), None);

        let ours = json!({"a": {"b": 1, "c": {"d": "x"}}, "e": "s"});
        assert!(overrides(&ours, &serde_json::Value::Null, "").is_empty());
        assert!(overrides(&ours, &json!({"a": {"b": 1}, "z": 2}), "").is_empty());
        assert_eq!(overrides(&ours, &json!({"a": {"b": 2}}), ""), vec!["a.b"]);
        assert_eq!(
            overrides(&ours, &json!({"a": {"c": null}}), ""),
            vec!["a.c"]
        );
        assert_eq!(
            overrides(&ours, &json!({"a": "flat", "e": "t"}), ""),
            vec!["a", "e"]
        );
    }
}

#[test]
fn service_account_events_concern_the_tenants_that_use_those_accounts() {
    let url = "https://dev.azure.com/o/p/_git/r";
    let azure = json!({"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
        "identity": {"azureServiceOperator": {"name": "id"}}});
    let shared = ti(json!({"azure": azure, "virtualCluster": {"name": "vc"},
        "git": {"url": url, "deploy": {"serviceAccountName": "flux-applier"}}}));
    // (account, concerns the tenant)
    for (name, concerns) in [
        ("vc-workload-vc", true), // the vcluster's workload account (Shared)
        ("team-a-git", true),     // our Flux source account
        ("flux-applier", true),   // the deploy account the Kustomization names
        ("team-a-deploy", false), // the default name, not the one named
        ("someone-else", false),
    ] {
        assert_eq!(service_account_concerns(&shared, name), concerns, "{name}");
    }
    let default_deploy = ti(json!({"azure": azure, "virtualCluster": {"name": "vc"},
        "git": {"url": url, "deploy": {}}}));
    assert!(service_account_concerns(&default_deploy, "team-a-deploy"));
    let no_deploy = ti(json!({"azure": azure, "virtualCluster": {"name": "vc"},
        "git": {"url": url}}));
    assert!(!service_account_concerns(&no_deploy, "team-a-deploy"));
}
