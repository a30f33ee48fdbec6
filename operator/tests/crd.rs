//! The generated CRD: the chart's copy equals it, and it rejects every invalid example before
//! the operator would see it (OpenAPI structure and patterns, then CEL rules, as the API server
//! evaluates them).

use std::path::PathBuf;

use kube::CustomResourceExt;
use serde_json::Value;
use tenant_identity_crd::TenantIdentity;

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn schema() -> Value {
    let crd = serde_json::to_value(TenantIdentity::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// All problems the API server would report, as "path: message".
fn rejections(object: &Value) -> Vec<String> {
    let schema = schema();
    let validator = jsonschema::draft4::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&schema)
        .unwrap();
    let mut out: Vec<String> = validator
        .iter_errors(object)
        .map(|e| {
            let path = e
                .instance_path()
                .as_str()
                .trim_start_matches('/')
                .replace('/', ".");
            format!("{path}: {e}")
        })
        .collect();
    if let Err(errors) = kube_cel::Validator::new().validate_with_defaults(&schema, object, None) {
        out.extend(errors.into_vec().into_iter().map(|e| e.to_string()));
    }
    out
}

fn load(path: &PathBuf) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn chart_copy_has_not_drifted() {
    let generated = serde_yaml::to_string(&TenantIdentity::crd()).unwrap();
    let file = workspace()
        .join("helm/tenant-identity-operator/crds/tenantidentities.identity.tenancy.dev.yaml");
    let committed = std::fs::read_to_string(&file).unwrap_or_default();
    assert!(
        generated == committed,
        "{} drifted from the Rust types: run `make crd` and commit it",
        file.display()
    );
}

#[test]
fn crd_shape() {
    let crd = TenantIdentity::crd();
    assert_eq!(crd.spec.names.short_names, Some(vec!["ti".to_string()]));
    assert_eq!(crd.spec.scope, "Namespaced");
    let v = &crd.spec.versions[0];
    assert!(v.subresources.as_ref().unwrap().status.is_some());
    let columns: Vec<_> = v
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, vec!["Ready", "Reason", "Mode", "Age"]);
    // kstatus needs conditions merged by type (server-side apply list-map).
    let s = schema();
    assert_eq!(
        s["properties"]["status"]["properties"]["conditions"]["x-kubernetes-list-type"],
        "map"
    );
}

#[test]
fn valid_examples_are_accepted() {
    let mut n = 0;
    for entry in std::fs::read_dir(workspace().join("examples")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let errors = rejections(&load(&path));
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            n += 1;
        }
    }
    assert!(n >= 3);
}

#[test]
fn every_invalid_example_is_rejected_naming_the_field() {
    let expected = [
        ("bad-client-id.yaml", "spec.azure.clientId"),
        ("http-issuer.yaml", "spec.azure.issuer"),
        (
            "two-backends.yaml",
            "exactly one of managedIdentity or azureServiceOperator",
        ),
        (
            "no-backend.yaml",
            "exactly one of managedIdentity or azureServiceOperator",
        ),
        ("github-url-object-level.yaml", "Azure DevOps URL"),
        (
            "bad-namespace-name.yaml",
            "spec.virtualCluster.serviceAccounts.0.namespace",
        ),
        (
            "too-many-subjects.yaml",
            "spec.virtualCluster.serviceAccounts",
        ),
        ("twenty-plus-flux.yaml", "at most 20 subjects"),
        ("per-sa-without-accounts.yaml", "needs at least one entry"),
        (
            "shared-with-service-accounts.yaml",
            "only used in PerServiceAccount mode",
        ),
        (
            "two-git-refs.yaml",
            "exactly one of branch, tag, semver or commit",
        ),
        // Each of these names the field it is rejected on.
        (
            "non-azure-devops-url-controller-level.yaml",
            "spec.git.url: must be an Azure DevOps URL",
        ),
        (
            "credentials-in-url.yaml",
            "spec.git.url: must not carry credentials",
        ),
        (
            "dot-dot-resource-group.yaml",
            "spec.azure.identity.managedIdentity.resourceGroup: \"..\" does not match",
        ),
        (
            "trailing-dot-resource-group.yaml",
            "spec.azure.identity.managedIdentity.resourceGroup: \"rg-tenants.\" does not match",
        ),
        ("bad-interval.yaml", "spec.git.interval: "),
        (
            "deploy-account-is-git-account.yaml",
            "must not be <metadata.name>-git with git.auth ObjectLevel",
        ),
    ];
    let dir = workspace().join("examples/invalid");
    let files = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(
        files,
        expected.len(),
        "every invalid example has an expectation"
    );
    for (file, needle) in expected {
        let errors = rejections(&load(&dir.join(file)));
        assert!(
            errors.iter().any(|e| e.contains(needle)),
            "{file}: expected a rejection mentioning {needle:?}, got {errors:?}"
        );
    }
}
