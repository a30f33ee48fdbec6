//! The controller in-process against the project's API emulator: I/O steps that unit tests
//! cannot reach. (The real binary is exercised end to end in `e2e/`.)

use std::{sync::Arc, time::Duration};

use futures::FutureExt;
use k8s_openapi::{
    api::core::v1::{ConfigMap, Namespace},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, CustomResourceExt,
    api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::events::{Recorder, Reporter},
};
use kube_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};
use tenant_identity_crd::TenantIdentity;
use tenant_identity_operator::{
    backends::Backends,
    controller::{self, Services},
    issuer::IssuerSource,
    metrics::Metrics,
    plan::Settings,
    verify,
};

async fn client_for(emulator: &Emulator) -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = Kubeconfig::from_yaml(&emulator.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

async fn apply_crd(client: &Client, crd: Value) {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .unwrap();
}

async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
    }
}

fn ready(obj: &DynamicObject) -> Option<(String, String, String)> {
    obj.data
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"].as_str().unwrap_or_default().to_string(),
                c["reason"].as_str().unwrap_or_default().to_string(),
                c["message"].as_str().unwrap_or_default().to_string(),
            )
        })
}

/// An object the Rust types cannot read (here: stored while the CRD let anything through) is
/// reported on its own status, and every other tenant keeps being reconciled.
#[tokio::test]
async fn an_unreadable_object_does_not_stall_the_others() {
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let client = client_for(&emulator).await;

    // The CRD as an older, looser version would have had it: spec unchecked.
    let mut crd = serde_json::to_value(TenantIdentity::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"] =
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        .as_object_mut()
        .unwrap()
        .remove("x-kubernetes-validations");
    apply_crd(&client, crd).await;
    let aso = tenant_identity_upstream::read_to_string(
        "aso/managedidentity.azure.com_federatedidentitycredentials.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    apply_crd(&client, serde_yaml::from_str(&aso).unwrap()).await;

    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "tenants"}})).unwrap(),
        )
        .await
        .unwrap();
    // The good tenant's ASO identity, as the platform team created it and ASO reports it
    // (identity binding reads its status.clientId before anything is written).
    let uai_crd = tenant_identity_upstream::read_to_string(
        "aso/managedidentity.azure.com_userassignedidentities.yaml",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    apply_crd(&client, serde_yaml::from_str(&uai_crd).unwrap()).await;
    let uai_resource = tenant_identity_crd::kinds::aso_user_assigned_identity();
    let uais: Api<DynamicObject> = Api::namespaced_with(client.clone(), "tenants", &uai_resource);
    let uai: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "managedidentity.azure.com/v1api20230131", "kind": "UserAssignedIdentity",
        "metadata": {"name": "uai", "namespace": "tenants"},
        "spec": {"location": "westeurope", "owner": {"name": "rg"}},
    }))
    .unwrap();
    uais.create(&PostParams::default(), &uai).await.unwrap();
    uais.patch_status(
        "uai",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f"}})),
    )
    .await
    .unwrap();

    let resource = ApiResource::erase::<TenantIdentity>(&());
    let tis: Api<DynamicObject> = Api::namespaced_with(client.clone(), "tenants", &resource);
    for (name, azure) in [
        (
            "good",
            json!({"clientId": "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f",
                   "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
                   "identity": {"azureServiceOperator": {"name": "uai"}}}),
        ),
        ("bad", json!({"clientId": 42})),
    ] {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
            "metadata": {"name": name, "namespace": "tenants"},
            "spec": {"azure": azure},
        }))
        .unwrap();
        tis.create(&PostParams::default(), &obj).await.unwrap();
    }

    let metrics = Arc::new(Metrics::new().unwrap());
    let services = Arc::new(Services {
        client: client.clone(),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        ),
        metrics: metrics.clone(),
        settings: Settings::default(),
        issuer: IssuerSource::new(None),
        backends: Backends::new(client.clone(), None),
        verifier: verify::Verifier::new(
            client.clone(),
            reqwest::Client::new(),
            verify::VerifySettings {
                enabled: false,
                interval: Duration::from_secs(3600),
                grace: Duration::from_secs(180),
                concurrency: 1,
                authority_host: "https://login.microsoftonline.com/".parse().unwrap(),
                arm_scope: "https://management.azure.com/.default".into(),
                devops_endpoint: None,
            },
            metrics.clone(),
        ),
        concurrency: 4,
        debounce: Duration::from_millis(100),
    });
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(controller::run(
        services.clone(),
        async move {
            let _ = stopped.await;
        }
        .boxed(),
        controller::Probes::default(),
    ));

    let (status, reason, message) = eventually("the bad object's status", || {
        let tis = tis.clone();
        async move { ready(&tis.get("bad").await.ok()?) }
    })
    .await;
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidSpec"));
    assert!(message.contains("cannot read"), "{message}");

    // The good one was reconciled: its sync-rules ConfigMap exists and it reports why it waits
    // (no vcluster yet), with the issuer discovered from the API server.
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "tenants");
    eventually("the good tenant's ConfigMap", || {
        let config_maps = config_maps.clone();
        async move {
            config_maps
                .get_opt("good-vcluster-identity")
                .await
                .ok()
                .flatten()
        }
    })
    .await;
    let (status, reason, _) = eventually("the good tenant's status", || {
        let tis = tis.clone();
        async move { ready(&tis.get("good").await.ok()?) }
    })
    .await;
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "VirtualClusterNotFound")
    );
    let good = tis.get("good").await.unwrap();
    assert_eq!(
        good.data["status"]["issuer"],
        "https://oidc.emulator.local/"
    );
    assert!(
        config_maps
            .get_opt("bad-vcluster-identity")
            .await
            .unwrap()
            .is_none()
    );

    // Reported once: the bad object is not rewritten on every pass.
    let rv = tis.get("bad").await.unwrap().metadata.resource_version;
    tis.patch(
        "good",
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {"reconcile.fluxcd.io/requestedAt": "1"}}}),
        ),
    )
    .await
    .unwrap();
    eventually("the good tenant to handle the request", || {
        let tis = tis.clone();
        async move {
            let g = tis.get("good").await.ok()?;
            (g.data["status"]["lastHandledReconcileAt"] == "1").then_some(())
        }
    })
    .await;
    assert_eq!(tis.get("bad").await.unwrap().metadata.resource_version, rv);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("controller stops on shutdown")
        .unwrap();
    emulator.shutdown().await;
}
