use super::*;
use serde_json::json;

const CLIENT: &str = "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f";
const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const ISSUER: &str = "https://oidc.prod-aks.azure.com/abc/";

pub(crate) fn ti(spec: serde_json::Value) -> TenantIdentity {
    serde_json::from_value(json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1",
        "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": "vc-team-a", "uid": "uid-1"},
        "spec": spec,
    }))
    .expect("test spec deserializes")
}

fn aso() -> serde_json::Value {
    json!({"azureServiceOperator": {"name": "team-a-identity"}})
}

fn settings() -> Settings {
    Settings {
        default_tenant_id: Some(TENANT.into()),
        require_namespace_grant: false,
    }
}

#[test]
fn shared_mode_defaults() {
    let t = ti(json!({"azure": {"clientId": CLIENT, "identity": aso()}}));
    let plan = resolve(&t, &settings(), ISSUER).unwrap();
    assert_eq!(
        plan.vcluster, "team-a",
        "vcluster name defaults to metadata.name"
    );
    assert_eq!(plan.tenant_id, TENANT, "tenant from the operator flag");
    assert_eq!(plan.audience, "api://AzureADTokenExchange");
    assert_eq!(
        plan.workload_service_account.as_deref(),
        Some("vc-workload-team-a")
    );
    assert_eq!(
        plan.issuer, ISSUER,
        "issuer kept byte for byte, trailing slash included"
    );
    assert_eq!(plan.subjects.len(), 1);
    assert_eq!(
        plan.subjects[0].subject,
        "system:serviceaccount:vc-team-a:vc-workload-team-a"
    );
    assert_eq!(plan.host_service_accounts(), vec!["vc-workload-team-a"]);
}

#[test]
fn shared_mode_custom_workload_sa_and_vcluster() {
    let t = ti(json!({
        "virtualCluster": {"name": "vc1", "workloadServiceAccount": "custom-sa"},
        "azure": {"clientId": CLIENT, "tenantId": "00000000-0000-0000-0000-000000000001", "identity": aso()}
    }));
    let plan = resolve(&t, &settings(), ISSUER).unwrap();
    assert_eq!(plan.vcluster, "vc1");
    assert_eq!(
        plan.tenant_id, "00000000-0000-0000-0000-000000000001",
        "spec wins over flag"
    );
    assert_eq!(
        plan.subjects[0].subject,
        "system:serviceaccount:vc-team-a:custom-sa"
    );
}

#[test]
fn per_service_account_subjects_follow_vcluster_naming_and_are_sorted() {
    let t = ti(json!({
        "virtualCluster": {"name": "vc1", "mode": "PerServiceAccount", "serviceAccounts": [
            {"namespace": "payments", "name": "app-sa"},
            {"namespace": "default", "name": "app"},
        ]},
        "azure": {"clientId": CLIENT, "identity": aso()}
    }));
    let plan = resolve(&t, &settings(), ISSUER).unwrap();
    let subjects: Vec<_> = plan.subjects.iter().map(|s| s.subject.as_str()).collect();
    assert_eq!(
        subjects,
        vec![
            "system:serviceaccount:vc-team-a:app-x-default-x-vc1",
            "system:serviceaccount:vc-team-a:app-sa-x-payments-x-vc1",
        ]
    );
    assert_eq!(plan.workload_service_account, None);
}

#[test]
fn flux_subject_only_for_object_level() {
    let git = |auth: &str| {
        ti(json!({
            "azure": {"clientId": CLIENT, "identity": aso()},
            "git": {"url": "https://dev.azure.com/o/p/_git/r", "auth": auth}
        }))
    };
    let plan = resolve(&git("ObjectLevel"), &settings(), ISSUER).unwrap();
    assert_eq!(plan.subjects.len(), 2);
    assert_eq!(plan.subjects[1].kind, SubjectKind::FluxSource);
    assert_eq!(
        plan.subjects[1].subject,
        "system:serviceaccount:vc-team-a:team-a-git"
    );
    let plan = resolve(&git("ControllerLevel"), &settings(), ISSUER).unwrap();
    assert_eq!(
        plan.subjects.len(),
        1,
        "ControllerLevel uses Flux's own identity"
    );
}

#[test]
fn missing_tenant_is_its_own_reason() {
    let t = ti(json!({"azure": {"clientId": CLIENT, "identity": aso()}}));
    let err = resolve(&t, &Settings::default(), ISSUER).unwrap_err();
    assert_eq!(err.reason, "TenantIdMissing");
    assert!(err.message.contains("--azure-tenant-id"));
}

