//! The project's own CRD and examples (helm chart, examples/): the CRD registers, its CEL rules
//! compile, valid examples are accepted and each invalid example is rejected with 422.

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use serde_json::Value;

use crate::common::{api_error, start};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn examples(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    files
}

#[tokio::test]
async fn project_crd_and_examples() {
    let crd_path = repo()
        .join("helm/tenant-identity-operator/crds/tenantidentities.identity.tenancy.dev.yaml");
    if !crd_path.exists() {
        eprintln!("skipping: {} not found", crd_path.display());
        return;
    }
    let (emu, client) = start().await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(yaml(&crd_path)).expect("crd");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("project CRD registers");
    let ti = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("identity.tenancy.dev", "v1alpha1", "TenantIdentity"),
        "tenantidentities",
    );
    let nss: Api<Namespace> = Api::all(client.clone());
    let pp = PatchParams::apply("examples");
    let mut checked = 0;
    for (path, valid) in examples(&repo().join("examples"))
        .into_iter()
        .map(|p| (p, true))
        .chain(
            examples(&repo().join("examples/invalid"))
                .into_iter()
                .map(|p| (p, false)),
        )
    {
        let text = std::fs::read_to_string(&path).expect("read");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let Ok(v) = <Value as serde::Deserialize>::deserialize(doc) else {
                continue;
            };
            if v.get("kind").and_then(Value::as_str) != Some("TenantIdentity") {
                continue;
            }
            let ns = v["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string();
            let name = v["metadata"]["name"].as_str().expect("name").to_string();
            let _ = nss
                .patch(&ns, &pp, &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
                .await;
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &ti);
            let result = api.patch(&name, &pp, &Patch::Apply(&v)).await;
            match (valid, result) {
                (true, Ok(_)) => {}
                (true, Err(e)) => panic!("{} rejected: {e}", path.display()),
                (false, Ok(_)) => panic!("{} accepted", path.display()),
                (false, Err(e)) => {
                    let s = api_error(e);
                    assert_eq!(s.code, 422, "{}: {}", path.display(), s.message);
                    eprintln!("{}: {}", path.display(), s.message);
                }
            }
            checked += 1;
            if valid && checked == 1 {
                // The root rule on metadata.name sees the object's metadata.
                let mut long = v.clone();
                let long_name = "n".repeat(46);
                long["metadata"]["name"] = Value::String(long_name.clone());
                let e = api_error(
                    api.patch(&long_name, &pp, &Patch::Apply(&long))
                        .await
                        .unwrap_err(),
                );
                assert_eq!(e.code, 422, "{}", e.message);
                assert!(e.message.contains("at most 45"), "{}", e.message);
            }
        }
    }
    assert!(checked > 0);
    emu.shutdown().await;
}

/// The upstream Flux and ASO CRDs the e2e suite installs (pinned upstream files, found by
/// `tenant_identity_upstream`): they register (schemas and CEL rules compile) and the ASO sample
/// object is accepted.
#[tokio::test]
async fn upstream_crds_register() {
    let pinned = tenant_identity_upstream::entries().unwrap_or_else(|e| panic!("{e}"));
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in ["flux", "aso"] {
        let mut rels: Vec<&str> = pinned
            .iter()
            .map(|e| e.path.as_str())
            .filter(|p| p.starts_with(&format!("{dir}/")) && p.ends_with(".yaml"))
            .collect();
        rels.sort();
        for rel in rels {
            match tenant_identity_upstream::path(rel) {
                Ok(path) => files.push(path),
                Err(e) => {
                    eprintln!("skipping: {e}");
                    return;
                }
            }
        }
    }
    let (emu, client) = start().await;
    let crds: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let mut samples = Vec::new();
    for path in files {
        let v = yaml(&path);
        if v.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
            samples.push((path, v));
            continue;
        }
        let name = v["metadata"]["name"].as_str().expect("name").to_string();
        crds.patch(&name, &PatchParams::apply("e2e"), &Patch::Apply(&v))
            .await
            .unwrap_or_else(|e| panic!("{} rejected: {e}", path.display()));
    }
    for (path, sample) in samples {
        let api_version = sample["apiVersion"].as_str().expect("apiVersion");
        let (group, version) = api_version.split_once('/').expect("group/version");
        let kind = sample["kind"].as_str().expect("kind");
        let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let ns = sample["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let nss: Api<Namespace> = Api::all(client.clone());
        let _ = nss
            .patch(ns, &PatchParams::apply("e2e"), &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})))
            .await;
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        let name = sample["metadata"]["name"].as_str().expect("name");
        api.patch(name, &PatchParams::apply("e2e"), &Patch::Apply(&sample))
            .await
            .unwrap_or_else(|e| panic!("{} rejected: {e}", path.display()));
    }
    emu.shutdown().await;
}
