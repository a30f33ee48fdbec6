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