#[test]
fn invalid_specs_are_refused_with_the_field() {
    let cases = [
        (
            json!({"azure": {"clientId": "nope", "identity": aso()}}),
            "spec.azure.clientId",
        ),
        (
            json!({"azure": {"clientId": CLIENT, "issuer": "http://x/", "identity": aso()}}),
            "spec.azure.issuer",
        ),
        (
            json!({"azure": {"clientId": CLIENT, "identity": {}}}),
            "managedIdentity",
        ),
        (
            json!({"azure": {"clientId": CLIENT, "identity": {"azureServiceOperator": {}}}}),
            "armId",
        ),
        (
            json!({"virtualCluster": {"mode": "PerServiceAccount"}, "azure": {"clientId": CLIENT, "identity": aso()}}),
            "serviceAccounts",
        ),
        (
            json!({"virtualCluster": {"serviceAccounts": [{"namespace": "a", "name": "b"}]}, "azure": {"clientId": CLIENT, "identity": aso()}}),
            "serviceAccounts",
        ),
        (
            json!({"azure": {"clientId": CLIENT, "identity": aso()}, "git": {"url": "https://github.com/a/b"}}),
            "Azure DevOps",
        ),
        (
            json!({"azure": {"clientId": CLIENT, "identity": aso()}, "git": {"url": "https://dev.azure.com/a/b/_git/c", "ref": {"branch": "a", "tag": "b"}}}),
            "exactly one of branch",
        ),
        (
            json!({"virtualCluster": {"name": "Bad_Name"}, "azure": {"clientId": CLIENT, "identity": aso()}}),
            "spec.virtualCluster.name",
        ),
    ];
    for (spec, needle) in cases {
        let t = ti(spec.clone());
        let err = resolve(&t, &settings(), ISSUER).expect_err(&spec.to_string());
        assert_eq!(err.reason, "InvalidSpec", "{spec}");
        assert!(err.message.contains(needle), "{spec}: {}", err.message);
    }
}

#[test]
fn twenty_subjects_allowed_twenty_one_refused() {
    let sas = |n: usize| -> Vec<serde_json::Value> {
        (0..n)
            .map(|i| json!({"namespace": format!("ns{i}"), "name": "app"}))
            .collect()
    };
    let spec = |n: usize, git: bool| {
        let mut s = json!({
            "virtualCluster": {"mode": "PerServiceAccount", "serviceAccounts": sas(n)},
            "azure": {"clientId": CLIENT, "identity": aso()}
        });
        if git {
            s["git"] = json!({"url": "https://dev.azure.com/o/p/_git/r"});
        }
        ti(s)
    };
    assert_eq!(
        resolve(&spec(20, false), &settings(), ISSUER)
            .unwrap()
            .subjects
            .len(),
        20
    );
    assert_eq!(
        resolve(&spec(19, true), &settings(), ISSUER)
            .unwrap()
            .subjects
            .len(),
        20
    );
    assert!(resolve(&spec(21, false), &settings(), ISSUER).is_err());
    assert!(resolve(&spec(20, true), &settings(), ISSUER).is_err());
}

#[test]
fn credential_names_are_unique_and_deterministic() {
    let t = ti(json!({
        "virtualCluster": {"mode": "PerServiceAccount", "serviceAccounts": [
            {"namespace": "a", "name": "x"}, {"namespace": "b", "name": "x"}]},
        "azure": {"clientId": CLIENT, "identity": aso()}
    }));
    let one = resolve(&t, &settings(), ISSUER).unwrap();
    let two = resolve(&t, &settings(), ISSUER).unwrap();
    assert_eq!(one, two);
    assert_ne!(
        one.subjects[0].credential_name,
        one.subjects[1].credential_name
    );
}

#[test]
fn custom_audience_applies_to_workloads_only() {
    let t = ti(json!({
        "azure": {"clientId": CLIENT, "audience": "api://custom", "identity": aso()},
        "git": {"url": "https://dev.azure.com/o/p/_git/r"}
    }));
    let plan = resolve(&t, &settings(), ISSUER).unwrap();
    let audiences: Vec<_> = plan
        .subjects
        .iter()
        .map(|s| (s.kind, s.audience.as_str()))
        .collect();
    assert_eq!(
        audiences,
        vec![
            (SubjectKind::Workload, "api://custom"),
            // Flux always presents Entra's default audience.
            (SubjectKind::FluxSource, "api://AzureADTokenExchange"),
        ]
    );
}

fn managed_identity(resource_group: &str) -> serde_json::Value {
    json!({"managedIdentity": {
        "subscriptionId": "11111111-2222-4333-8444-555555555555",
        "resourceGroup": resource_group,
        "name": "id-x",
    }})
}

