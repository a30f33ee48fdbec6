use super::*;
use crate::render::{RenderOptions, render};

fn opts() -> RenderOptions {
    RenderOptions {
        issuer: Some("https://issuer.example/".into()),
        tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        namespace: "default".into(),
    }
}

/// A valid document as JSON (which is YAML), changed by `edit`.
fn doc(edit: impl FnOnce(&mut Value)) -> String {
    let mut v = serde_json::json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1",
        "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": "vc-team-a"},
        "spec": {
            "azure": {
                "clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
                "identity": {"azureServiceOperator": {"name": "uai"}},
            },
            "git": {"url": "https://dev.azure.com/o/p/_git/r", "ref": {"branch": "main"}},
        },
    });
    edit(&mut v);
    serde_yaml::to_string(&v).unwrap()
}

fn refusal(input: &str) -> String {
    match render(input, &opts()) {
        Ok(out) => panic!("accepted:\n{input}\nrendered:\n{out}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_valid_document_renders() {
    render(&doc(|_| {}), &opts()).unwrap();
}

#[test]
fn escape_shows_invisible_and_bidi_characters() {
    for (raw, shown) in [
        ("plain ASCII ~!", "plain ASCII ~!"),
        ("é 東 😀", "é 東 😀"),
        ("a\tb\nc\rd", "a\\tb\\nc\\rd"),
        ("\0\u{1b}\u{7f}\u{85}", "\\u{0}\\u{1b}\\u{7f}\\u{85}"),
        ("nb\u{a0}sp", "nb\\u{a0}sp"),
        ("line\u{2028}para\u{2029}", "line\\u{2028}para\\u{2029}"),
        ("abc\u{202e}fed", "abc\\u{202e}fed"),
        ("\u{2066}iso\u{2069}", "\\u{2066}iso\\u{2069}"),
        (
            "\u{200b}\u{200e}\u{feff}\u{ad}",
            "\\u{200b}\\u{200e}\\u{feff}\\u{ad}",
        ),
        ("\u{3000}\u{1680}\u{2009}", "\\u{3000}\\u{1680}\\u{2009}"),
        ("tag\u{e0041}", "tag\\u{e0041}"),
    ] {
        assert_eq!(escape(raw), shown, "{raw:?}");
    }
}

/// Characters an error line must never carry raw.
const INVISIBLE: &[char] = &[
    '\0', '\u{7}', '\u{8}', '\u{b}', '\u{c}', '\r', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}',
    '\u{a0}', '\u{ad}', '\u{61c}', '\u{200b}', '\u{200e}', '\u{200f}', '\u{2028}', '\u{2029}',
    '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{3000}', '\u{feff}',
];

#[test]
fn error_lines_never_carry_invisible_or_bidi_characters() {
    for &c in INVISIBLE {
        let s = |base: &str| format!("{base}{c}x");
        let inputs = [
            doc(|v| v["metadata"]["name"] = s("team").into()),
            doc(|v| v["metadata"]["namespace"] = s("ns").into()),
            doc(|v| v["metadata"]["labels"] = serde_json::json!({"app": s("a")})),
            doc(|v| v["metadata"]["annotations"] = serde_json::json!({s("k"): "v"})),
            doc(|v| v["spec"]["azure"]["issuer"] = s("https://issuer.example/").into()),
            doc(|v| v["spec"]["azure"]["clientId"] = s("6f1c2a9e").into()),
            doc(|v| v["spec"]["git"]["url"] = s("https://dev.azure.com/o/p").into()),
            // Free text, refused here for its length: the message quotes it.
            doc(|v| v["spec"]["git"]["ref"]["branch"] = (s("main") + &"a".repeat(300)).into()),
            doc(|v| v["spec"]["virtualCluster"] = serde_json::json!({"name": s("vc")})),
            doc(|v| v["spec"][s("unknown")] = 1.into()),
            doc(|v| v["kind"] = s("Tenant").into()),
        ];
        for input in inputs {
            let line = refusal(&input);
            assert!(
                !line.contains(|d: char| INVISIBLE.contains(&d) || d == '\n'),
                "{c:?} raw in {line:?}"
            );
            // Escaped by render, or already by a message that quotes the value as JSON.
            let shown = [
                format!("\\u{{{:x}}}", u32::from(c)),
                format!("\\u{:04x}", u32::from(c)),
                match c {
                    '\u{8}' => "\\b",
                    '\u{c}' => "\\f",
                    '\r' => "\\r",
                    _ => "\\u{",
                }
                .to_string(),
            ];
            assert!(
                shown.iter().any(|s| line.contains(s.as_str())),
                "{c:?} not shown escaped in {line:?}"
            );
        }
    }
    // YAML that does not parse: the parser's message quotes the input.
    let line = refusal("a: [\u{202e}\n");
    assert!(
        !line.contains('\u{202e}') && !line.contains('\n'),
        "{line:?}"
    );
}

#[test]
fn unknown_fields_are_refused_and_named() {
    for (edit, named) in [
        (
            Box::new(|v: &mut Value| v["spec"]["azure"]["clientID"] = "x".into())
                as Box<dyn Fn(&mut Value)>,
            vec!["spec.azure.clientID"],
        ),
        (
            Box::new(|v: &mut Value| {
                v["spec"]["suspended"] = true.into();
                v["spec"]["git"]["ref"]["brnch"] = "x".into();
            }),
            vec!["spec.git.ref.brnch", "spec.suspended"],
        ),
        (
            Box::new(|v: &mut Value| {
                v["spec"]["virtualCluster"] = serde_json::json!({"mode": "PerServiceAccount",
                    "serviceAccounts": [{"namespace": "a", "name": "b", "nmae": "c"}]});
            }),
            vec!["spec.virtualCluster.serviceAccounts[0].nmae"],
        ),
        (
            Box::new(|v: &mut Value| v["metadata"]["lables"] = serde_json::json!({})),
            vec!["metadata.lables"],
        ),
        (
            Box::new(|v: &mut Value| {
                v["metadata"]["ownerReferences"] = serde_json::json!([{"apiVersion": "v1",
                    "kind": "ConfigMap", "name": "c", "uid": "u", "extra": 1}]);
            }),
            vec!["metadata.ownerReferences[0].extra"],
        ),
        (
            Box::new(|v: &mut Value| v["status"] = serde_json::json!({"phase": "Ready"})),
            vec!["status.phase"],
        ),
        (
            Box::new(|v: &mut Value| v["specs"] = serde_json::json!({})),
            vec!["specs"],
        ),
    ] {
        let line = refusal(&doc(edit));
        for field in named {
            assert!(
                line.contains(&format!("unknown field \"{field}\"")),
                "{field}: {line}"
            );
        }
    }
    // Known fields anywhere are fine, the status too (a create drops it).
    render(
        &doc(|v| {
            v["metadata"]["labels"] = serde_json::json!({"app": "a"});
            v["metadata"]["annotations"] = serde_json::json!({"note": "free text"});
            v["metadata"]["finalizers"] = serde_json::json!(["example.com/keep"]);
            v["status"] = serde_json::json!({"issuer": "https://i/", "conditions": []});
        }),
        &opts(),
    )
    .unwrap();
}

#[test]
fn nulls_are_pruned_as_the_api_server_prunes_them() {
    // Not nullable: pruned, then defaulted.
    for pointer in [
        "/spec/git/interval",
        "/spec/git/auth",
        "/spec/suspend",
        "/spec/deletionPolicy",
        "/spec/azure/audience",
        "/spec/virtualCluster",
    ] {
        let input = doc(|v| {
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent).unwrap()[key] = Value::Null;
        });
        render(&input, &opts()).unwrap_or_else(|e| panic!("{pointer}: {e}"));
    }
    // Nullable: kept, and a null optional field is absent, as for the API server's CEL.
    render(&doc(|v| v["spec"]["git"] = Value::Null), &opts()).unwrap();
    let line = refusal(&doc(|v| v["spec"]["git"]["ref"]["branch"] = Value::Null));
    assert!(line.contains("spec.git.ref: exactly one of"), "{line}");
    // Required: pruned, then missing.
    let line = refusal(&doc(|v| v["spec"]["azure"] = Value::Null));
    assert!(line.contains("azure"), "{line}");
}

