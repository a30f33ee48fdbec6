//! `render -f` agrees with the API server: a deterministic corpus of bad (and borderline good)
//! TenantIdentities, mutations of the valid `examples/*.yaml`, is given to the API server (a
//! create with `fieldValidation=Strict`, what `kubectl apply` sends since 1.27) and to the
//! operator binary's `render -f`; render must refuse a document exactly when the API server
//! refuses it, and every refusal is one line with no raw control, bidi or invisible character.
//!
//! It lives in the e2e suite, not beside the operator's unit tests, so that it runs unchanged
//! against a real API server (`E2E_KUBECONFIG`), whose Go regular expressions and ObjectMeta
//! rules are the reference the emulator only approximates.

use std::{collections::BTreeSet, path::Path, time::Duration};

use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tenant_identity_e2e::{Cluster, cluster::workspace_root, operator};

/// The tenant and issuer flags render gets (the operator has them or discovers them), so a
/// refusal is always about the document.
const TENANT_ID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
const ISSUER: &str = "https://oidc.example/";
/// Render processes run at once.
const PARALLEL: usize = 4;

/// One input, as the API server receives it (JSON) and as render reads it (the same value as
/// YAML).
struct Case {
    label: String,
    body: Value,
    /// The namespace of the request path (kubectl's: the object's own, else the current one).
    namespace: String,
}

/// What the operator's API server check (`fieldValidation=Strict` create) said.
#[derive(Debug)]
enum Verdict {
    Accepted,
    /// Status code, reason and message.
    Refused(#[allow(dead_code)] String),
}

impl Verdict {
    fn refused(&self) -> bool {
        matches!(self, Verdict::Refused(_))
    }
}

/// Why the emulator answers some cases unlike a real API server (its gaps, to be closed there).
const NULL_IS_ABSENT: &str = "a real API server's CEL sees a null optional field as absent (has() is false); the emulator's sees it as set";
const NULL_NOT_EVALUATED: &str =
    "a real API server evaluates no CEL rule on a null value; the emulator does";
const LIST_MAP_KEYS: &str = "a real API server refuses two entries with the same keys in an x-kubernetes-list-type: map list; the emulator does not check";
const OBJECT_META_TYPES: &str = "a real API server decodes ObjectMeta into its Go type, so a number is no string; the emulator does not";
const LABEL_KEYS: &str = "a real API server checks a label key as a qualified name (at most one '/'); the emulator checks only what follows the last '/'";
const ANNOTATIONS: &str = "a real API server checks annotation keys as qualified names and caps all annotations at 256 KiB; the emulator checks neither";
const OBJECT_META_UNKNOWN: &str = "a real API server's strict decoding reports unknown ObjectMeta fields; the emulator skips metadata";
const STATUS_UNKNOWN: &str = "a real API server's strict decoding covers status before a create drops it; the emulator drops status first";

/// Cases the emulator is known to answer unlike a real API server: (label, whether a real API
/// server refuses it, why). For these the test asserts that render gives a real API server's
/// answer, and prints what the server under test said, so that the same test passes on the
/// emulator and on a real cluster.
const NOT_EMULATED: &[(&str, bool, &str)] = &[
    (
        "gitops-flux: spec.azure.identity.azureServiceOperator.armId null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "shared-aso: spec.azure.identity.azureServiceOperator.name null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "per-service-account-arm: spec.azure.identity.managedIdentity null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "gitops-flux: spec.git.ref.branch null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "gitops-flux-tag: spec.git.ref.tag null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "gitops-flux-semver: spec.git.ref.semver null",
        true,
        NULL_IS_ABSENT,
    ),
    (
        "gitops-flux-commit: spec.git.ref.commit null",
        true,
        NULL_IS_ABSENT,
    ),
    ("gitops-flux: spec.git null", false, NULL_NOT_EVALUATED),
    ("gitops-flux: spec.git.ref null", false, NULL_NOT_EVALUATED),
    (
        "per-service-account-arm: spec.virtualCluster.serviceAccounts a duplicate entry",
        true,
        LIST_MAP_KEYS,
    ),
    (
        "gitops-flux: metadata.namespace a number",
        true,
        OBJECT_META_TYPES,
    ),
    (
        "gitops-flux: metadata.annotations a number as value",
        true,
        OBJECT_META_TYPES,
    ),
    (
        "gitops-flux: metadata.labels a label key with two slashes",
        true,
        LABEL_KEYS,
    ),
    (
        "gitops-flux: metadata.annotations a key with a space",
        true,
        ANNOTATIONS,
    ),
    (
        "gitops-flux: metadata.annotations a key with NBSP",
        true,
        ANNOTATIONS,
    ),
    (
        "gitops-flux: metadata.annotations 256 KiB + 1 in all",
        true,
        ANNOTATIONS,
    ),
    (
        "gitops-flux: metadata an unknown field",
        true,
        OBJECT_META_UNKNOWN,
    ),
    ("gitops-flux: status an unknown field", true, STATUS_UNKNOWN),
];

fn crd_schema() -> Value {
    let path = workspace_root()
        .join("helm/tenant-identity-operator/crds/tenantidentities.identity.tenancy.dev.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let crd: Value = serde_yaml::from_str(&text).unwrap();
    crd.pointer("/spec/versions/0/schema/openAPIV3Schema")
        .cloned()
        .unwrap()
}

/// The schema of the field at a JSON pointer (array indices step into `items`).
fn schema_at<'a>(root: &'a Value, pointer: &str) -> Option<&'a Value> {
    let mut s = root;
    for seg in pointer.split('/').skip(1) {
        s = if seg.chars().all(|c| c.is_ascii_digit()) {
            s.get("items")?
        } else {
            s.get("properties")?.get(seg)?
        };
    }
    Some(s)
}

