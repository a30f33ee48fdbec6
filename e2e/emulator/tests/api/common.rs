//! Shared helpers: an emulator with a kube-rs client, polling with a deadline, and a test CRD.

use std::future::Future;
use std::time::Duration;

use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, CustomResource};
use kube_emulator::{Emulator, EmulatorConfig};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// kube-rs over rustls needs a process-wide crypto provider when a build enables more than one.
pub fn init_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

pub async fn start() -> (Emulator, Client) {
    init_crypto();
    let emu = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let kc = Kubeconfig::from_yaml(&emu.kubeconfig_yaml()).expect("kubeconfig parses");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("config loads");
    let client = Client::try_from(config).expect("client builds");
    (emu, client)
}

/// Polls `f` until it returns `Some`, failing the test after 10 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn api_error(e: kube::Error) -> kube::core::Status {
    match e {
        kube::Error::Api(s) => *s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, Default, JsonSchema)]
#[kube(
    group = "test.emulator.dev",
    version = "v1",
    kind = "Widget",
    namespaced,
    status = "WidgetStatus",
    shortname = "wd"
)]
#[serde(rename_all = "camelCase")]
pub struct WidgetSpec {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

#[derive(Deserialize, Serialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WidgetStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

pub const GUID: &str = "6f1c2d3e-0000-4000-8000-000000000001";

/// The Widget CRD with a hand-written schema: pattern, enum, default, maximum, a CEL rule.
pub fn widget_crd() -> serde_json::Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.emulator.dev"},
        "spec": {
            "group": "test.emulator.dev",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["clientId"],
                            "x-kubernetes-validations": [
                                {"rule": "!has(self.replicas) || self.replicas <= 5 || self.mode == 'B'", "message": "replicas above 5 need mode B"}
                            ],
                            "properties": {
                                "clientId": {"type": "string", "pattern": "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
                                "replicas": {"type": "integer", "default": 1, "maximum": 10},
                                "mode": {"type": "string", "enum": ["A", "B"], "default": "A"}
                            }
                        },
                        "status": {
                            "type": "object",
                            "properties": {
                                "observedGeneration": {"type": "integer"},
                                "phase": {"type": "string"}
                            }
                        }
                    }
                }}
            }]
        }
    })
}

/// Registers the Widget CRD and waits until it is Established.
pub async fn install_widgets(client: &Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd: CustomResourceDefinition = serde_json::from_value(widget_crd()).expect("crd parses");
    crds.create(&PostParams::default(), &crd)
        .await
        .expect("crd created");
    eventually("CRD established", || {
        let crds = crds.clone();
        async move {
            let c = crds.get("widgets.test.emulator.dev").await.ok()?;
            let established = c
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            established.then_some(())
        }
    })
    .await;
}