#[test]
fn types_are_those_of_the_schema() {
    for (edit, field) in [
        (
            Box::new(|v: &mut Value| v["spec"]["git"]["deploy"] = serde_json::json!([]))
                as Box<dyn Fn(&mut Value)>,
            "spec.git.deploy: Invalid value: \"array\"",
        ),
        (
            Box::new(|v: &mut Value| {
                v["spec"]["virtualCluster"] = serde_json::json!({"mode": ["Shared"]})
            }),
            "spec.virtualCluster.mode: Invalid value: \"array\"",
        ),
        (
            Box::new(|v: &mut Value| v["spec"]["suspend"] = "true".into()),
            "spec.suspend: Invalid value: \"string\"",
        ),
    ] {
        let line = refusal(&doc(edit));
        assert!(line.contains(field), "{field}: {line}");
    }
}

#[test]
fn metadata_follows_the_api_server_rules() {
    let name = |n: Value| doc(|v| v["metadata"]["name"] = n);
    for ok in ["team.a", "a", "0", &"a".repeat(45)] {
        render(&name(ok.into()), &opts()).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("", "metadata.name: Required value"),
        ("Team-a", "lowercase RFC 1123 subdomain"),
        ("team_a", "lowercase RFC 1123 subdomain"),
        ("-a", "lowercase RFC 1123 subdomain"),
        ("a..b", "lowercase RFC 1123 subdomain"),
        ("té", "lowercase RFC 1123 subdomain"),
        (&"a".repeat(46), "at most 45 characters"),
        (&"a".repeat(254), "no more than 253 characters"),
    ] {
        let line = refusal(&name(bad.into()));
        assert!(line.contains(why), "{bad:?}: {line}");
    }
    let line = refusal(&doc(|v| {
        v["metadata"].as_object_mut().unwrap().remove("name");
        v["metadata"]["generateName"] = "team-".into();
    }));
    assert!(line.contains("generateName is not enough"), "{line}");

    let namespace = |n: &str| doc(|v| v["metadata"]["namespace"] = n.into());
    for bad in ["Vc", "vc.a", "vc_a", "-vc", &"a".repeat(64)] {
        let line = refusal(&namespace(bad));
        assert!(
            line.contains("metadata.namespace: Invalid value"),
            "{bad}: {line}"
        );
    }
    // An empty namespace is the request's: the one render is given.
    let out = render(&namespace(""), &opts()).unwrap();
    assert!(out.contains("namespace: default"), "{out}");
    let line = render(
        &doc(|v| {
            v["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("namespace")
                .map(drop)
                .unwrap()
        }),
        &RenderOptions {
            namespace: "Not_A_Namespace".into(),
            ..opts()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(line.contains("--namespace: Invalid value"), "{line}");
}

#[test]
fn labels_annotations_and_finalizers_follow_the_api_server_rules() {
    let labels = |l: Value| doc(|v| v["metadata"]["labels"] = l);
    for ok in [
        serde_json::json!({"app": "", "App_1.x": "v-1_2.3", "example.com/app": "x"}),
        serde_json::json!({"a": "a".repeat(63), "k8s.io/": "x"}),
    ] {
        // `k8s.io/` has an empty name part: refused.
        let r = render(&labels(ok.clone()), &opts());
        assert_eq!(
            r.is_ok(),
            !ok.to_string().contains("k8s.io/"),
            "{ok}: {r:?}"
        );
    }
    for bad in [
        serde_json::json!({"my app": "x"}),
        serde_json::json!({"-app": "x"}),
        serde_json::json!({"": "x"}),
        serde_json::json!({"a/b/c": "x"}),
        serde_json::json!({"Example.com/app": "x"}),
        serde_json::json!({"a".repeat(64): "x"}),
        serde_json::json!({"app": "-x"}),
        serde_json::json!({"app": "a".repeat(64)}),
        serde_json::json!({"app": "a b"}),
    ] {
        let line = refusal(&labels(bad.clone()));
        assert!(
            line.contains("metadata.labels: Invalid value"),
            "{bad}: {line}"
        );
    }

    let annotations = |a: Value| doc(|v| v["metadata"]["annotations"] = a);
    // Values are free text; keys are checked in lower case.
    render(
        &annotations(serde_json::json!({"Note": "any\ntext \u{202e} é", "example.com/Big": ""})),
        &opts(),
    )
    .unwrap();
    for bad in [
        serde_json::json!({"my note": "x"}),
        serde_json::json!({"a/b/c": "x"}),
    ] {
        let line = refusal(&annotations(bad.clone()));
        assert!(
            line.contains("metadata.annotations: Invalid value"),
            "{bad}: {line}"
        );
    }
    let at_limit = "a".repeat(MAX_ANNOTATIONS_BYTES - 4);
    render(&annotations(serde_json::json!({"note": at_limit})), &opts()).unwrap();
    let over = "a".repeat(MAX_ANNOTATIONS_BYTES - 3);
    let line = refusal(&annotations(serde_json::json!({"note": over})));
    assert!(line.contains("metadata.annotations: Too long"), "{line}");

    let line = refusal(&doc(|v| {
        v["metadata"]["finalizers"] = serde_json::json!(["not a finalizer"])
    }));
    assert!(
        line.contains("metadata.finalizers: Invalid value"),
        "{line}"
    );
}

#[test]
fn an_object_etcd_cannot_store_is_refused() {
    let labels: Map<String, Value> = (0..40_000)
        .map(|i| (format!("label-{i:05}"), Value::String("v".repeat(30))))
        .collect();
    let line = refusal(&doc(|v| v["metadata"]["labels"] = Value::Object(labels)));
    assert!(line.contains("the API server stores at most"), "{line}");
}

#[test]
fn a_key_given_twice_is_refused() {
    let input = doc(|_| {}).replace("spec:\n", "spec:\n  suspend: true\n  suspend: false\n");
    let line = refusal(&input);
    assert!(line.contains("duplicate entry"), "{line}");
}

/// What only the API server does stays out of the operator's runtime validation: an object a
/// newer CRD stored with a field this version does not know is still planned.
#[test]
fn the_runtime_does_not_refuse_what_render_refuses_for_the_api_server() {
    let input = doc(|v| v["spec"]["azure"]["futureField"] = "x".into());
    refusal(&input);
    let ti: TenantIdentity = serde_yaml::from_str(&input).unwrap();
    let settings = crate::plan::Settings {
        default_tenant_id: opts().tenant_id,
        require_namespace_grant: false,
    };
    crate::plan::validate(&ti, &settings).unwrap();
}

/// Perl classes (`\s`, `\d`, `\w`, `\b` and their negations) are ASCII in the API server's Go
/// regular expressions and Unicode in the operator's Rust ones, so a pattern using one is read
/// differently by the two (an NBSP passed `[^\s]` on the server and failed in the operator).
/// Every pattern of the CRD, and every regular expression of its CEL rules, spells its classes
/// out instead.
#[test]
fn crd_patterns_mean_the_same_to_go_and_rust() {
    let Ok(schema) = crd_schema() else {
        panic!("no CRD schema");
    };
    let mut expressions = Vec::new();
    collect_expressions(schema, "", &mut expressions);
    assert!(expressions.len() > 10, "{expressions:?}");
    let mut bad = Vec::new();
    for (path, re) in &expressions {
        let mut chars = re.chars();
        while let Some(c) = chars.next() {
            if c == '\\'
                && let Some(next) = chars.next()
                && "sSdDwWbB".contains(next)
            {
                bad.push(format!("{path}: {re}"));
            }
        }
    }
    assert!(bad.is_empty(), "Perl classes in:\n{}", bad.join("\n"));
}

/// (where, regular expression): every `pattern`, and the argument of every CEL `matches(`.
fn collect_expressions(schema: &Value, path: &str, out: &mut Vec<(String, String)>) {
    match schema {
        Value::Object(map) => {
            for (k, v) in map {
                let here = format!("{path}/{k}");
                match (k.as_str(), v) {
                    ("pattern", Value::String(p)) => out.push((here, p.clone())),
                    ("rule", Value::String(rule)) => {
                        for part in rule.split(".matches(").skip(1) {
                            // The CEL string literal, with its escapes undone once.
                            let literal = part.trim_start_matches('\'');
                            let end = literal.find("')").unwrap_or(literal.len());
                            out.push((here.clone(), literal[..end].replace("\\\\", "\\")));
                        }
                    }
                    _ => collect_expressions(v, &here, out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_expressions(v, &format!("{path}/{i}"), out);
            }
        }
        _ => {}
    }
}
