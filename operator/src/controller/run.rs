//! Controller wiring: the TenantIdentity watch, one watch per owned child kind from the child
//! table, the host ServiceAccount watch, one watch per observed kind (the vcluster's Flux
//! HelmRelease) and (with `--require-namespace-grant`) namespaces.

use std::{sync::Arc, time::Duration};

use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams},
    core::PartialObjectMeta,
    runtime::{
        Controller, WatchStreamExt, controller,
        reflector::{self, ObjectRef, Store},
        watcher,
    },
};
use tenant_identity_crd::{
    TenantIdentity,
    kinds::{self, ObservedKind},
};
use tracing::{debug, warn};

use super::{
    Context, Guarded, Services,
    cache::{Caches, TenantIndex, slim_identity, slim_namespace, slim_release},
    error_policy, reconcile, valid,
    watch_health::WatchHealth,
};
use crate::{
    children::{self, host_service_account},
    http::{Liveness, Readiness},
    metrics::Watched,
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
    let mut caches = Caches::default();
    let tenants: Api<Guarded> = Api::all(client.clone());
    let owned = watcher::Config::default().labels(&kinds::managed_by_selector());
    let (store, writer) = reflector::store::<Guarded>();
    let index = caches.tenants.clone();
    let tenant_events = health
        .track(Watched::Tenants, move || {
            watcher(tenants.clone(), watcher::Config::default().any_semantic())
                .modify(|g| g.managed_fields_mut().clear())
        })
        .inspect(move |event| {
            if let Ok(event) = event {
                index.observe(event);
            }
        });
    let tenant_events = reflector::reflector(writer, tenant_events)
        .applied_objects()
        // Our own status writes change neither the spec, the annotations (reconcile requests),
        // the finalizers nor the deletion: they need no reconcile.
        .predicate_filter(tenant_predicate, Default::default());
    let mut controller = Controller::for_stream(tenant_events, store.clone()).with_config(
        controller::Config::default()
            .concurrency(services.concurrency)
            .debounce(services.debounce),
    );
    for kind in Watched::owned() {
        let resource = kind.api_resource();
        if !Watched::Owned(kind).always_started() && !kind_served(&client, &resource).await {
            warn!(kind = %resource.kind, api_version = %resource.api_version, "kind not served; TenantIdentities that need it report DependencyMissing (restart the operator after installing it)");
            continue;
        }
        let api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let config = owned.clone();
        let events = move || watcher(api.clone(), config.clone());
        let cache = caches.children.clone();
        let echoes = caches.children.clone();
        let kind_name = resource.kind.clone();
        let echo_kind = resource.kind.clone();
        controller = controller.owns_stream_with(
            health
                .track(Watched::Owned(kind), events)
                .inspect(move |event| {
                    if let Ok(event) = event {
                        cache.observe(&kind_name, event);
                    }
                })
                .touched_objects()
                // The echo of our own apply is no news.
                .filter(move |obj| {
                    let echo = obj
                        .as_ref()
                        .is_ok_and(|o| echoes.is_own_echo(&echo_kind, o));
                    futures::future::ready(!echo)
                }),
            resource,
        );
    }
    // Host ServiceAccounts are not ours; map any SA event to the tenants of its namespace that
    // care: the host SAs their pods run as (Shared: the workload SA; PerServiceAccount: each
    // synced SA, which appears when the tenant creates the virtual one), or our own `<name>-git`
    // child (`Watch::ServiceAccounts`). Metadata only: that is all the reconcile reads.
    let sa_api = Api::<PartialObjectMeta<ServiceAccount>>::all(client.clone());
    let sa_events = move || watcher(sa_api.clone(), watcher::Config::default().any_semantic());
    let sa_cache = caches.service_accounts.clone();
    let sa_echoes = caches.service_accounts.clone();
    // Our `<name>-git` ServiceAccounts are children too: the child cache takes them from this
    // watch (see `children::watch`).
    let sa_children = caches.children.clone();
    let sa_kind = host_service_account::resource().kind;
    let (sa_store, sa_index) = (store.clone(), caches.tenants.clone());
    controller = controller.watches_stream(
        health
            .track(Watched::HostServiceAccounts, sa_events)
            .inspect(move |event| {
                if let Ok(event) = event {
                    sa_cache.observe(event);
                    sa_children.observe_metadata(&sa_kind, event);
                }
            })
            .touched_objects()
            // The echo of our own annotation write is no news.
            .filter(move |sa| {
                let echo = sa.as_ref().is_ok_and(|sa| sa_echoes.is_own_echo(sa));
                futures::future::ready(!echo)
            }),
        move |sa| {
            let name = sa.name_any();
            tenants_of(
                &sa_store,
                &sa_index,
                &sa.namespace().unwrap_or_default(),
                |t| children::service_account_concerns(t, &name),
            )
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
        let release_api = Api::<DynamicObject>::all_with(client.clone(), &resource);
        let release_events = move || {
            watcher(
                release_api.clone(),
                watcher::Config::default().any_semantic(),
            )
            .modify(slim_release)
        };
        let writer = reflector::store::Writer::new(resource.clone());
        caches.releases = Some((resource.clone(), writer.as_reader()));
        let (release_store, release_index) = (store.clone(), caches.tenants.clone());
        controller = controller.watches_stream_with(
            reflector::reflector(
                writer,
                health.track(Watched::Observed(kind), release_events),
            )
            .touched_objects(),
            move |release| {
                let name = release.name_any();
                tenants_of(
                    &release_store,
                    &release_index,
                    &release.namespace().unwrap_or_default(),
                    |t| match kind {
                        ObservedKind::VirtualClusterRelease => vcluster_name(t) == name,
                    },
                )
            },
            resource.clone(),
        );
    }
    // ASO's UserAssignedIdentities: the binding reads their status.clientId, and a tenant waits
    // for it (IdentityNotReady), so its change must be seen at once.
    let uai = kinds::aso_user_assigned_identity();
    if kind_served(&client, &uai).await {
        let uai_api = Api::<DynamicObject>::all_with(client.clone(), &uai);
        let uai_events = move || {
            watcher(uai_api.clone(), watcher::Config::default().any_semantic())
                .modify(slim_identity)
        };
        let writer = reflector::store::Writer::new(uai.clone());
        caches.identities = Some((uai.clone(), writer.as_reader()));
        services.backends.use_identity_cache(writer.as_reader());
        let (uai_store, uai_index) = (store.clone(), caches.tenants.clone());
        controller = controller.watches_stream_with(
            reflector::reflector(writer, health.track(Watched::Identities, uai_events))
                .touched_objects(),
            move |identity| {
                let name = identity.name_any();
                tenants_of(
                    &uai_store,
                    &uai_index,
                    &identity.namespace().unwrap_or_default(),
                    |t| {
                        t.spec
                            .azure
                            .identity
                            .azure_service_operator
                            .as_ref()
                            .and_then(|a| a.name.as_deref())
                            == Some(name.as_str())
                    },
                )
            },
            uai.clone(),
        );
    }
    if services.settings.require_namespace_grant {
        let ns_api = Api::<PartialObjectMeta<Namespace>>::all(client.clone());
        let ns_events = move || {
            watcher(ns_api.clone(), watcher::Config::default().any_semantic())
                .modify(slim_namespace)
        };
        let writer = reflector::store::Writer::default();
        caches.namespaces = Some(writer.as_reader());
        let (ns_store, ns_index) = (store.clone(), caches.tenants.clone());
        controller = controller.watches_stream(
            reflector::reflector(writer, health.track(Watched::Namespaces, ns_events))
                .touched_objects(),
            move |ns| tenants_of(&ns_store, &ns_index, &ns.name_any(), |_| true),
        );
    }

    let liveness = tokio::spawn(
        health
            .clone()
            .watch_liveness(probes.liveness.clone(), probes.stall_timeout),
    );
    let ctx = Arc::new(Context::new(services, store, Arc::new(caches)));
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
    health.stopped();
}

/// What in a TenantIdentity needs a reconcile when it changes: its spec (generation), its
/// annotations (`reconcile.fluxcd.io/requestedAt`), its finalizers and its deletion. Not its
/// status, which only the operator writes. An object the types cannot read always passes.
fn tenant_predicate(guard: &Guarded) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let meta = guard.meta();
    meta.uid.hash(&mut hasher);
    meta.generation.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.finalizers.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .hash(&mut hasher);
    if guard.0.is_err() {
        meta.resource_version.hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// The tenants of namespace `ns` that `wants` the object (through the index: no scan of every
/// tenant).
fn tenants_of(
    store: &Store<Guarded>,
    index: &TenantIndex,
    ns: &str,
    wants: impl Fn(&TenantIdentity) -> bool,
) -> Vec<ObjectRef<Guarded>> {
    index
        .in_namespace(ns)
        .into_iter()
        .filter_map(|name| store.get(&ObjectRef::new(&name).within(ns)))
        .filter(|g| valid(g).is_some_and(&wants))
        .map(|g| ObjectRef::from_obj(&*g))
        .collect()
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