/// The valid examples, moved into `ns`, plus variants that set the optional fields the examples
/// leave out, so that every field of the schema is mutated.
fn bases(ns: &str) -> Vec<(String, Value)> {
    let dir = workspace_root().join("examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut bases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut doc: Value = serde_yaml::from_str(&text).unwrap();
        doc["metadata"]["namespace"] = json!(ns);
        let stem = file.file_stem().unwrap().to_string_lossy().to_string();
        bases.push((stem, doc));
    }
    assert!(bases.len() >= 3, "examples/*.yaml: {}", bases.len());
    let find = |bases: &[(String, Value)], name: &str| {
        bases
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap_or_else(|| panic!("examples/{name}.yaml is gone"))
    };
    let mut shared = find(&bases, "shared-aso");
    shared["spec"]["virtualCluster"]["workloadServiceAccount"] = json!("vc-workload-team-a");
    shared["spec"]["azure"]["audience"] = json!("api://AzureADTokenExchange");
    shared["spec"]["deletionPolicy"] = json!("Retain");
    shared["spec"]["suspend"] = json!(false);
    bases.push(("shared-aso-every-field".into(), shared));
    let mut flux = find(&bases, "gitops-flux");
    flux["spec"]["git"]["deploy"]["serviceAccountName"] = json!("team-b-deploy");
    flux["spec"]["git"]["deploy"]["clusterRole"] = json!("tenant-admin");
    bases.push(("gitops-flux-every-field".into(), flux.clone()));
    for (field, value) in [
        ("tag", "v1.2.3"),
        ("semver", ">=1.0.0"),
        ("commit", "0123456789abcdef0123456789abcdef01234567"),
    ] {
        let mut f = flux.clone();
        f["spec"]["git"]["ref"] = json!({ field: value });
        bases.push((format!("gitops-flux-{field}"), f));
    }
    bases
}

