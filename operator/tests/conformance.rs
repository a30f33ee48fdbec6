//! Every child the operator generates is checked against the real upstream contracts (pinned
//! upstream files, found by `tenant_identity_upstream`: shared checkout, cache or a verified
//! download): Flux's and ASO's CRD schemas (structure, unknown fields that the API server would
//! silently prune, and their CEL rules) and vcluster's values.schema.json.

use std::path::PathBuf;

use kube::api::DynamicObject;
use serde_json::Value;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_operator::{
    children::{self, Child, sync_rules},
    plan::{self, Settings},
};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn upstream(path: &str) -> PathBuf {
    tenant_identity_upstream::path(path).unwrap_or_else(|e| panic!("{e}"))
}

fn examples() -> Vec<TenantIdentity> {
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(workspace().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 3, "examples/ has the valid examples");
    for p in paths {
        let ti: TenantIdentity = serde_yaml::from_str(&std::fs::read_to_string(&p).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        out.push(ti);
    }
    out
}

/// Variants that switch every optional child on or off, on top of the examples.
fn all_variants() -> Vec<TenantIdentity> {
    let mut out = examples();
    // A deploy account and ClusterRole of the tenant's choosing (the binding inside the vcluster
    // is part of the values fragment).
    for mut ti in examples() {
        if let Some(deploy) = ti.spec.git.as_mut().and_then(|g| g.deploy.as_mut()) {
            deploy.service_account_name = Some("flux-applier".into());
            deploy.cluster_role = Some("system:aggregate-to-edit".into());
            out.push(ti);
        }
    }
    for mut ti in examples() {
        if let Some(git) = ti.spec.git.as_mut() {
            git.auth = tenant_identity_crd::GitAuth::ControllerLevel;
            git.deploy = None;
            git.reference = Some(tenant_identity_crd::GitRef {
                branch: None,
                tag: None,
                semver: Some(">=1.0.0".into()),
                commit: None,
            });
            out.push(ti);
        }
    }
    out
}

fn children_of(ti: &TenantIdentity) -> Vec<Child> {
    let mut ti = ti.clone();
    // Owner references need a uid, as on a live object.
    ti.metadata.uid = Some("0f9d7b0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into());
    let settings = Settings {
        default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        require_namespace_grant: false,
    };
    let plan = plan::resolve(&ti, &settings, "https://oidc.prod-aks.azure.com/x/").unwrap();
    let owner = kube::Resource::controller_owner_ref(&ti, &()).unwrap();
    children::owned(&plan, &owner)
}

/// openAPIV3Schema of `version` in a CRD file.
fn crd_schema(path: &str, version: &str) -> Value {
    let text = std::fs::read_to_string(upstream(path)).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == version)
        .unwrap_or_else(|| panic!("{path} serves {version}"))["schema"]["openAPIV3Schema"]
        .clone()
}

/// OpenAPI v3 (Kubernetes flavour) to JSON Schema: `nullable`, int-or-string, and RE2 flags.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (k, val) in map {
                out.insert(k.clone(), to_json_schema(val));
            }
            if out.remove("x-kubernetes-int-or-string") == Some(Value::Bool(true)) {
                out.remove("type");
            }
            if let Some(Value::String(p)) = out.get("pattern").cloned()
                && let Some(rest) = p.strip_prefix("(?i)")
            {
                out.insert("pattern".into(), Value::String(case_insensitive(rest)));
            }
            if out.get("nullable") == Some(&Value::Bool(true))
                && let Some(Value::String(t)) = out.get("type").cloned()
            {
                out.insert("type".into(), serde_json::json!([t, "null"]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(to_json_schema).collect()),
        other => other.clone(),
    }
}

/// RE2's `(?i)` has no ECMA-262 equivalent flag inside a pattern: spell letters as `[aA]`.
fn case_insensitive(pattern: &str) -> String {
    let mut out = String::new();
    let (mut escaped, mut in_class) = (false, false);
    for c in pattern.chars() {
        match c {
            _ if escaped => {
                escaped = false;
                out.push(c);
            }
            '\\' => {
                escaped = true;
                out.push(c);
            }
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            c if c.is_ascii_alphabetic() && !in_class => {
                out.push('[');
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
                out.push(']');
            }
            c if c.is_ascii_alphabetic() => {
                out.push(c.to_ascii_lowercase());
                out.push(c.to_ascii_uppercase());
            }
            c => out.push(c),
        }
    }
    out
}

