//! Controller wiring: the TenantIdentity watch, one watch per owned child kind from the child
//! table, the host ServiceAccount watch, one watch per observed kind (the vcluster's Flux
//! HelmRelease) and (with `--require-namespace-grant`) namespaces.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams},
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt,
        reflector::{self, ObjectRef},
        watcher,
    },
};
use tenant_identity_crd::{
    TenantIdentity,
    kinds::{self, ChildKind, ObservedKind},
};
use tracing::{debug, warn};

use super::{
    Context, Guarded, Services, error_policy, reconcile, valid, watch_health::WatchHealth,
};
use crate::{
    children::{self, Watch, host_service_account},
    http::{Liveness, Readiness},
    names,
};

/// The probes a controller run keeps up to date.
#[derive(Clone, Default)]
pub struct Probes {
    pub readiness: Readiness,
    pub liveness: Liveness,
    /// How long a watch may fail before the run reports not alive.
    pub stall_timeout: Duration,
}

/// Run the controller until `shutdown` resolves.
pub async fn run(services: Arc<Services>, shutdown: BoxFuture<'static, ()>, probes: Probes) {
    let client = services.client.clone();
    let health = WatchHealth::new(services.metrics.clone(), probes.readiness.clone());
    let tenants: Api<Guarded> = Api::all(client.clone());
    let owned = watcher::Config::default().labels(&kinds::managed_by_selector());
    let (store, writer) = reflector::store::<Guarded>();
    let tenant_events = health.track("TenantIdentity", move || {
        watcher(tenants.clone(), watcher::Config::default().any_semantic())
    });
    let mut controller = Controller::for_stream(
        reflector::reflector(writer, tenant_events).applied_objects(),
        store.clone(),
    );
    let mut watched: Vec<ApiResource> = Vec::new();
    for kind in ChildKind::all() {
        let resource = kind.api_resource();
        if children::watch(kind) != Watch::Owned
            || watched
                .iter()
                .any(|w| w.api_version == resource.api_version && w.kind == resource.kind)
        {
            continue;
        }
        if !kind.is_builtin() && !kind_served(&client, &resource).await {
            warn!(kind = %resource.kind, api_version = %resource.api_version, "kind not served; TenantIdentities that need it report DependencyMissing (restart the operator after installing it)");
            continue;
        }
        let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), &resource);
        let config = owned.clone();
        let events = move || watcher(api.clone(), config.clone());
        controller = controller.owns_stream_with(
            health.track(kind.kind_name(), events).touched_objects(),
            resource.clone(),
        );
        watched.push(resource);
    }
    // Host ServiceAccounts are not ours; map any SA event to the tenants of its namespace that
    // care: the host SAs their pods run as (Shared: the workload SA; PerServiceAccount: each
    // synced SA, which appears when the tenant creates the virtual one), or our own `<name>-git`
    // child (`Watch::ServiceAccounts`).
    let sa_store = store.clone();
    let sa_api = Api::<ServiceAccount>::all(client.clone());
    let sa_events = move || watcher(sa_api.clone(), watcher::Config::default().any_semantic());
    controller = controller.watches_stream(
        health.track("ServiceAccount", sa_events).touched_objects(),
        move |sa| {
            let ns = sa.namespace();
            let name = sa.name_any();
            sa_store
                .state()
                .into_iter()
                .filter(|g| {
                    valid(g).is_some_and(|t| {
                        t.namespace() == ns
                            && (host_service_account::wanted(t).contains(&name)
                                || names::git_service_account(&t.name_any()) == name)
                    })
                })
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        },
    );
    // Observed kinds (another controller's objects: not ours, so no label selector), mapped to
    // the tenants of their namespace whose vcluster they are. The vcluster's Flux HelmRelease
    // decides HostSyncReady: a change of its valuesFrom or of its Ready condition must be seen at
    // once. Skipped when Flux's helm-controller is not installed (status then says the operator
    // cannot check).
    for kind in ObservedKind::all() {
        let resource = kind.api_resource();
        if !kind_served(&client, &resource).await {
            warn!(kind = %resource.kind, api_version = %resource.api_version, "kind not served or not readable; TenantIdentities cannot check their vcluster release (restart the operator after installing it)");
            continue;
        }
        let release_store = store.clone();
        let release_api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let release_events = move || {
            watcher(
                release_api.clone(),
                watcher::Config::default().any_semantic(),
            )
        };
        controller = controller.watches_stream_with(
            health
                .track(kind.kind_name(), release_events)
                .touched_objects(),
            move |release| {
                let ns = release.namespace();
                let name = release.name_any();
                release_store
                    .state()
                    .into_iter()
                    .filter(|g| {
                        valid(g).is_some_and(|t| match kind {
                            ObservedKind::VirtualClusterRelease => {
                                t.namespace() == ns && vcluster_name(t) == name
                            }
                        })
                    })
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
            resource.clone(),
        );
    }
    if services.settings.require_namespace_grant {
        let ns_store = store.clone();
        let ns_api = Api::<Namespace>::all(client.clone());
        let ns_events = move || watcher(ns_api.clone(), watcher::Config::default().any_semantic());
        controller = controller.watches_stream(
            health.track("Namespace", ns_events).touched_objects(),
            move |ns| {
                let name = ns.name_any();
                ns_store
                    .state()
                    .into_iter()
                    .filter(|t| t.namespace().as_deref() == Some(name.as_str()))
                    .map(|t| ObjectRef::from_obj(&*t))
                    .collect::<Vec<_>>()
            },
        );
    }

    let liveness = tokio::spawn(
        health
            .clone()
            .watch_liveness(probes.liveness.clone(), probes.stall_timeout),
    );
    let ctx = Arc::new(Context::new(services, store));
    // The controller wants a Sync future; relay the trigger through a oneshot.
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(());
    });
    controller
        .graceful_shutdown_on(async move {
            let _ = stop_rx.await;
        })
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => debug!(tenant = %obj, "reconciled"),
                Err(e) => debug!(error = %e, "controller event"),
            }
        })
        .boxed()
        .await;
    liveness.abort();
    probes.liveness.set_live(true);
}

/// `virtualCluster.name`, read leniently (no validation): the vcluster's Helm release name.
fn vcluster_name(ti: &TenantIdentity) -> String {
    ti.spec
        .virtual_cluster
        .name
        .clone()
        .unwrap_or_else(|| ti.name_any())
}

async fn kind_served(client: &Client, resource: &ApiResource) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .is_ok()
}
