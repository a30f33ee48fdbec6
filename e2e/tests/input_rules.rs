//! Input the API server must refuse because Azure, Flux or the security model would not accept
//! it: git URLs that are not Azure DevOps (whatever the auth mode) or carry credentials,
//! resource group names Azure refuses (`.`, `..`, a trailing period), a git interval longer than
//! the CRD allows. Each is refused at `kubectl apply` time (422 naming the field), so the
//! operator never sees it; and a resource group name Azure does accept, with a period,
//! parentheses and a non-ASCII letter, reaches exactly that resource group in ARM.

use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};
use tenant_identity_e2e::{
    Cluster, DEFAULT_TIMEOUT, TestEnv,
    arm::{self, SUBSCRIPTION_ID},
    cluster::workspace_root,
    manifests,
    namespace::random_guid,
    objects::*,
    wait_for,
};

/// The examples this file covers, and the field each is refused on.
const EXAMPLES: &[(&str, &str)] = &[
    ("non-azure-devops-url-controller-level.yaml", "spec.git.url"),
    ("credentials-in-url.yaml", "spec.git.url"),
    (
        "dot-dot-resource-group.yaml",
        "spec.azure.identity.managedIdentity.resourceGroup",
    ),
    (
        "trailing-dot-resource-group.yaml",
        "spec.azure.identity.managedIdentity.resourceGroup",
    ),
    ("bad-interval.yaml", "spec.git.interval"),
];