/// Fields the API server would prune (not in a structural schema) — a typo Flux would never see.
fn unknown_fields(schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
                || schema.get("additionalProperties").is_some()
            {
                return;
            }
            let props = schema.get("properties").and_then(|p| p.as_object());
            for (k, v) in map {
                if path.is_empty() && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                match props.and_then(|p| p.get(k)) {
                    Some(s) => unknown_fields(s, v, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}")),
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    unknown_fields(s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn check_against_crd(obj: &DynamicObject, crd_file: &str, version: &str) {
    let schema = crd_schema(crd_file, version);
    let value = serde_json::to_value(obj).unwrap();
    let mut unknown = Vec::new();
    unknown_fields(&schema, &value, "", &mut unknown);
    assert!(
        unknown.is_empty(),
        "{crd_file}: fields the API server would prune: {unknown:?}"
    );

    let validator = jsonschema::draft4::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&to_json_schema(&schema))
        .unwrap_or_else(|e| panic!("{crd_file} schema compiles: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(&value)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{crd_file}: {errors:?}\n{value:#}");

    if let Err(errors) = kube_cel::Validator::new().validate(&schema, &value, None) {
        panic!("{crd_file}: CEL rules fail: {errors:?}\n{value:#}");
    }
}

#[test]
fn flux_and_aso_children_match_upstream_crds() {
    let mut seen = std::collections::BTreeSet::new();
    for ti in all_variants() {
        for child in children_of(&ti) {
            let kind = child.resource.kind.clone();
            match kind.as_str() {
                "GitRepository" => check_against_crd(
                    &child.object,
                    "flux/source.toolkit.fluxcd.io_gitrepositories.yaml",
                    "v1",
                ),
                "Kustomization" => check_against_crd(
                    &child.object,
                    "flux/kustomize.toolkit.fluxcd.io_kustomizations.yaml",
                    "v1",
                ),
                "FederatedIdentityCredential" => check_against_crd(
                    &child.object,
                    "aso/managedidentity.azure.com_federatedidentitycredentials.yaml",
                    "v1api20230131",
                ),
                "ConfigMap" => {
                    let _: k8s_openapi::api::core::v1::ConfigMap =
                        serde_json::from_value(serde_json::to_value(&child.object).unwrap())
                            .unwrap();
                }
                "ServiceAccount" => {
                    let _: k8s_openapi::api::core::v1::ServiceAccount =
                        serde_json::from_value(serde_json::to_value(&child.object).unwrap())
                            .unwrap();
                }
                other => panic!("unexpected child kind {other}"),
            }
            seen.insert(kind);
        }
    }
    for kind in [
        "GitRepository",
        "Kustomization",
        "FederatedIdentityCredential",
        "ConfigMap",
        "ServiceAccount",
    ] {
        assert!(seen.contains(kind), "examples exercise {kind}");
    }
}

#[test]
fn the_checks_catch_what_flux_would_reject() {
    // A field Flux does not have, and a value its schema refuses: both must be caught, or the
    // test above proves nothing.
    let ti = examples()
        .into_iter()
        .find(|t| t.spec.git.is_some())
        .unwrap();
    let repo = children_of(&ti)
        .into_iter()
        .find(|c| c.resource.kind == "GitRepository")
        .unwrap();
    let schema = crd_schema("flux/source.toolkit.fluxcd.io_gitrepositories.yaml", "v1");

    let mut typo = serde_json::to_value(&repo.object).unwrap();
    typo["spec"]["servceAccountName"] = "x".into();
    let mut unknown = Vec::new();
    unknown_fields(&schema, &typo, "", &mut unknown);
    assert_eq!(unknown, vec![".spec.servceAccountName"]);

    let mut bad = serde_json::to_value(&repo.object).unwrap();
    bad["spec"]["provider"] = "gitlab".into();
    let validator = jsonschema::draft4::options()
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(&to_json_schema(&schema))
        .unwrap();
    assert!(!validator.is_valid(&bad), "provider enum enforced");

    let mut cel = serde_json::to_value(&repo.object).unwrap();
    cel["spec"]["provider"] = "generic".into();
    assert!(
        kube_cel::Validator::new()
            .validate(&schema, &cel, None)
            .is_err(),
        "Flux's CEL rule: serviceAccountName only with provider azure/aws"
    );
}

#[test]
fn vcluster_values_match_the_vcluster_schema() {
    let text = std::fs::read_to_string(upstream("vcluster/values.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for ti in all_variants() {
        for child in children_of(&ti) {
            if child.resource.kind != "ConfigMap" {
                continue;
            }
            let body = child.object.data["data"][sync_rules::VALUES_KEY]
                .as_str()
                .unwrap();
            let values: Value = serde_yaml::from_str(body).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&values)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{errors:?}\n{body}");
            checked += 1;
        }
    }
    assert!(checked >= 3);
    // The schema is strict (additionalProperties: false): a misspelt key is caught.
    let typo = serde_json::json!({"controlPlane": {"advanced": {"workloadServiceAccont": {}}}});
    assert!(!validator.is_valid(&typo));
    // experimental.deploy.vcluster.manifests is one string of raw manifests in the schema.
    let not_a_string =
        serde_json::json!({"experimental": {"deploy": {"vcluster": {"manifests": [{}]}}}});
    assert!(!validator.is_valid(&not_a_string));
}

/// With git.deploy, the fragment binds the account kustomize-controller impersonates (the one
/// the Kustomization names, in the Kustomization's namespace) inside the vcluster, and the
/// manifests are a ClusterRoleBinding Kubernetes reads without unknown fields.
#[test]
fn the_deploy_binding_names_the_kustomization_account() {
    let mut checked = 0;
    for ti in all_variants() {
        let children = children_of(&ti);
        let Some(ks) = children.iter().find(|c| c.resource.kind == "Kustomization") else {
            continue;
        };
        let account = ks.object.data["spec"]["serviceAccountName"]
            .as_str()
            .expect("the Kustomization names its account: under Flux lockdown it is impersonated anyway");
        let cm = children
            .iter()
            .find(|c| c.resource.kind == "ConfigMap")
            .unwrap();
        let values: Value = serde_yaml::from_str(
            cm.object.data["data"][sync_rules::VALUES_KEY]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        let manifests = values["experimental"]["deploy"]["vcluster"]["manifests"]
            .as_str()
            .unwrap();
        let parsed: Value = serde_yaml::from_str(manifests).unwrap();
        let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
            serde_json::from_value(parsed.clone()).unwrap();
        // Nothing k8s-openapi would drop (a typo the API server would prune).
        assert_eq!(
            serde_json::to_value(&binding).unwrap(),
            parsed,
            "{manifests}"
        );
        let subject = &binding.subjects.as_ref().unwrap()[0];
        assert_eq!(
            (
                subject.kind.as_str(),
                subject.name.as_str(),
                subject.namespace.as_deref()
            ),
            ("ServiceAccount", account, ti.metadata.namespace.as_deref())
        );
        assert_eq!(
            Some(binding.role_ref.name.as_str()),
            Some(
                ti.spec
                    .git
                    .as_ref()
                    .and_then(|g| g.deploy.as_ref())
                    .and_then(|d| d.cluster_role.as_deref())
                    .unwrap_or("cluster-admin")
            )
        );
        checked += 1;
    }
    assert!(checked >= 2, "the default and a chosen deploy account");
}

/// The `valuesFrom` entry status and the ConfigMap header tell people to add, in a vcluster
/// HelmRelease like the README's, is valid against Flux's HelmRelease CRD.
#[test]
fn the_values_from_entry_fits_the_helmrelease_crd() {
    for ti in all_variants() {
        let mut with_uid = ti.clone();
        with_uid.metadata.uid = Some("0f9d7b0e-1c2d-4e5f-8a9b-0c1d2e3f4a5b".into());
        let settings = Settings {
            default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
            require_namespace_grant: false,
        };
        let plan =
            plan::resolve(&with_uid, &settings, "https://oidc.prod-aks.azure.com/x/").unwrap();
        let release: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "helm.toolkit.fluxcd.io/v2",
            "kind": "HelmRelease",
            "metadata": {"name": plan.vcluster, "namespace": plan.namespace},
            "spec": {
                "interval": "10m",
                "chart": {"spec": {"chart": "vcluster", "version": ">=0.21.0 <1.0.0",
                    "sourceRef": {"kind": "HelmRepository", "name": "loft"}}},
                "valuesFrom": [sync_rules::values_from_entry(&plan)],
                "values": {"sync": {"fromHost": {"nodes": {"enabled": false}}}},
            },
        }))
        .unwrap();
        check_against_crd(
            &release,
            "flux/helm.toolkit.fluxcd.io_helmreleases.yaml",
            "v2",
        );
        // The text form in messages is the same entry.
        let text: Value = serde_yaml::from_str(&sync_rules::values_from_entry_text(&plan)).unwrap();
        assert_eq!(text, sync_rules::values_from_entry(&plan));
    }
}
