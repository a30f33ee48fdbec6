//! The race the uid in our applies closes, made deterministic: the ServiceAccount cache still
//! lists a host ServiceAccount that was deleted (or deleted and re-created) on the API server
//! (the project's emulator, which answers as kube-apiserver does: e2e/emulator
//! `ops::apply::check_uid_exists`, `ops::update::check_uid`).

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client,
    api::{DeleteParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::PartialObjectMeta,
    runtime::{
        events::{Recorder, Reporter},
        reflector, watcher,
    },
};
use kube_emulator::{Emulator, EmulatorConfig};
use serde_json::json;
use tenant_identity_crd::{TenantIdentity, conditions::Status};

use super::{release_host_annotations, sync_host_service_account};
use crate::{
    backends::Backends,
    children::identity_annotations,
    controller::{Context, Guarded, Services, cache::Caches},
    issuer::IssuerSource,
    metrics::Metrics,
    plan::{self, Plan, Settings},
    verify,
};

const NS: &str = "vc-team-a";
const WORKLOAD: &str = "vc-workload-vc";
const CLIENT: &str = "6f1c2a9e-3b4d-4c5e-8f70-1a2b3c4d5e6f";

struct Setup {
    _emulator: Emulator,
    ctx: Context,
    sas: Api<ServiceAccount>,
    ti: TenantIdentity,
    plan: Plan,
}

async fn setup() -> Setup {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let emulator = Emulator::start(EmulatorConfig::default()).await.unwrap();
    let kubeconfig = Kubeconfig::from_yaml(&emulator.kubeconfig_yaml()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    let client = Client::try_from(config).unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NS}})).unwrap(),
        )
        .await
        .unwrap();

    let ti: TenantIdentity = serde_json::from_value(json!({
        "apiVersion": "identity.tenancy.dev/v1alpha1", "kind": "TenantIdentity",
        "metadata": {"name": "team-a", "namespace": NS, "uid": "uid-1"},
        "spec": {
            "virtualCluster": {"name": "vc"},
            "azure": {"clientId": CLIENT, "identity": {"managedIdentity": {
                "subscriptionId": "11111111-2222-4333-8444-555555555555",
                "resourceGroup": "rg", "name": "id-x"}}},
        },
    }))
    .unwrap();
    let settings = Settings {
        default_tenant_id: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
        require_namespace_grant: false,
    };
    let plan = plan::resolve(&ti, &settings, "https://issuer.example/").unwrap();
    assert_eq!(plan.host_service_accounts(), vec![WORKLOAD.to_string()]);

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
        settings,
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
            metrics,
        ),
        concurrency: 1,
        debounce: Duration::from_millis(100),
    });
    let (store, _writer) = reflector::store::<Guarded>();
    let ctx = Context::new(services, store, Arc::new(Caches::default()));
    Setup {
        _emulator: emulator,
        ctx,
        sas: Api::namespaced(client, NS),
        ti,
        plan,
    }
}

impl Setup {
    /// The vcluster Helm release's workload ServiceAccount.
    async fn create_workload_account(&self) -> ServiceAccount {
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(WORKLOAD.into());
        self.sas.create(&PostParams::default(), &sa).await.unwrap()
    }

    /// The ServiceAccount cache has listed `accounts` (and nothing since).
    fn cache_lists(&self, accounts: &[&ServiceAccount]) {
        let cache = &self.ctx.caches.service_accounts;
        cache.observe(&watcher::Event::Init);
        for sa in accounts {
            cache.observe(&watcher::Event::InitApply(PartialObjectMeta {
                metadata: sa.metadata.clone(),
                ..PartialObjectMeta::default()
            }));
        }
        cache.observe(&watcher::Event::InitDone);
    }

    async fn delete_workload_account(&self) {
        self.sas
            .delete(WORKLOAD, &DeleteParams::default())
            .await
            .unwrap();
    }
}

/// Deleted after the cache saw it: the operator reports it missing and does not create it
/// (before the uid was in the apply, the apply created an orphan carrying only our two
/// annotations).
#[tokio::test]
async fn a_deleted_host_service_account_is_not_created_again() {
    let s = setup().await;
    let sa = s.create_workload_account().await;
    s.cache_lists(&[&sa]);
    s.delete_workload_account().await;

    let part = sync_host_service_account(&s.ti, &s.plan, &s.ctx)
        .await
        .unwrap();
    assert_eq!(part.reason, "VirtualClusterNotFound", "{part:?}");
    assert!(
        s.sas.get_opt(WORKLOAD).await.unwrap().is_none(),
        "the operator never creates a host ServiceAccount"
    );
}

/// Deleted and re-created (Helm reinstalled the vcluster) after the cache saw it: the apply for
/// the old one writes nothing to the new one; the new one's watch event reconciles it later.
/// The same apply with the current uid annotates it.
#[tokio::test]
async fn a_re_created_host_service_account_is_left_to_its_own_watch_event() {
    let s = setup().await;
    let old = s.create_workload_account().await;
    s.cache_lists(&[&old]);
    s.delete_workload_account().await;
    let new = s.create_workload_account().await;

    let part = sync_host_service_account(&s.ti, &s.plan, &s.ctx)
        .await
        .unwrap();
    assert_eq!(part.reason, "VirtualClusterNotFound", "{part:?}");
    let now = s.sas.get(WORKLOAD).await.unwrap();
    assert_eq!(now.metadata.resource_version, new.metadata.resource_version);
    assert!(now.metadata.annotations.is_none(), "{:?}", now.metadata);

    // The watch's event of the new account: annotated.
    s.cache_lists(&[&new]);
    let part = sync_host_service_account(&s.ti, &s.plan, &s.ctx)
        .await
        .unwrap();
    assert_eq!(part.status, Status::True, "{part:?}");
    assert_eq!(
        s.sas.get(WORKLOAD).await.unwrap().metadata.annotations,
        Some(identity_annotations(&s.plan))
    );
}

/// Releasing our annotations from an account deleted since the cache saw it does not create it
/// either (the release is an apply too, of an empty configuration).
#[tokio::test]
async fn releasing_from_a_deleted_host_service_account_does_not_create_it() {
    let s = setup().await;
    let sa = s.create_workload_account().await;
    s.cache_lists(&[&sa]);
    sync_host_service_account(&s.ti, &s.plan, &s.ctx)
        .await
        .unwrap();
    let annotated = s.sas.get(WORKLOAD).await.unwrap();
    assert_eq!(
        annotated.metadata.annotations,
        Some(identity_annotations(&s.plan))
    );
    s.cache_lists(&[&annotated]);
    s.delete_workload_account().await;

    // The TenantIdentity goes: nothing of it is kept.
    release_host_annotations(&s.ti, None, &s.ctx).await.unwrap();
    assert!(s.sas.get_opt(WORKLOAD).await.unwrap().is_none());
}
