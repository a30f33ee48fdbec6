//! Kubernetes glue: the reconcile pipeline around the pure steps (docs/architecture.md).
//!
//! read → validate (pure) → isolate → resolve issuer → plan (pure) → apply children (SSA) →
//! prune → host ServiceAccount → credential backend → summarize (pure) → patch status, once.
//!
//! This module holds the pipeline; `run` wires the controller and its watches from the child
//! table; the I/O steps live in `owned` (apply and prune children), `host_service_account` and
//! `status_writer`; credential backends in `crate::backends`.

pub mod cache;
mod deploy_service_account;
mod host_service_account;
mod owned;
mod run;
mod status_writer;
mod watch_health;

pub use run::{Probes, run};

use host_service_account::{release_host_annotations, sync_host_service_account};
use owned::{apply_child, prune};
use status_writer::{record_write_target, report_unreadable, write_status};

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use k8s_openapi::{api::core::v1::Namespace, apimachinery::pkg::apis::meta::v1::OwnerReference};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::ObjectMeta,
    core::DeserializeGuard,
    runtime::{
        controller::Action,
        events::Recorder,
        finalizer::{self, finalizer},
        reflector::{ObjectRef, Store},
    },
};
use tenant_identity_crd::{DeletionPolicy, TenantIdentity, conditions::Status, kinds::ChildKind};
use tracing::{debug, info, warn};

use cache::{Caches, Lookup};

use crate::{
    backends::{Backends, Binding, SyncInput},
    children::{self, Observation},
    error::{Error, Result},
    isolation,
    issuer::IssuerSource,
    metrics::{self, Metrics},
    names::{self, FINALIZER},
    plan::{self, Plan, Settings, SpecError, Teardown, Validated},
    status::{self, Failure, Observed, Outcome},
    verify::{CheckRequest, Verifier},
};

/// What lives as long as the process (survives a lost and regained lease).
pub struct Services {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub issuer: IssuerSource,
    pub backends: Backends,
    pub verifier: Verifier,
    /// Reconciles in flight at once (`--max-concurrent-reconciles`).
    pub concurrency: u16,
    /// Events closer together than this are one reconcile (`--reconcile-debounce`).
    pub debounce: Duration,
}

/// Per controller run: the process's services plus this run's cache.
pub struct Context {
    pub services: Arc<Services>,
    pub store: Store<Guarded>,
    pub caches: Arc<Caches>,
    /// Per object (namespace, name): consecutive failures (how many, and the delay they have
    /// grown to) until a success. Entries of objects gone from the cache are dropped.
    backoffs: Mutex<HashMap<(String, String), (u32, ExponentialBackoff)>>,
}

/// A transient failure ([`Error::is_transient`]) of a Ready tenant is retried quietly this many
/// times in a row (about 2 + 4 + 8 s of backoff) before status and an event report it.
pub const TRANSIENT_FAILURES_BEFORE_REPORT: u32 = 3;

impl Context {
    fn new(services: Arc<Services>, store: Store<Guarded>, caches: Arc<Caches>) -> Self {
        Self {
            services,
            store,
            caches,
            backoffs: Mutex::new(HashMap::new()),
        }
    }

    fn client(&self) -> Client {
        self.services.client.clone()
    }

    /// Valid TenantIdentities of namespace `ns` in the cache (through the index).
    fn tenants_in(&self, ns: &str) -> Vec<Arc<Guarded>> {
        self.caches
            .tenants
            .in_namespace(ns)
            .into_iter()
            .filter_map(|name| self.store.get(&ObjectRef::new(&name).within(ns)))
            .collect()
    }

    /// TenantIdentities in the cache naming `client_id` (through the index).
    fn tenants_with_client_id(&self, client_id: &str) -> Vec<Arc<Guarded>> {
        self.caches
            .tenants
            .with_client_id(client_id)
            .into_iter()
            .filter_map(|(ns, name)| self.store.get(&ObjectRef::new(&name).within(&ns)))
            .collect()
    }

