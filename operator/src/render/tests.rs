use super::*;

fn opts() -> RenderOptions {
    RenderOptions {
        issuer: Some("https://issuer.example/".into()),
        tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        namespace: "default".into(),
    }
}

const GOOD: &str = r#"
apiVersion: identity.tenancy.dev/v1alpha1
kind: TenantIdentity
metadata: {name: a}
spec:
  azure:
    clientId: 6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f
    identity: {azureServiceOperator: {name: uai}}
"#;

#[test]
fn renders_every_child_in_stable_order() {
    let input = format!("{GOOD}---\n{}", GOOD.replace("name: a}", "name: b}"));
    let one = render(&input, &opts()).unwrap();
    assert_eq!(one, render(&input, &opts()).unwrap(), "stable output");
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&one)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect();
    let kinds: Vec<String> = docs
        .iter()
        .map(|d| {
            format!(
                "{}/{}",
                d["kind"].as_str().unwrap(),
                d["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert_eq!(kinds[0], "ConfigMap/a-vcluster-identity");
    assert!(kinds[1].starts_with("FederatedIdentityCredential/default-a-"));
    assert_eq!(kinds[2], "ServiceAccount/vc-workload-a");
    assert_eq!(kinds[3], "ConfigMap/b-vcluster-identity");
    assert_eq!(docs[0]["metadata"]["namespace"].as_str(), Some("default"));
}

#[test]
fn errors_are_one_line_and_name_the_document_and_field() {
    let cases = [
        (
            GOOD.replace("6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f", "nope"),
            "spec.azure.clientId",
        ),
        (
            GOOD.replace("clientId:", "clientID:"),
            "unknown field \"spec.azure.clientID\"",
        ),
        (
            "kind: ConfigMap\napiVersion: v1\n".to_string(),
            "is not an identity.tenancy.dev/v1alpha1 TenantIdentity",
        ),
        ("a: [b".to_string(), "not valid YAML"),
        (String::new(), "no TenantIdentity"),
    ];
    for (input, needle) in cases {
        let err = render(&input, &opts()).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    let second = format!("{GOOD}---\n{}", GOOD.replace("uai", "UAI_bad"));
    let err = render(&second, &opts()).unwrap_err().to_string();
    assert!(err.starts_with("document 2 (default/a)"), "{err}");
}

#[test]
fn issuer_required_offline_unless_in_spec() {
    let o = RenderOptions {
        issuer: None,
        ..opts()
    };
    let err = render(GOOD, &o).unwrap_err().to_string();
    assert!(err.contains("--issuer"), "{err}");
    let with_issuer = GOOD.replace("clientId:", "issuer: https://spec.example/\n    clientId:");
    assert!(
        render(&with_issuer, &o)
            .unwrap()
            .contains("issuer: https://spec.example/")
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,80}",
            Just("6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f".to_string()),
            Just(String::new()),
            Just("PerServiceAccount".to_string()),
            Just("https://dev.azure.com/o/p/_git/r".to_string()),
        ]
    }

    proptest! {
        // Any input is either rendered or refused with one line; never a panic.
        #[test]
        fn arbitrary_specs(
            client in field(), issuer in field(), mode in field(), vc in field(),
            ns in field(), sa in field(), url in field(), aso in field(), raw in "\\PC{0,200}",
        ) {
            let doc = serde_json::json!({
                "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
                "metadata": {"name": "t", "namespace": "n"},
                "spec": {
                    "virtualCluster": {"name": vc, "mode": mode, "serviceAccounts": [{"namespace": ns, "name": sa}]},
                    "azure": {"clientId": client, "issuer": issuer, "identity": {"azureServiceOperator": {"name": aso}}},
                    "git": {"url": url},
                }
            });
            let yaml = serde_yaml::to_string(&doc).unwrap();
            for input in [yaml.as_str(), raw.as_str()] {
                if let Err(e) = render(input, &opts()) {
                    prop_assert!(!e.to_string().contains('\n'), "{}", e);
                }
            }
        }
    }
}

#[test]
fn per_service_account_prints_a_patch_per_synced_service_account() {
    let input = r#"
apiVersion: identity.tenancy.dev/v1alpha1
kind: TenantIdentity
metadata: {name: p, namespace: vc-ns}
spec:
  virtualCluster:
    name: vc
    mode: PerServiceAccount
    serviceAccounts: [{namespace: default, name: app}, {namespace: batch, name: job}]
  azure:
    clientId: 6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f
    identity: {azureServiceOperator: {name: uai}}
"#;
    let out = render(input, &opts()).unwrap();
    for (host, from) in [
        ("app-x-default-x-vc", "default/app"),
        ("job-x-batch-x-vc", "batch/job"),
    ] {
        let comment = format!(
            "# Applied to the host ServiceAccount vcluster syncs from {from} once it exists"
        );
        let at = out
            .find(&comment)
            .unwrap_or_else(|| panic!("{comment:?} in\n{out}"));
        let doc: serde_yaml::Value = serde_yaml::Deserializer::from_str(&out[at..])
            .next()
            .map(|d| serde_yaml::Value::deserialize(d).unwrap())
            .unwrap();
        assert_eq!(doc["kind"].as_str(), Some("ServiceAccount"));
        assert_eq!(doc["metadata"]["name"].as_str(), Some(host));
        assert_eq!(
            doc["metadata"]["annotations"]["azure.workload.identity/client-id"].as_str(),
            Some("6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f")
        );
        assert!(doc["metadata"].get("ownerReferences").is_none());
    }
}