fn git(url: &str, auth: &str) -> serde_json::Value {
    json!({"azure": {"clientId": CLIENT, "identity": aso()}, "git": {"url": url, "auth": auth}})
}

#[test]
fn unsafe_git_urls_are_refused_in_both_auth_modes_with_the_field() {
    let not_azure_devops = "spec.git.url: must be an Azure DevOps URL";
    let credentials = "spec.git.url: must not carry credentials";
    let cases = [
        // provider: azure sends an Entra token to this host, whatever the auth mode.
        (
            git("https://evil.example.com/repo", "ControllerLevel"),
            not_azure_devops,
        ),
        (
            git("https://evil.example.com/repo", "ObjectLevel"),
            not_azure_devops,
        ),
        (
            git(
                "https://dev.azure.com.evil.example/o/p/_git/r",
                "ControllerLevel",
            ),
            not_azure_devops,
        ),
        (
            git(
                "https://contoso.visualstudio.com.evil.example/p/_git/r",
                "ControllerLevel",
            ),
            not_azure_devops,
        ),
        (
            git(
                "https://evil.example#@dev.azure.com/o/p/_git/r",
                "ControllerLevel",
            ),
            not_azure_devops,
        ),
        (
            git("https://dev.azure.com:8443/o/p/_git/r", "ControllerLevel"),
            not_azure_devops,
        ),
        // Credentials, or any user name, before the host.
        (
            git("https://user:pat@dev.azure.com/o/p/_git/r", "ObjectLevel"),
            credentials,
        ),
        (
            git(
                "https://user:pat@dev.azure.com/o/p/_git/r",
                "ControllerLevel",
            ),
            credentials,
        ),
        (
            git(
                "https://contoso@dev.azure.com/contoso/p/_git/r",
                "ObjectLevel",
            ),
            credentials,
        ),
        (
            git(
                "https://dev.azure.com@evil.example/o/p/_git/r",
                "ControllerLevel",
            ),
            credentials,
        ),
        (
            git(
                "https://a:b@contoso.visualstudio.com/p/_git/r",
                "ControllerLevel",
            ),
            credentials,
        ),
    ];
    for (spec, needle) in cases {
        let err = resolve(&ti(spec.clone()), &settings(), ISSUER).expect_err(&spec.to_string());
        assert_eq!(err.reason, "InvalidSpec", "{spec}");
        assert!(err.message.contains(needle), "{spec}: {}", err.message);
    }
    // An `@` after the host (in the path) is no credential.
    for (url, auth) in [
        ("https://dev.azure.com/o/p/_git/r", "ControllerLevel"),
        (
            "https://contoso.visualstudio.com/p/_git/r",
            "ControllerLevel",
        ),
        (
            "https://contoso.visualstudio.com/DefaultCollection/p/_git/r",
            "ObjectLevel",
        ),
        ("https://dev.azure.com/o/p/_git/r@x", "ObjectLevel"),
    ] {
        resolve(&ti(git(url, auth)), &settings(), ISSUER)
            .unwrap_or_else(|e| panic!("{url} ({auth}) is accepted: {e}"));
    }
}