    fn next_backoff(&self, key: (String, String)) -> Duration {
        // A poisoned lock only means another reconcile panicked mid-insert; the map is still usable.
        let mut backoffs = self.backoffs.lock().unwrap_or_else(|e| e.into_inner());
        if !backoffs.contains_key(&key) {
            // Only failing objects have entries: a cheap moment to drop those of deleted ones.
            backoffs
                .retain(|(ns, name), _| self.store.get(&ObjectRef::new(name).within(ns)).is_some());
        }
        let (failures, backoff) = backoffs.entry(key).or_insert_with(|| {
            (
                0,
                ExponentialBuilder::new()
                    .with_min_delay(Duration::from_secs(2))
                    .with_max_delay(Duration::from_secs(300))
                    .with_factor(2.0)
                    .with_jitter()
                    .without_max_times()
                    .build(),
            )
        });
        *failures = failures.saturating_add(1);
        backoff.next().unwrap_or(Duration::from_secs(300))
    }

    /// Failures in a row of object `key` before this reconcile.
    fn failures(&self, key: &(String, String)) -> u32 {
        self.backoffs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .map_or(0, |(failures, _)| *failures)
    }

    fn reset_backoff(&self, key: &(String, String)) {
        self.backoffs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Cleanup that garbage collection cannot do needs a finalizer: releasing the annotations on the
/// vcluster's host ServiceAccounts (the workload one in Shared mode, the synced ones in
/// PerServiceAccount mode; none is ours to own) and whatever the credential backend says it must
/// remove itself.
fn needs_finalizer(ti: &TenantIdentity, backends: &Backends) -> bool {
    !children::host_service_account::wanted(ti).is_empty()
        || plan::declared_backend(ti).is_some_and(|b| backends.get(&b).needs_finalizer())
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
    let m = &ctx.services.metrics;
    let timer = m
        .reconcile_duration
        .with_label_values(&[] as &[&str])
        .start_timer();
    let key = backoff_key(ti.meta());
    let ns = ti.namespace().unwrap_or_default();
    let api: Api<TenantIdentity> = Api::namespaced(ctx.client(), &ns);
    let has_finalizer = ti.finalizers().iter().any(|f| f == FINALIZER);
    let ti_ref = ti.clone();
    let result = if needs_finalizer(&ti, &ctx.services.backends) || has_finalizer {
        let ctx2 = ctx.clone();
        finalizer(&api, FINALIZER, ti, |event| async move {
            match event {
                finalizer::Event::Apply(ti) => apply(ti, ctx2).await,
                finalizer::Event::Cleanup(ti) => cleanup(ti, ctx2).await,
            }
        })
        .await
        .or_else(|e| match e {
            finalizer::Error::ApplyFailed(e) | finalizer::Error::CleanupFailed(e) => Err(e),
            // Harmless races, retried quietly: the object changed between our read and the
            // finalizer patch (its JSON-patch test fails with 422), or it was already gone when
            // the finalizer was to be removed.
            finalizer::Error::AddFinalizer(kube::Error::Api(ae)) if ae.code == 422 => {
                debug!(tenant = %ObjectRef::from_obj(ti_ref.as_ref()), "object changed while adding the finalizer; retrying");
                Ok(Action::requeue(Duration::from_millis(200)))
            }
            finalizer::Error::RemoveFinalizer(kube::Error::Api(ae)) if ae.code == 404 => {
                Ok(Action::await_change())
            }
            other => Err(Error::FinalizerError(other.to_string())),
        })
    } else if ti.meta().deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else {
        apply(ti, ctx.clone()).await
    };
    timer.observe_duration();
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
    // The gauges count every cached tenant: at most once a second, so a reconcile's cost does
    // not grow with the fleet.
    if m.objects_due() {
        let state = ctx.store.state();
        m.set_objects(state.iter().filter_map(|g| valid(g)).map(|t| {
            t.status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or(&[])
        }));
    }
    result
}

pub fn error_policy(guard: Arc<Guarded>, error: &Error, ctx: Arc<Context>) -> Action {
    if error.is_transient() {
        info!(tenant = %ObjectRef::from_obj(&*guard), reason = error.reason(), error = %error, "reconcile failed; retrying");
    } else {
        warn!(
            tenant = %ObjectRef::from_obj(&*guard),
            reason = error.reason(),
            error = %error,
            "reconcile failed"
        );
    }
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

/// How the pipeline ended, before it is summarized into status.
enum Ended {
    /// The spec is invalid: keep what exists, report (an edit may fix it).
    Invalid(SpecError),
    /// The tenant must not hold the identity: what existed was revoked.
    Revoked(SpecError),
    Converged(Box<Observed>),
}

/// One reconcile of an accepted or refused object: run the pipeline, then write status once.
async fn apply(ti: Arc<TenantIdentity>, ctx: Arc<Context>) -> Result<Action> {
    if ti.spec.suspend {
        info!(tenant = %ObjectRef::from_obj(&*ti), "suspended; skipping");
        // A status says so for an object never reconciled; one suspended later keeps its own.
        if ti.status.is_none() {
            write_status(&ti, &ctx, status::summarize(Outcome::Suspended, None)).await?;
        }
        return Ok(Action::await_change());
    }
    let ended = pipeline(&ti, &ctx).await;
    if let Err(e) = &ended
        && e.is_transient()
        && ti.status.as_ref().is_some_and(|s| {
            tenant_identity_crd::conditions::is_true(
                &s.conditions,
                tenant_identity_crd::conditions::READY,
            )
        })
        && ctx.failures(&backoff_key(ti.meta())) + 1 < TRANSIENT_FAILURES_BEFORE_REPORT
    {
        // What was Ready still is, as far as anyone can tell: retried with backoff, reported
        // (status, event) only if it persists.
        debug!(tenant = %ObjectRef::from_obj(&*ti), error = %e, "transient failure; retrying before reporting it");
        return ended.map(|_| Action::await_change());
    }
    let failure;
    let outcome = match &ended {
        Ok(Ended::Invalid(e)) => Outcome::Refused(e),
        Ok(Ended::Revoked(e)) => Outcome::Revoked(e),
        Ok(Ended::Converged(o)) => Outcome::Converged(o),
        Err(e) => {
            failure = Failure {
                reason: e.reason().to_string(),
                message: e.to_string(),
                terminal: e.is_terminal(),
                credentials: e.is_backend(),
            };
            Outcome::Failed(&failure)
        }
    };
    let summary = status::summarize(outcome, ti.status.as_ref());
    let ready = summary.is_ready();
    write_status(&ti, &ctx, summary).await?;
    match ended? {
        Ended::Invalid(_) => Ok(Action::await_change()),
        // Claims change when other objects go away; look again now and then.
        Ended::Revoked(_) => Ok(Action::requeue(Duration::from_secs(120))),
        // Children are watched, so this is only a safety net against missed events and drift
        // outside Kubernetes; sooner when a verification is due.
        Ended::Converged(o) => {
            let resync = Duration::from_secs(if ready { 600 } else { 120 });
            let due = o.verification.next_check.unwrap_or(resync);
            Ok(Action::requeue(resync.min(due)))
        }
    }
}

async fn pipeline(ti: &TenantIdentity, ctx: &Context) -> Result<Ended> {
    let validated = match plan::validate(ti, &ctx.services.settings) {
        Ok(v) => v,
        Err(e) => return Ok(Ended::Invalid(e)),
    };
    if let Some(refusal) = isolate(ti, &validated, ctx).await? {
        revoke(ti, ctx).await?;
        return Ok(Ended::Revoked(refusal));
    }
    let issuer = ctx
        .services
        .issuer
        .resolve(validated.spec_issuer(), &ctx.services.client)
        .await?;
    let plan = validated.with_issuer(issuer);
    let backend = ctx.services.backends.get(&plan.backend);
    if let Binding::Refused(refusal) = backend.bind(&plan).await? {
        revoke(ti, ctx).await?;
        return Ok(Ended::Revoked(refusal));
    }
    let Some(owner) = ti.controller_owner_ref(&()) else {
        return Ok(Ended::Invalid(SpecError::invalid(
            "metadata.uid: only objects read from the API server can own children",
        )));
    };
    Ok(Ended::Converged(Box::new(
        converge(ti, plan, &owner, ctx).await?,
    )))
}

/// The isolation rules: a refusal means the tenant must not hold the identity.
async fn isolate(
    ti: &TenantIdentity,
    validated: &Validated,
    ctx: &Context,
) -> Result<Option<SpecError>> {
    let claims = ctx.tenants_with_client_id(validated.client_id());
    let others = claims
        .iter()
        .filter_map(|g| valid(g))
        .filter(|t| t.uid() != ti.uid());
    if let Some(e) = isolation::claim_conflict(ti, others) {
        return Ok(Some(e));
    }
    if ctx.services.settings.require_namespace_grant {
        let ns = validated.namespace();
        let grant = match ctx.caches.namespace(ns) {
            Lookup::Found(namespace) => namespace
                .annotations()
                .get(names::GRANT_ANNOTATION)
                .cloned(),
            Lookup::Absent | Lookup::Unknown => {
                let namespaces: Api<Namespace> = Api::all(ctx.client());
                crate::read::by_name(&namespaces, ns)
                    .await
                    .map_err(Error::KubernetesApiError)?
                    .and_then(|n| n.annotations().get(names::GRANT_ANNOTATION).cloned())
            }
        };
        if let Err(e) = isolation::grant_check(validated.client_id(), ns, grant.as_deref()) {
            return Ok(Some(e));
        }
    }
    Ok(None)
}

/// Take away everything a refused tenant had: children, credentials, host annotations.
async fn revoke(ti: &TenantIdentity, ctx: &Context) -> Result<()> {
    prune(ti, &[], ctx).await?;
    let teardown = Teardown::of(ti);
    if let Some(backend) = &teardown.backend {
        ctx.services.backends.get(backend).delete(&teardown).await?;
    }
    release_host_annotations(ti, None, ctx).await?;
    Ok(())
}

async fn converge(
    ti: &TenantIdentity,
    plan: Plan,
    owner: &OwnerReference,
    ctx: &Context,
) -> Result<Observed> {
    let desired = children::owned(&plan, owner);
    // Children do not depend on each other: applied concurrently.
    let applied: Vec<_> = futures::future::try_join_all(
        desired
            .iter()
            .map(|child| apply_child(ctx, child, &owner.uid)),
    )
    .await?;
    prune(ti, &desired, ctx).await?;
    deploy_service_account::ensure_deploy_service_account(&plan, &applied, ctx).await?;
    let host_sync = sync_host_service_account(ti, &plan, ctx).await?;
    let backend = ctx.services.backends.get(&plan.backend);
    if let Some(target) = backend.write_target(&plan) {
        record_write_target(ti, ctx, &target).await?;
    }
    let credentials = backend
        .sync(SyncInput {
            plan: &plan,
            applied: &applied,
            previous: ti.status.as_ref(),
            requested: names::reconcile_requested(ti),
        })
        .await?;
    let git = match children::observe(ChildKind::GitRepository, &plan, &applied) {
        Some(Observation::GitSource(git)) => Some(git),
        _ => None,
    };
    let verification = ctx
        .services
        .verifier
        .verify(CheckRequest {
            ti,
            plan: &plan,
            prerequisites_ready: host_sync.status == Status::True
                && credentials.part.status == Status::True,
            rewritten: credentials.rewritten,
        })
        .await;
    Ok(Observed {
        plan,
        credentials,
        host_sync,
        git,
        verification,
    })
}

/// Removal: release host SA annotations and (`deletionPolicy: Delete`) have the credential
/// backend remove what it wrote; owned Kubernetes children go with garbage collection.
async fn cleanup(ti: Arc<TenantIdentity>, ctx: Arc<Context>) -> Result<Action> {
    release_host_annotations(&ti, None, &ctx).await?;
    if ti.spec.deletion_policy == DeletionPolicy::Delete {
        let teardown = Teardown::of(&ti);
        if let Some(backend) = &teardown.backend {
            ctx.services.backends.get(backend).delete(&teardown).await?;
        }
    }
    Ok(Action::await_change())
}
