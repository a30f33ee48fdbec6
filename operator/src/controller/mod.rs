//! Kubernetes glue: the reconcile pipeline around the pure steps.
//!
//! read → validate and isolate (pure) → resolve issuer → plan (pure) → apply children (SSA) →
//! prune → host ServiceAccount → observe backends → compute status (pure) → patch status.
//!
//! This module holds the pipeline and the controller wiring; the I/O steps live in
//! `owned` (apply and prune children), `host_service_account`, `arm` and `status_writer`.

mod arm;
mod host_service_account;
mod owned;
mod status_writer;

use arm::{delete_arm_credentials, refused, reported_credentials, sync_arm_credentials};
use host_service_account::{release_host_annotations, sync_host_service_account};
use owned::{apply_child, prune};
use status_writer::{report_unreadable, write_error_status, write_status};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{DynamicObject, ListParams, ObjectMeta},
    core::DeserializeGuard,
    runtime::{
        Controller,
        controller::Action,
        events::Recorder,
        finalizer::{self, finalizer},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use tenant_identity_crd::{
    DeletionPolicy, Mode, TenantIdentity,
    conditions::{self, Status},
    reasons,
};
use tracing::{debug, info, warn};

use crate::{
    azure::ArmBackend,
    children,
    error::{Error, Result},
    isolation,
    issuer::IssuerSource,
    metrics::{self, Metrics},
    names::{self, FIELD_MANAGER, FINALIZER},
    plan::{self, Plan, Settings, SpecError},
    status::{self, Observed, PartState},
};

/// What lives as long as the process (survives a lost and regained lease).
pub struct Shared {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub issuer: IssuerSource,
    /// The managedIdentity backend; None when the operator runs without an Azure identity.
    pub arm: Option<ArmBackend>,
}

/// Per controller run: the shared parts plus this run's cache.
pub struct Context {
    pub shared: Arc<Shared>,
    pub store: Store<Guarded>,
    /// Per object (namespace, name): consecutive failures grow the delay until a success.
    backoffs: Mutex<HashMap<(String, String), ExponentialBackoff>>,
}

impl Context {
    fn client(&self) -> Client {
        self.shared.client.clone()
    }

    /// Valid TenantIdentities in the cache (unreadable ones are reported, not reconciled).
    fn tenants(&self) -> Vec<Arc<Guarded>> {
        self.store.state()
    }

    fn next_backoff(&self, key: (String, String)) -> Duration {
        // A poisoned lock only means another reconcile panicked mid-insert; the map is still usable.
        let mut backoffs = self.backoffs.lock().unwrap_or_else(|e| e.into_inner());
        backoffs
            .entry(key)
            .or_insert_with(|| {
                ExponentialBuilder::new()
                    .with_min_delay(Duration::from_secs(2))
                    .with_max_delay(Duration::from_secs(300))
                    .with_factor(2.0)
                    .with_jitter()
                    .without_max_times()
                    .build()
            })
            .next()
            .unwrap_or(Duration::from_secs(300))
    }

    fn reset_backoff(&self, key: &(String, String)) {
        self.backoffs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Cleanup that garbage collection cannot do needs a finalizer: releasing the annotations on the
/// vcluster's host ServiceAccount (Shared mode; it is not ours to own) and, for the ARM backend,
/// deleting credentials in Azure.
pub fn needs_finalizer(ti: &TenantIdentity) -> bool {
    ti.spec.virtual_cluster.mode == Mode::Shared
        || ti.spec.azure.identity.managed_identity.is_some()
}

/// The controller watches `DeserializeGuard<TenantIdentity>` so that one object the types cannot
/// read (written under another CRD version, say) is reported on its own instead of failing the
/// whole list and stalling the watch for every tenant.
pub type Guarded = DeserializeGuard<TenantIdentity>;

fn valid(guard: &Guarded) -> Option<&TenantIdentity> {
    guard.0.as_ref().ok()
}

fn backoff_key(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

pub async fn reconcile(guard: Arc<Guarded>, ctx: Arc<Context>) -> Result<Action> {
    match &guard.0 {
        Ok(ti) => reconcile_tenant(Arc::new(ti.clone()), ctx).await,
        Err(invalid) => {
            report_unreadable(invalid, &ctx).await?;
            Ok(Action::await_change())
        }
    }
}

async fn reconcile_tenant(ti: Arc<TenantIdentity>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx
        .shared
        .metrics
        .reconcile_duration
        .with_label_values(&[] as &[&str])
        .start_timer();
    let key = backoff_key(ti.meta());
    let ns = ti.namespace().unwrap_or_default();
    let api: Api<TenantIdentity> = Api::namespaced(ctx.client(), &ns);
    let has_finalizer = ti.finalizers().iter().any(|f| f == FINALIZER);
    let result = if needs_finalizer(&ti) || has_finalizer {
        let ctx2 = ctx.clone();
        finalizer(&api, FINALIZER, ti, |event| async move {
            match event {
                finalizer::Event::Apply(ti) => apply(ti, ctx2).await,
                finalizer::Event::Cleanup(ti) => cleanup(ti, ctx2).await,
            }
        })
        .await
        .map_err(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => e,
            other => Error::FinalizerError(other.to_string()),
        })
    } else if ti.meta().deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else {
        apply(ti, ctx.clone()).await
    };
    timer.observe_duration();
    let m = &ctx.shared.metrics;
    match &result {
        Ok(_) => {
            m.reconcile_total
                .with_label_values(&[metrics::RESULT_SUCCESS])
                .inc();
            ctx.reset_backoff(&key);
        }
        Err(e) => {
            m.reconcile_total
                .with_label_values(&[metrics::RESULT_ERROR])
                .inc();
            m.reconcile_errors.with_label_values(&[e.reason()]).inc();
        }
    }
    let state = ctx.tenants();
    m.set_objects(state.iter().filter_map(|g| valid(g)).map(|t| {
        t.status
            .as_ref()
            .map(|s| s.conditions.as_slice())
            .unwrap_or(&[])
    }));
    result
}

pub fn error_policy(guard: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    warn!(
        tenant = %ObjectRef::from_obj(&*guard),
        reason = error.reason(),
        error = %error,
        "reconcile failed"
    );
    if let Some(delay) = error.retry_after() {
        return Action::requeue(delay);
    }
    if error.is_terminal() {
        // Only a person can fix it, but the fix may happen outside Kubernetes (in Azure), which
        // no watch sees: look again every few minutes rather than backing off further.
        return Action::requeue(Duration::from_secs(300));
    }
    Action::requeue(ctx.next_backoff(backoff_key(guard.meta())))
}

/// Outcome of the operator-only checks.
enum Refusal {
    /// Keep what exists, report (an edit may fix it).
    Invalid(SpecError),
    /// Tenant must not hold the identity: revoke what exists, report.
    Revoke(SpecError),
}

async fn check(ti: &TenantIdentity, ctx: &Context) -> Result<Option<Refusal>> {
    if let Err(e) = plan::validate(ti) {
        return Ok(Some(Refusal::Invalid(e)));
    }
    let state = ctx.tenants();
    let others = state
        .iter()
        .filter_map(|g| valid(g))
        .filter(|t| t.uid() != ti.uid());
    if let Some(e) = isolation::claim_conflict(ti, others) {
        return Ok(Some(Refusal::Revoke(e)));
    }
    if ctx.shared.settings.require_namespace_grant {
        let ns = ti.namespace().unwrap_or_default();
        let namespaces: Api<Namespace> = Api::all(ctx.client());
        let namespace = namespaces
            .get(&ns)
            .await
            .map_err(Error::KubernetesApiError)?;
        let grant = namespace
            .annotations()
            .get(names::GRANT_ANNOTATION)
            .cloned();
        if let Err(e) = isolation::grant_check(&ti.spec.azure.client_id, &ns, grant.as_deref()) {
            return Ok(Some(Refusal::Revoke(e)));
        }
    }
    Ok(None)
}

async fn apply(ti: Arc<TenantIdentity>, ctx: Arc<Context>) -> Result<Action> {
    if ti.spec.suspend {
        info!(tenant = %ObjectRef::from_obj(&*ti), "suspended; skipping");
        return Ok(Action::await_change());
    }
    match check(&ti, &ctx).await? {
        Some(Refusal::Invalid(e)) => {
            write_status(&ti, &ctx, status::refused(&e), None, Vec::new()).await?;
            return Ok(Action::await_change());
        }
        Some(Refusal::Revoke(e)) => {
            prune(&ti, &[], &ctx).await?;
            delete_arm_credentials(&ti, &ctx, reported_credentials(&ti)).await?;
            release_host_annotations(&ti, None, &ctx).await?;
            write_status(&ti, &ctx, status::refused(&e), None, Vec::new()).await?;
            // Claims change when other objects go away; look again now and then.
            return Ok(Action::requeue(Duration::from_secs(120)));
        }
        None => {}
    }

    let issuer = match ctx
        .shared
        .issuer
        .resolve(ti.spec.azure.issuer.as_deref(), &ctx.shared.client)
        .await
    {
        Ok(i) => i,
        Err(e) => {
            let part = PartState::waiting(reasons::ISSUER_UNAVAILABLE, e.to_string());
            write_error_status(&ti, &ctx, part, false).await?;
            return Err(e);
        }
    };
    let plan = match plan::resolve(&ti, &ctx.shared.settings, &issuer) {
        Ok(p) => p,
        Err(e) => {
            write_status(&ti, &ctx, status::refused(&e), None, Vec::new()).await?;
            return Ok(Action::await_change());
        }
    };

    match converge(&ti, &plan, &ctx).await {
        Ok(observed) => {
            let computed = status::compute(&observed);
            let ready = computed
                .conditions
                .iter()
                .any(|c| c.type_ == conditions::READY && c.status == Status::True);
            write_status(
                &ti,
                &ctx,
                computed,
                Some(plan.issuer.clone()),
                plan.host_service_accounts(),
            )
            .await?;
            // Children are watched, so this is only a safety net against missed events and
            // drift outside Kubernetes.
            Ok(Action::requeue(Duration::from_secs(if ready {
                600
            } else {
                120
            })))
        }
        Err(e) => {
            let part = if e.is_terminal() {
                PartState::failed(e.reason(), e.to_string())
            } else {
                PartState::waiting(e.reason(), e.to_string())
            };
            let credentials_failed = matches!(e, Error::Azure(_) | Error::ArmBackendUnavailable(_));
            write_error_status(&ti, &ctx, part, credentials_failed).await?;
            Err(e)
        }
    }
}

async fn converge<'a>(ti: &TenantIdentity, plan: &'a Plan, ctx: &Context) -> Result<Observed<'a>> {
    let desired = children::owned(ti, plan);
    let mut applied = Vec::with_capacity(desired.len());
    for child in &desired {
        applied.push(apply_child(&ctx.shared.client, child).await?);
    }
    prune(ti, &desired, ctx).await?;
    let host_sync = sync_host_service_account(ti, plan, ctx).await?;
    let (credentials, credential_states) = match &ti.spec.azure.identity.managed_identity {
        Some(mi) => sync_arm_credentials(ti, plan, mi, ctx).await?,
        None => children::federated_credential::observe(plan, &applied),
    };
    let (git, git_stalled) = children::git_repository::observe(ti, &applied);
    Ok(Observed {
        plan,
        credentials,
        credential_states,
        host_sync,
        git,
        git_stalled,
        error: None,
    })
}

/// Removal: release host SA annotations and (ARM backend, `deletionPolicy: Delete`) delete the
/// credentials in Azure; owned Kubernetes children go with garbage collection.
async fn cleanup(ti: Arc<TenantIdentity>, ctx: Arc<Context>) -> Result<Action> {
    release_host_annotations(&ti, None, &ctx).await?;
    if ti.spec.deletion_policy == DeletionPolicy::Delete {
        let mut names = reported_credentials(&ti);
        // A crash between the ARM write and the status write leaves a credential that status
        // does not list; its name is deterministic, so include what the spec implies, unless the
        // object was refused (then it never wrote anything).
        if !refused(&ti)
            && let Ok(plan) = plan::resolve(&ti, &ctx.shared.settings, "https://unused.invalid/")
        {
            names.extend(plan.subjects.into_iter().map(|s| s.credential_name));
        }
        names.sort();
        names.dedup();
        // Without an ARM backend this operator never wrote a credential for a tenant that
        // reported none, so there is nothing to delete and deletion must not hang.
        let never_written = ctx.shared.arm.is_none() && reported_credentials(&ti).is_empty();
        if !never_written {
            delete_arm_credentials(&ti, &ctx, names).await?;
        }
    }
    Ok(Action::await_change())
}

/// Run the controller until `shutdown` resolves.
pub async fn run(
    shared: Arc<Shared>,
    shutdown: BoxFuture<'static, ()>,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let client = shared.client.clone();
    let tenants: Api<Guarded> = Api::all(client.clone());
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let controller = Controller::new(tenants, watcher::Config::default().any_semantic());
    let store = controller.store();

    let mut controller = controller.owns(
        Api::<k8s_openapi::api::core::v1::ConfigMap>::all(client.clone()),
        owned.clone(),
    );
    for resource in [
        children::git_repository::resource(),
        children::kustomization::resource(),
        children::federated_credential::resource(),
    ] {
        if kind_served(&client, &resource).await {
            controller = controller.owns_with(
                Api::<DynamicObject>::all_with(client.clone(), &resource),
                resource,
                owned.clone(),
            );
        } else {
            warn!(kind = %resource.kind, api_version = %resource.api_version, "kind not served; TenantIdentities that need it report DependencyMissing (restart the operator after installing it)");
        }
    }
    // Host ServiceAccounts are not ours; map any SA event to the tenants of its namespace that
    // care: the Shared-mode workload SA, or our own `<name>-git` child.
    let sa_store = store.clone();
    controller = controller.watches(
        Api::<ServiceAccount>::all(client.clone()),
        watcher::Config::default().any_semantic(),
        move |sa| {
            let ns = sa.namespace();
            let name = sa.name_any();
            sa_store
                .state()
                .into_iter()
                .filter(|g| {
                    valid(g).is_some_and(|t| {
                        t.namespace() == ns
                            && (plan::workload_service_account(t).as_deref() == Some(name.as_str())
                                || names::git_service_account(&t.name_any()) == name)
                    })
                })
                .map(|t| ObjectRef::from_obj(&*t))
                .collect::<Vec<_>>()
        },
    );
    if shared.settings.require_namespace_grant {
        let ns_store = store.clone();
        controller = controller.watches(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default().any_semantic(),
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

    let ready_store = store.clone();
    // `Store::wait_until_ready` keeps a single waker and the controller's runner waits on it too,
    // so a second waiter may never be woken; poll the memoized result instead.
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if let Some(Ok(())) = ready_store.wait_until_ready().now_or_never() {
                on_ready();
                return;
            }
        }
    });
    let ctx = Arc::new(Context {
        shared,
        store,
        backoffs: Mutex::new(HashMap::new()),
    });
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
}

async fn kind_served(client: &Client, resource: &kube::api::ApiResource) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), resource);
    api.list_metadata(&ListParams::default().limit(1))
        .await
        .is_ok()
}