/// A 422 Invalid whose message names `field` (the API server's `<field>: <detail>`) and
/// contains `why`; else what was wrong.
fn refusal_problem(
    outcome: Result<impl std::fmt::Debug, kube::Error>,
    field: &str,
    why: &str,
) -> Option<String> {
    match outcome {
        Ok(created) => Some(format!("accepted by the API server: {created:?}")),
        Err(kube::Error::Api(status)) if status.code == 422 && status.reason == "Invalid" => {
            if !status.message.contains(&format!("{field}:")) {
                Some(format!("message does not name {field}: {}", status.message))
            } else if !status.message.contains(why) {
                Some(format!("message does not say {why:?}: {}", status.message))
            } else {
                None
            }
        }
        Err(kube::Error::Api(status)) => Some(format!(
            "expected 422 Invalid, got {} {}: {}",
            status.code, status.reason, status.message
        )),
        Err(e) => Some(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_new_invalid_examples_are_rejected_at_apply_time() {
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("input-examples").await.unwrap();
    let client = cluster.client();
    let dir = workspace_root().join("examples/invalid");
    let mut failures = Vec::new();
    for (file, field) in EXAMPLES {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        for doc in manifests::documents(&text).unwrap() {
            let name = doc["metadata"]["name"].as_str().unwrap().to_string();
            let outcome = manifests::create(&client, doc, "kubectl", Some(ns.name()))
                .await
                .unwrap();
            if let Some(problem) = refusal_problem(outcome, field, "") {
                failures.push(format!("{file}: {problem}"));
            }
            if tenants(&client, ns.name())
                .get_opt(&name)
                .await
                .unwrap()
                .is_some()
            {
                failures.push(format!("{file}: {name} exists after rejection"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
    cluster.shutdown().await;
}

fn aso_spec() -> Value {
    shared_spec(&random_guid(), "vc-rules")
}

fn with_git_source(url: &str, auth: &str, interval: &str) -> Value {
    let mut spec = aso_spec();
    spec["git"] = json!({"url": url, "auth": auth, "interval": interval});
    spec
}

fn with_identity(identity: Value) -> Value {
    let mut spec = aso_spec();
    spec["azure"]["identity"] = identity;
    spec
}

fn in_resource_group(resource_group: &str) -> Value {
    with_identity(json!({"managedIdentity": {
        "subscriptionId": SUBSCRIPTION_ID,
        "resourceGroup": resource_group,
        "name": "id-rules",
    }}))
}

fn arm_id_in(resource_group: &str) -> Value {
    with_identity(json!({"azureServiceOperator": {"armId": format!(
        "/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{resource_group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-rules"
    )}}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_urls_and_names_azure_refuses_are_rejected_at_apply_time() {
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("input-rules").await.unwrap();
    let client = cluster.client();
    let url = "spec.git.url";
    let group = "spec.azure.identity.managedIdentity.resourceGroup";
    let arm_id = "spec.azure.identity.azureServiceOperator.armId";
    let not_devops = "must be an Azure DevOps URL";
    let credentials = "must not carry credentials";
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "a foreign host with ControllerLevel",
            with_git_source("https://evil.example.com/repo", "ControllerLevel", "5m"),
            url,
            not_devops,
        ),
        (
            "a look-alike host",
            with_git_source(
                "https://dev.azure.com.evil.example/o/p/_git/r",
                "ControllerLevel",
                "5m",
            ),
            url,
            not_devops,
        ),
        (
            "a personal access token",
            with_git_source(
                "https://user:pat@dev.azure.com/o/p/_git/r",
                "ControllerLevel",
                "5m",
            ),
            url,
            credentials,
        ),
        (
            "the user name of Azure DevOps' clone dialog",
            with_git_source(
                "https://contoso@dev.azure.com/contoso/p/_git/r",
                "ObjectLevel",
                "5m",
            ),
            url,
            credentials,
        ),
        (
            "an interval longer than 32 characters",
            with_git_source(
                "https://dev.azure.com/o/p/_git/r",
                "ObjectLevel",
                &"1m".repeat(17),
            ),
            "spec.git.interval",
            "",
        ),
        ("resource group ..", in_resource_group(".."), group, ""),
        ("resource group .", in_resource_group("."), group, ""),
        (
            "a resource group ending in a period",
            in_resource_group("rg-tenants."),
            group,
            "",
        ),
        (
            "a resource group with a slash",
            in_resource_group("rg/x"),
            group,
            "",
        ),
        ("armId with resource group ..", arm_id_in(".."), arm_id, ""),
        (
            "armId with a resource group ending in a period",
            arm_id_in("rg-tenants."),
            arm_id,
            "",
        ),
    ];
    let api = tenants(&client, ns.name());
    let mut failures = Vec::new();
    for (i, (what, spec, field, why)) in cases.into_iter().enumerate() {
        let name = format!("bad-{i}");
        let outcome = create_tenant(&client, ns.name(), &name, spec).await;
        let outcome = match outcome {
            Ok(ti) => Ok(ti),
            Err(e) => match e.downcast::<kube::Error>() {
                Ok(e) => Err(e),
                Err(e) => {
                    failures.push(format!("{what}: {e:#}"));
                    continue;
                }
            },
        };
        if let Some(problem) = refusal_problem(outcome.map(|_| ()), field, why) {
            failures.push(format!("{what}: {problem}"));
        }
        if api.get_opt(&name).await.unwrap().is_some() {
            failures.push(format!("{what}: {name} exists after rejection"));
        }
    }

    // Credentials on an Azure DevOps host are refused for the credentials alone: the message
    // does not also claim the host is wrong.
    let pat = with_git_source(
        "https://user:pat@dev.azure.com/o/p/_git/r",
        "ObjectLevel",
        "5m",
    );
    match create_tenant(&client, ns.name(), "pat", pat)
        .await
        .map_err(|e| e.downcast::<kube::Error>())
    {
        Err(Ok(kube::Error::Api(status))) => assert!(
            status.message.contains(credentials) && !status.message.contains(not_devops),
            "{}",
            status.message
        ),
        other => panic!("a PAT in the URL: {other:?}"),
    }

    // Updates are held to the same rules: a valid tenant cannot be switched to a foreign host.
    create_tenant(
        &client,
        ns.name(),
        "valid",
        with_git_source(GIT_URL, "ControllerLevel", "5m"),
    )
    .await
    .unwrap();
    let patched = api
        .patch(
            "valid",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"git": {"url": "https://evil.example.com/repo"}}})),
        )
        .await;
    if let Some(problem) = refusal_problem(patched.map(|_| ()), url, not_devops) {
        failures.push(format!("update to a foreign host: {problem}"));
    }
    let stored = api.get("valid").await.unwrap();
    assert_eq!(
        stored.spec.git.map(|g| g.url).as_deref(),
        Some(GIT_URL),
        "the stored spec is unchanged"
    );

    assert!(failures.is_empty(), "{}", failures.join("\n"));
    ns.cleanup().await;
    cluster.shutdown().await;
}

/// Azure accepts periods inside a resource group name, parentheses and Unicode letters; each
/// value is one percent-encoded path segment, so the credential lands in exactly that resource
/// group and not in a look-alike one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusual_valid_resource_group_reaches_exactly_that_identity() {
    let env = TestEnv::start_with_arm("input-arm", &[]).await.unwrap();
    let (client, ns) = (env.client.clone(), env.ns().to_string());
    let fake = env.arm().unwrap();
    let issuer = env.cluster.discovered_issuer().await.unwrap();
    let identity = fake.create_identity(SUBSCRIPTION_ID, ".rg.tenants(é)", "id-rules");
    // Where a path that dropped, decoded or shortened the resource group could land.
    let decoys = [
        fake.create_identity(SUBSCRIPTION_ID, "rg.tenants", "id-rules"),
        fake.create_identity(SUBSCRIPTION_ID, "rg", "id-rules"),
    ];
    let client_id = fake.client_id(&identity).unwrap();
    create_tenant(
        &client,
        &ns,
        "team-rules",
        arm::shared_spec(&client_id, "vc-rules", &identity),
    )
    .await
    .unwrap();

    let ti = wait_for(
        &tenants(&client, &ns),
        "team-rules",
        "FederatedCredentialsReady=True",
        DEFAULT_TIMEOUT,
        |t| has_condition(t, "FederatedCredentialsReady", "True", None),
    )
    .await
    .unwrap();
    let want = subject(&ns, "vc-workload-vc-rules");
    let expected = arm::expected_credentials(&ti, &issuer, std::slice::from_ref(&want)).unwrap();
    assert_eq!(
        arm::sorted(arm::credentials(fake, &identity).unwrap()),
        expected
    );
    for decoy in &decoys {
        assert!(
            arm::credentials(fake, decoy).unwrap().is_empty(),
            "nothing written to {}",
            decoy.arm_id()
        );
    }
    env.finish().await;
}