/// Every node under `/spec` as (JSON pointer, value), parents before children.
fn nodes(v: &Value, pointer: String, out: &mut Vec<(String, Value)>) {
    out.push((pointer.clone(), v.clone()));
    match v {
        Value::Object(m) => {
            for (k, c) in m {
                nodes(c, format!("{pointer}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                nodes(c, format!("{pointer}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// The schema path of a pointer: array indices as `*`, so `serviceAccounts/0` and `/1` are one.
fn schema_key(pointer: &str) -> String {
    pointer
        .split('/')
        .map(|s| {
            if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) {
                "*"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Characters that look like nothing, or like something else, in a terminal or a review.
const ODD_CHARS: &[(&str, char)] = &[
    ("NBSP U+00A0", '\u{a0}'),
    ("LINE SEPARATOR U+2028", '\u{2028}'),
    ("PARAGRAPH SEPARATOR U+2029", '\u{2029}'),
    ("RTL OVERRIDE U+202E", '\u{202e}'),
    ("NEL U+0085", '\u{85}'),
    ("ZERO WIDTH SPACE U+200B", '\u{200b}'),
    ("BOM U+FEFF", '\u{feff}'),
    ("IDEOGRAPHIC SPACE U+3000", '\u{3000}'),
    ("TAB", '\t'),
    ("LF", '\n'),
    ("VT", '\u{b}'),
    ("NUL", '\0'),
    ("ESC", '\u{1b}'),
    ("DEL", '\u{7f}'),
];

fn string_mutations(v: &str, schema: Option<&Value>) -> Vec<(String, Value)> {
    let max = schema
        .and_then(|s| s.get("maxLength"))
        .and_then(Value::as_u64)
        .map(|m| m as usize);
    let mut out = vec![
        ("empty".to_string(), json!("")),
        ("a number".into(), json!(42)),
        ("a boolean".into(), json!(true)),
        ("a list".into(), json!([v])),
        ("an object".into(), json!({})),
        ("null".into(), Value::Null),
        ("upper case".into(), json!(v.to_uppercase())),
        ("leading space".into(), json!(format!(" {v}"))),
        ("with é".into(), json!(format!("{v}é"))),
    ];
    for (name, c) in ODD_CHARS {
        out.push((format!("+ {name}"), json!(format!("{v}{c}"))));
    }
    // The RTL override in the middle, where it reorders what a reviewer sees.
    let mid = v.len() / 2;
    if v.is_char_boundary(mid) {
        out.push((
            "RTL OVERRIDE inside".into(),
            json!(format!("{}\u{202e}{}", &v[..mid], &v[mid..])),
        ));
    }
    match max {
        Some(max) if v.chars().count() < max => {
            let pad = |n: usize, c: char| format!("{v}{}", c.to_string().repeat(n));
            let n = max - v.chars().count();
            out.push((format!("at maxLength {max}"), json!(pad(n, 'a'))));
            out.push((format!("maxLength {max} + 1"), json!(pad(n + 1, 'a'))));
            // maxLength counts characters, not bytes.
            out.push((format!("at maxLength {max} in é"), json!(pad(n, 'é'))));
        }
        _ => out.push((
            "300 characters longer".into(),
            json!(format!("{v}{}", "a".repeat(300))),
        )),
    }
    out
}

/// Twenty-one distinct virtual ServiceAccounts: one more than Entra allows on an identity.
fn too_many_accounts() -> Value {
    Value::Array(
        (0..21)
            .map(|i| json!({"namespace": "default", "name": format!("sa-{i}")}))
            .collect(),
    )
}

fn set(body: &mut Value, pointer: &str, v: Value) {
    *body.pointer_mut(pointer).unwrap() = v;
}

fn remove(body: &mut Value, pointer: &str) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    body.pointer_mut(parent)
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove(key);
}

fn corpus(ns: &str) -> Vec<Case> {
    let schema = crd_schema();
    let mut cases = Vec::new();
    let mut seen = BTreeSet::new();
    let mut push = |label: String, body: Value, namespace: &str| {
        cases.push(Case {
            label,
            body,
            namespace: namespace.to_string(),
        })
    };
    let bases = bases(ns);
    for (base, doc) in &bases {
        push(format!("{base}: unchanged"), doc.clone(), ns);
        let mut all = Vec::new();
        nodes(&doc["spec"], "/spec".into(), &mut all);
        for (pointer, value) in all {
            let key = schema_key(&pointer);
            if !seen.insert(key.clone()) {
                continue;
            }
            let field = pointer.trim_start_matches('/').replace('/', ".");
            let field_schema = schema_at(&schema, &pointer);
            let mut variants: Vec<(String, Value)> = Vec::new();
            match &value {
                Value::String(s) => variants = string_mutations(s, field_schema),
                Value::Bool(b) => {
                    variants.push(("a string".into(), json!(b.to_string())));
                    variants.push(("a number".into(), json!(1)));
                    variants.push(("null".into(), Value::Null));
                }
                Value::Object(_) => {
                    variants.push(("an unknown field".into(), {
                        let mut v = value.clone();
                        v["unknownField"] = json!("x");
                        v
                    }));
                    variants.push(("a string".into(), json!("x")));
                    variants.push(("a list".into(), json!([])));
                    variants.push(("empty".into(), json!({})));
                    variants.push(("null".into(), Value::Null));
                }
                Value::Array(a) => {
                    variants.push(("empty".into(), json!([])));
                    variants.push(("an object".into(), json!({})));
                    variants.push(("null".into(), Value::Null));
                    variants.push(("a list of strings".into(), json!(["x"])));
                    if let Some(first) = a.first() {
                        let mut dup = a.clone();
                        dup.push(first.clone());
                        variants.push(("a duplicate entry".into(), Value::Array(dup)));
                    }
                    variants.push(("21 entries".into(), too_many_accounts()));
                }
                _ => {}
            }
            for (what, v) in variants {
                let mut body = doc.clone();
                set(&mut body, &pointer, v);
                push(format!("{base}: {field} {what}"), body, ns);
            }
            if pointer != "/spec" && !pointer.ends_with(|c: char| c.is_ascii_digit()) {
                let mut body = doc.clone();
                remove(&mut body, &pointer);
                push(format!("{base}: {field} removed"), body, ns);
            }
        }
    }

    // The object itself and its ObjectMeta, on the first example.
    let (base, doc) = &bases[0];
    let with = |f: &dyn Fn(&mut Value)| {
        let mut body = doc.clone();
        f(&mut body);
        body
    };
    for (what, name) in [
        ("empty", json!("")),
        ("upper case", json!("Team-a")),
        ("an underscore", json!("team_a")),
        ("a dot (a valid name)", json!("team.a")),
        ("two dots", json!("team..a")),
        ("a leading dot", json!(".team-a")),
        ("a leading hyphen", json!("-team-a")),
        ("a trailing hyphen", json!("team-a-")),
        ("a space", json!("team a")),
        ("45 characters", json!("a".repeat(45))),
        ("46 characters", json!("a".repeat(46))),
        ("63 characters", json!("a".repeat(63))),
        ("254 characters", json!("a".repeat(254))),
        ("with é", json!("team-é")),
        ("+ NBSP", json!("team-a\u{a0}")),
        ("+ LINE SEPARATOR", json!("team-a\u{2028}")),
        ("RTL OVERRIDE inside", json!("team\u{202e}-a")),
        ("+ NUL", json!("team-a\0")),
        ("a number", json!(42)),
        ("null", Value::Null),
    ] {
        let body = with(&|b| b["metadata"]["name"] = name.clone());
        push(format!("{base}: metadata.name {what}"), body, ns);
    }
    for (what, namespace) in [
        ("upper case", "Team-A"),
        ("an underscore", "team_a"),
        ("a dot", "team.a"),
        ("64 characters", &*"a".repeat(64)),
        ("a leading hyphen", "-team"),
        ("RTL OVERRIDE inside", "te\u{202e}am"),
        ("+ NBSP", "team\u{a0}"),
    ] {
        let body = with(&|b| b["metadata"]["namespace"] = json!(namespace));
        push(
            format!("{base}: metadata.namespace {what}"),
            body,
            namespace,
        );
    }
    // An empty namespace in the body is the request's (the API server fills it in).
    let body = with(&|b| b["metadata"]["namespace"] = json!(""));
    push(format!("{base}: metadata.namespace empty"), body, ns);
    let body = with(&|b| b["metadata"]["namespace"] = json!(42));
    push(format!("{base}: metadata.namespace a number"), body, ns);
    let labels: &[(&str, Value)] = &[
        ("a valid label", json!({"app": "team-a"})),
        ("a valid prefixed label", json!({"example.com/app": "x"})),
        ("an empty label value", json!({"app": ""})),
        ("a label key with a space", json!({"my app": "x"})),
        ("a label key with a leading hyphen", json!({"-app": "x"})),
        ("a label value with a leading hyphen", json!({"app": "-x"})),
        (
            "a label value of 64 characters",
            json!({"app": "a".repeat(64)}),
        ),
        (
            "a label value with RTL OVERRIDE",
            json!({"app": "a\u{202e}b"}),
        ),
        ("a number as label value", json!({"app": 1})),
        ("an empty label key", json!({"": "x"})),
        ("a label key with two slashes", json!({"a/b/c": "x"})),
        (
            "a label key name of 64 characters",
            json!({"a".repeat(64): "x"}),
        ),
    ];
    for (what, labels) in labels {
        let body = with(&|b| b["metadata"]["labels"] = labels.clone());
        push(format!("{base}: metadata.labels {what}"), body, ns);
    }
    let annotations: &[(&str, Value)] = &[
        (
            "free text, any characters",
            json!({"example.com/note": "é \u{202e} \u{a0} text\nwith lines"}),
        ),
        ("a key with a space", json!({"my note": "x"})),
        ("a key with NBSP", json!({"note\u{a0}": "x"})),
        ("a number as value", json!({"note": 1})),
        (
            "256 KiB in all (the API server's limit)",
            json!({"note": "a".repeat(256 * 1024 - 4)}),
        ),
        (
            "256 KiB + 1 in all",
            json!({"note": "a".repeat(256 * 1024 - 3)}),
        ),
    ];
    for (what, annotations) in annotations {
        let body = with(&|b| b["metadata"]["annotations"] = annotations.clone());
        push(format!("{base}: metadata.annotations {what}"), body, ns);
    }
    let body = with(&|b| b["metadata"]["unknownField"] = json!("x"));
    push(format!("{base}: metadata an unknown field"), body, ns);
    let body = with(&|b| b["metadata"] = json!("x"));
    push(format!("{base}: metadata a string"), body, ns);
    let body = with(&|b| {
        b.as_object_mut().unwrap().remove("spec");
    });
    push(format!("{base}: spec removed"), body, ns);
    let body = with(&|b| b["kind"] = json!("TenantIdentities"));
    push(format!("{base}: kind another"), body, ns);
    let body = with(&|b| b["specs"] = json!({}));
    push(format!("{base}: an unknown top-level field"), body, ns);
    let body = with(&|b| b["status"] = json!({"unknownField": 1}));
    push(format!("{base}: status an unknown field"), body, ns);
    let body = with(&|b| b["status"] = json!({"issuer": "https://ignored.example/"}));
    push(
        format!("{base}: status set (the API server drops it)"),
        body,
        ns,
    );
    let body = with(&|b| b["spec"]["virtualCluster"]["unknownField"] = json!({"deep": 1}));
    push(
        format!("{base}: spec.virtualCluster an unknown object"),
        body,
        ns,
    );
    let body = with(&|b| {
        b["spec"]["azure"]["unknownA"] = json!(1);
        b["spec"]["git"] = json!({"url": "https://dev.azure.com/o/p/_git/r", "unknownB": 2});
    });
    push(format!("{base}: two unknown fields"), body, ns);
    cases
}

/// Percent-encoding of a path segment (everything but RFC 3986's unreserved characters).
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const COLLECTION: &str = "/apis/identity.tenancy.dev/v1alpha1/namespaces";

/// A create as `kubectl apply` sends it for a new object; an accepted object is deleted again so
/// the next case can take its name.
async fn api_server(client: &kube::Client, case: &Case) -> Verdict {
    let url = format!(
        "{COLLECTION}/{}/tenantidentities?fieldValidation=Strict&fieldManager=kubectl-client-side-apply",
        path_segment(&case.namespace)
    );
    let request = http::Request::post(url)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(&case.body).unwrap())
        .unwrap();
    match client.request::<Value>(request).await {
        Ok(created) => {
            let name = created["metadata"]["name"].as_str().unwrap_or_default();
            let ns = created["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default();
            let delete = http::Request::delete(format!(
                "{COLLECTION}/{}/tenantidentities/{}",
                path_segment(ns),
                path_segment(name)
            ))
            .body(Vec::new())
            .unwrap();
            client.request::<Value>(delete).await.unwrap_or_else(|e| {
                panic!("{}: cannot delete the created object: {e}", case.label)
            });
            Verdict::Accepted
        }
        Err(kube::Error::Api(status)) => Verdict::Refused(format!(
            "{} {}: {}",
            status.code, status.reason, status.message
        )),
        Err(e) => panic!("{}: the API server did not answer: {e}", case.label),
    }
}

/// What render said: `Ok(())`, or its error line.
async fn render(binary: &Path, dir: &Path, index: usize, case: &Case) -> Result<(), String> {
    let file = dir.join(format!("case-{index:04}.yaml"));
    let yaml = serde_yaml::to_string(&case.body).unwrap();
    // The file must say what the API server got, or the comparison means nothing.
    let back: Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, case.body, "{}: YAML does not round-trip", case.label);
    std::fs::write(&file, yaml).unwrap();
    let out = tokio::process::Command::new(binary)
        .args(["render", "-f"])
        .arg(&file)
        .args(["--issuer", ISSUER, "--azure-tenant-id", TENANT_ID])
        // `=`: a namespace starting with '-' must not read as an option.
        .arg(format!("--namespace={}", case.namespace))
        .output()
        .await
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A character an error line must not carry raw: controls, bidi and other format characters,
/// line and paragraph separators, and spaces other than U+0020.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c,
            '\u{ad}' | '\u{61c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn render_refuses_exactly_what_the_api_server_refuses() {
    let binary = operator::binary().unwrap();
    let cluster = Cluster::connect().await.unwrap();
    let ns = cluster.namespace("render").await.unwrap();
    let client = cluster.client();
    let cases = corpus(ns.name());
    let labels: BTreeSet<&str> = cases.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels.len(), cases.len(), "case labels are unique");
    for (label, _, _) in NOT_EMULATED {
        assert!(
            labels.contains(label),
            "NOT_EMULATED names no case: {label}"
        );
    }
    assert!(cases.len() >= 200, "corpus of {} cases", cases.len());

    let dir = tempfile::tempdir().unwrap();
    let rendered: Vec<Result<(), String>> = stream::iter(cases.iter().enumerate())
        .map(|(i, case)| render(&binary, dir.path(), i, case))
        .buffered(PARALLEL)
        .collect()
        .await;
    let mut verdicts = Vec::new();
    for case in &cases {
        verdicts.push(
            tokio::time::timeout(Duration::from_secs(30), api_server(&client, case))
                .await
                .unwrap_or_else(|_| panic!("{}: the API server took over 30 s", case.label)),
        );
    }

    let mut disagreements = Vec::new();
    let mut bad_lines = Vec::new();
    let (mut refused_by_server, mut refused_by_render) = (0, 0);
    for ((case, rendered), verdict) in cases.iter().zip(&rendered).zip(&verdicts) {
        refused_by_server += usize::from(verdict.refused());
        refused_by_render += usize::from(rendered.is_err());
        if let Err(line) = rendered {
            let line = line.strip_suffix('\n').unwrap_or(line);
            if line.contains('\n') || line.chars().any(unsafe_char) {
                bad_lines.push(format!("{}: {line:?}", case.label));
            }
        }
        let not_emulated = NOT_EMULATED.iter().find(|(l, _, _)| *l == case.label);
        let reference = match not_emulated {
            Some((_, real_refuses, why)) => {
                let how = if verdict.refused() == *real_refuses {
                    "as a real one does"
                } else {
                    "unlike a real one"
                };
                eprintln!(
                    "{}: the API server under test answered {how} ({why})",
                    case.label
                );
                *real_refuses
            }
            None => verdict.refused(),
        };
        if rendered.is_err() != reference {
            disagreements.push(format!(
                "{}\n    API server: {verdict:?}\n    render: {}",
                case.label,
                match rendered {
                    Ok(()) => "accepted".to_string(),
                    Err(e) => format!("refused: {}", e.trim_end()),
                }
            ));
        }
    }
    eprintln!(
        "{} cases: the API server refused {refused_by_server}, render {refused_by_render}; {} disagree",
        cases.len(),
        disagreements.len()
    );
    ns.cleanup().await;
    cluster.shutdown().await;
    assert!(
        disagreements.is_empty(),
        "{} of {} cases disagree:\n{}",
        disagreements.len(),
        cases.len(),
        disagreements.join("\n")
    );
    assert!(
        bad_lines.is_empty(),
        "error lines with raw control, bidi or invisible characters, or several lines:\n{}",
        bad_lines.join("\n")
    );
}

#[test]
fn the_corpus_is_deterministic() {
    let a: Vec<(String, Value)> = corpus("ns")
        .into_iter()
        .map(|c| (c.label, c.body))
        .collect();
    let b: Vec<(String, Value)> = corpus("ns")
        .into_iter()
        .map(|c| (c.label, c.body))
        .collect();
    assert_eq!(a.len(), b.len());
    assert!(a == b, "two generations differ");
    let not_objects: Vec<&String> = a
        .iter()
        .filter(|(_, body)| !body.is_object())
        .map(|(l, _)| l)
        .collect();
    assert!(not_objects.is_empty(), "{not_objects:?}");
}