#[test]
fn arm_names_azure_refuses_are_refused_with_the_field() {
    let resource_group = "spec.azure.identity.managedIdentity.resourceGroup";
    let arm_id = "spec.azure.identity.azureServiceOperator.armId";
    let aso_arm_id = |id: &str| json!({"azureServiceOperator": {"armId": id}});
    let arm_id_in = |group: &str| {
        format!(
            "/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x"
        )
    };
    let too_long = "r".repeat(91);
    let cases = [
        // `.` and `..` would be dropped (or resolved) in the ARM URL: another path.
        (managed_identity(".."), resource_group),
        (managed_identity("."), resource_group),
        (managed_identity("rg-tenants."), resource_group),
        (managed_identity(""), resource_group),
        (managed_identity(&too_long), resource_group),
        (managed_identity("rg/x"), resource_group),
        (managed_identity("rg?x"), resource_group),
        (managed_identity("rg#x"), resource_group),
        (managed_identity("rg%2e"), resource_group),
        (managed_identity("rg x"), resource_group),
        (managed_identity("rg\tx"), resource_group),
        (
            json!({"managedIdentity": {"subscriptionId": "..", "resourceGroup": "rg", "name": "id-x"}}),
            "spec.azure.identity.managedIdentity.subscriptionId",
        ),
        (
            json!({"managedIdentity": {"subscriptionId": "11111111-2222-4333-8444-555555555555", "resourceGroup": "rg", "name": ".."}}),
            "spec.azure.identity.managedIdentity.name",
        ),
        (
            json!({"managedIdentity": {"subscriptionId": "11111111-2222-4333-8444-555555555555", "resourceGroup": "rg", "name": "-id"}}),
            "spec.azure.identity.managedIdentity.name",
        ),
        // The same resource group rule inside ASO's armId, and no dot segment elsewhere in it.
        (aso_arm_id(&arm_id_in("..")), arm_id),
        (aso_arm_id(&arm_id_in("rg-tenants.")), arm_id),
        (aso_arm_id(&arm_id_in(&too_long)), arm_id),
        (
            aso_arm_id(
                "/subscriptions/../resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-x",
            ),
            arm_id,
        ),
        (
            aso_arm_id(
                "/subscriptions/11111111-2222-4333-8444-555555555555/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/..",
            ),
            arm_id,
        ),
    ];
    for (identity, needle) in cases {
        let spec = json!({"azure": {"clientId": CLIENT, "identity": identity}});
        let err = resolve(&ti(spec.clone()), &settings(), ISSUER).expect_err(&spec.to_string());
        assert_eq!(err.reason, "InvalidSpec", "{spec}");
        assert!(err.message.contains(needle), "{spec}: {}", err.message);
    }
    // Azure's rule accepts periods inside the name, parentheses and Unicode letters and digits.
    let max = "r".repeat(90);
    for group in [
        "rg",
        "rg.tenants",
        "rg(1)",
        "_rg-1",
        ".rg",
        "ressources-é",
        "资源组",
        "rg-٣",
        max.as_str(),
    ] {
        for identity in [managed_identity(group), aso_arm_id(&arm_id_in(group))] {
            let spec = json!({"azure": {"clientId": CLIENT, "identity": identity}});
            resolve(&ti(spec.clone()), &settings(), ISSUER)
                .unwrap_or_else(|e| panic!("{group:?} is a valid resource group: {e}"));
        }
    }
}

#[test]
fn git_interval_is_flux_duration_of_bounded_length() {
    let spec = |interval: &str| {
        json!({"azure": {"clientId": CLIENT, "identity": aso()},
               "git": {"url": "https://dev.azure.com/o/p/_git/r", "interval": interval}})
    };
    // Over the length limit; the first also overflows Go's time.Duration.
    for interval in [
        "100000000000000000000000000000000h".to_string(),
        "1m".repeat(17),
        // Not Flux's duration pattern.
        "5".to_string(),
        "1d".to_string(),
        "5 m".to_string(),
        "-5m".to_string(),
        "".to_string(),
    ] {
        let s = spec(&interval);
        let err = resolve(&ti(s.clone()), &settings(), ISSUER).expect_err(&s.to_string());
        assert!(
            err.message.contains("spec.git.interval"),
            "{interval:?}: {}",
            err.message
        );
    }
    for interval in ["5m", "1h30m", "0.5h", "1500ms", &"1m".repeat(16)] {
        resolve(&ti(spec(interval)), &settings(), ISSUER)
            .unwrap_or_else(|e| panic!("{interval:?} is a Flux interval: {e}"));
    }
}

#[test]
fn each_backend_finds_only_its_own_variant() {
    let identity = ManagedIdentity::new("s", "rg", "id");
    let arm = Backend::AzureResourceManager(identity.clone());
    assert_eq!(arm.resource_manager(), Some(&identity));
    assert_eq!(arm.service_operator(), None);
    let owner = AsoOwner::Name("team-a-identity".into());
    let aso = Backend::AzureServiceOperator(owner.clone());
    assert_eq!(aso.service_operator(), Some(&owner));
    assert_eq!(aso.resource_manager(), None);
}

#[test]
fn teardown_owns_only_what_it_would_have_named_for_that_subject() {
    let teardown = Teardown::of(&ti(json!({
        "virtualCluster": {"name": "vc"},
        "azure": {"clientId": CLIENT, "identity": aso()},
    })));
    let subject = "system:serviceaccount:vc-team-a:vc-workload-vc";
    let mine = names::credential_name("vc-team-a", "team-a", subject);
    assert!(teardown.owns(&mine, subject));
    assert!(!teardown.owns(&mine, "system:serviceaccount:vc-team-a:other"));
    // Namespace `vc-team` tenant `a-team-a` shares the prefix `vc-team-a-team-a`.
    let colliding = names::credential_name("vc-team", "a-team-a", subject);
    assert!(!teardown.owns(&colliding, subject));
}
