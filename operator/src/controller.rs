//! Kubernetes glue: the reconcile pipeline around the pure steps.
//!
//! read → validate and isolate (pure) → resolve issuer → plan (pure) → apply children (SSA) →
//! prune → host ServiceAccount → observe backends → compute status (pure) → patch status.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures::{FutureExt, StreamExt, future::BoxFuture};
use k8s_openapi::{
    api::core::v1::{Namespace, ServiceAccount},
    apimachinery::pkg::apis::meta::v1::Time,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource, ResourceExt,
    api::{
        ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, Patch, PatchParams,
        Preconditions,
    },
    core::{DeserializeGuard, error_boundary::InvalidObject},
    runtime::{
        Controller,
        controller::Action,
        events::{Event, EventType, Recorder},
        finalizer::{self, finalizer},
        reflector::{ObjectRef, Store},
        watcher,
    },
};
use serde_json::json;
use std::sync::Mutex;
use tenant_identity_crd::{
    DeletionPolicy, Mode, TenantIdentity, TenantIdentityStatus,
    conditions::{self, ALL_TYPES, Status},
    reasons,
};
use tracing::{debug, info, warn};

use crate::{
    azure::{ArmBackend, DesiredCredential, ManagedIdentityRef},
    children::{self, Child, host_service_account},
    error::{Error, Result},
    isolation,
    issuer::IssuerSource,
    metrics::{self, Metrics},
    names::{self, FIELD_MANAGER, FINALIZER},
    plan::{self, Plan, Settings, SpecError},
    status::{self, ComputedStatus, CredentialState, Observed, PartState},
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
        return Action::requeue(Duration::from_secs(600));
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
        None => observe_credentials(plan, &applied),
    };
    let (git, git_stalled) = observe_git(ti, &applied);
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

async fn apply_child(client: &Client, child: &Child) -> Result<DynamicObject> {
    let ns = child.object.namespace().unwrap_or_default();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &child.resource);
    api.patch(
        &child.name(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&child.object),
    )
    .await
    .map_err(|e| match e {
        kube::Error::Api(ae) if ae.code == 404 && !child.resource.group.is_empty() => {
            Error::DependencyMissing {
                kind: child.resource.kind.clone(),
                api_version: child.resource.api_version.clone(),
            }
        }
        e => Error::KubernetesApiError(e),
    })
}

/// Delete owned children the spec no longer asks for. Only objects carrying our tenant label
/// AND a controller reference to this TenantIdentity's uid are candidates.
async fn prune(ti: &TenantIdentity, desired: &[Child], ctx: &Context) -> Result<()> {
    let ns = ti.namespace().unwrap_or_default();
    let uid = ti.uid().unwrap_or_default();
    let keep: BTreeSet<(String, String)> = desired
        .iter()
        .map(|c| (c.resource.kind.clone(), c.name()))
        .collect();
    let selector = format!("{}={}", names::TENANT_LABEL, ti.name_any());
    let mut seen_kinds = BTreeSet::new();
    for resource in children::owned_kinds() {
        if !seen_kinds.insert(resource.kind.clone()) {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(ctx.client(), &ns, &resource);
        let list = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l,
            // Kind not installed: nothing of it can exist.
            Err(kube::Error::Api(ae)) if ae.code == 404 => continue,
            Err(e) => return Err(Error::KubernetesApiError(e)),
        };
        for obj in list.items {
            let ours = obj
                .owner_references()
                .iter()
                .any(|o| o.uid == uid && o.controller == Some(true));
            if !ours || keep.contains(&(resource.kind.clone(), obj.name_any())) {
                continue;
            }
            info!(tenant = %ti.name_any(), kind = %resource.kind, name = %obj.name_any(), "deleting child no longer wanted");
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: obj.uid(),
                    resource_version: None,
                }),
                ..DeleteParams::background()
            };
            match api.delete(&obj.name_any(), &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(ae)) if ae.code == 404 || ae.code == 409 => {}
                Err(e) => return Err(Error::KubernetesApiError(e)),
            }
        }
    }
    Ok(())
}

/// Shared mode: put our two annotations on the host workload SA if it exists; in any mode,
/// release them from SAs we annotated before and no longer want.
async fn sync_host_service_account(
    ti: &TenantIdentity,
    plan: &Plan,
    ctx: &Context,
) -> Result<PartState> {
    release_host_annotations(ti, plan.workload_service_account.as_deref(), ctx).await?;
    let config_map = names::sync_rules_config_map(&plan.name);
    let Some(sa_name) = plan.workload_service_account.as_deref() else {
        return Ok(PartState::ready(
            reasons::HOST_SYNC_APPLIED,
            format!(
                "sync rules published in ConfigMap {config_map}; vcluster {} must carry them (HelmRelease valuesFrom) to sync ServiceAccounts to the host",
                plan.vcluster
            ),
        ));
    };
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client(), &plan.namespace);
    if api
        .get_opt(sa_name)
        .await
        .map_err(Error::KubernetesApiError)?
        .is_none()
    {
        return Ok(PartState::waiting(
            reasons::VIRTUAL_CLUSTER_NOT_FOUND,
            format!(
                "host ServiceAccount {}/{sa_name} does not exist: install vcluster {:?} in namespace {} (with the values in ConfigMap {config_map}), or set spec.virtualCluster.workloadServiceAccount",
                plan.namespace, plan.vcluster, plan.namespace
            ),
        ));
    }
    if let Some(patch) = host_service_account::annotations(plan) {
        let dynamic: Api<DynamicObject> = Api::namespaced_with(
            ctx.client(),
            &plan.namespace,
            &host_service_account::resource(),
        );
        dynamic
            .patch(
                sa_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(Error::KubernetesApiError)?;
    }
    Ok(PartState::ready(
        reasons::HOST_SYNC_APPLIED,
        format!(
            "workload identity annotations applied to host ServiceAccount {sa_name}; sync rules in ConfigMap {config_map}"
        ),
    ))
}

/// Release our annotations from host ServiceAccounts (those we applied to and do not own as a
/// child) except `keep` and those another TenantIdentity of the namespace still wants.
async fn release_host_annotations(
    ti: &TenantIdentity,
    keep: Option<&str>,
    ctx: &Context,
) -> Result<()> {
    let ns = ti.namespace().unwrap_or_default();
    let wanted_by_others: BTreeSet<String> = ctx
        .tenants()
        .iter()
        .filter_map(|g| valid(g))
        .filter(|t| t.namespace().as_deref() == Some(ns.as_str()) && t.uid() != ti.uid())
        .filter(|t| t.meta().deletion_timestamp.is_none())
        .filter_map(workload_service_account)
        .collect();
    let api: Api<ServiceAccount> = Api::namespaced(ctx.client(), &ns);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(Error::KubernetesApiError)?;
    for sa in list.items {
        let name = sa.name_any();
        let applied_by_us = sa.managed_fields().iter().any(|m| {
            m.manager.as_deref() == Some(FIELD_MANAGER) && m.operation.as_deref() == Some("Apply")
        });
        let is_child = sa
            .owner_references()
            .iter()
            .any(|o| o.kind == "TenantIdentity");
        if !applied_by_us
            || is_child
            || keep == Some(name.as_str())
            || wanted_by_others.contains(&name)
        {
            continue;
        }
        info!(tenant = %ti.name_any(), service_account = %name, "releasing workload identity annotations");
        let dynamic: Api<DynamicObject> =
            Api::namespaced_with(ctx.client(), &ns, &host_service_account::resource());
        match dynamic
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&host_service_account::release(&ns, &name)),
            )
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(ae)) if ae.code == 404 => {}
            Err(e) => return Err(Error::KubernetesApiError(e)),
        }
    }
    Ok(())
}

/// The host SA a Shared-mode TenantIdentity annotates, without needing the issuer.
fn workload_service_account(ti: &TenantIdentity) -> Option<String> {
    let vc = &ti.spec.virtual_cluster;
    (vc.mode == Mode::Shared).then(|| {
        vc.workload_service_account
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| {
                names::default_workload_service_account(
                    vc.name.as_deref().unwrap_or(&ti.name_any()),
                )
            })
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

fn managed_identity_ref(mi: &tenant_identity_crd::ManagedIdentityRef) -> ManagedIdentityRef {
    ManagedIdentityRef {
        subscription_id: mi.subscription_id.clone(),
        resource_group: mi.resource_group.clone(),
        name: mi.name.clone(),
    }
}

fn arm(ctx: &Context) -> Result<&ArmBackend> {
    ctx.shared.arm.as_ref().ok_or_else(|| {
        Error::ArmBackendUnavailable(
            "spec.azure.identity.managedIdentity needs the operator's own Azure workload identity (AZURE_CLIENT_ID, AZURE_TENANT_ID, AZURE_FEDERATED_TOKEN_FILE): set azure.workloadIdentity.clientId in the Helm values, or use azureServiceOperator".into(),
        )
    })
}

/// Credential names this TenantIdentity reported as its own.
fn reported_credentials(ti: &TenantIdentity) -> Vec<String> {
    ti.status
        .as_ref()
        .map(|s| {
            s.subjects
                .iter()
                .map(|x| x.credential_name.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn refused(ti: &TenantIdentity) -> bool {
    ti.status
        .as_ref()
        .and_then(|s| conditions::find(&s.conditions, conditions::READY))
        .is_some_and(|c| {
            c.reason == reasons::IDENTITY_CLAIM_CONFLICT
                || c.reason == reasons::IDENTITY_NOT_GRANTED
        })
}

async fn delete_arm_credentials(
    ti: &TenantIdentity,
    ctx: &Context,
    names: Vec<String>,
) -> Result<()> {
    let Some(mi) = &ti.spec.azure.identity.managed_identity else {
        return Ok(());
    };
    if names.is_empty() {
        return Ok(());
    }
    arm(ctx)?
        .delete(&managed_identity_ref(mi), &names)
        .await
        .map_err(Error::from)
}

/// ARM backend: make the identity carry exactly our desired credentials.
async fn sync_arm_credentials(
    ti: &TenantIdentity,
    plan: &Plan,
    mi: &tenant_identity_crd::ManagedIdentityRef,
    ctx: &Context,
) -> Result<(PartState, Vec<(String, CredentialState)>)> {
    let backend = arm(ctx)?;
    let desired: Vec<DesiredCredential> = plan
        .subjects
        .iter()
        .map(|s| DesiredCredential {
            name: s.credential_name.clone(),
            issuer: plan.issuer.clone(),
            subject: s.subject.clone(),
            audience: plan.audience.clone(),
        })
        .collect();
    let stale: Vec<String> = reported_credentials(ti)
        .into_iter()
        .filter(|n| !desired.iter().any(|d| &d.name == n))
        .collect();
    let report = backend
        .sync(&managed_identity_ref(mi), &desired, &stale)
        .await?;
    if report.writes > 0 {
        info!(tenant = %ti.name_any(), writes = report.writes, "federated credentials written to Azure");
    }
    let states = desired
        .iter()
        .map(|d| (d.name.clone(), CredentialState::Ready))
        .collect();
    Ok((
        PartState::ready(
            reasons::CREDENTIALS_READY,
            format!(
                "{} federated credential(s) on identity {} ({} of 20 used)",
                desired.len(),
                mi.name,
                report.total
            ),
        ),
        states,
    ))
}

/// Mirror the credential backend's readiness.
fn observe_credentials(
    plan: &Plan,
    applied: &[DynamicObject],
) -> (PartState, Vec<(String, CredentialState)>) {
    let states: Vec<(String, CredentialState)> = applied
        .iter()
        .filter(|o| {
            o.types
                .as_ref()
                .is_some_and(|t| t.kind == "FederatedIdentityCredential")
        })
        .map(|o| (o.name_any(), aso_state(o)))
        .collect();
    let total = plan.subjects.len();
    let ready = states
        .iter()
        .filter(|(_, s)| *s == CredentialState::Ready)
        .count();
    let part = if let Some((name, CredentialState::Failed(msg))) = states
        .iter()
        .find(|(_, s)| matches!(s, CredentialState::Failed(_)))
    {
        PartState::waiting(
            reasons::CREDENTIALS_FAILED,
            format!("FederatedIdentityCredential {name}: {msg}"),
        )
    } else if ready == total {
        PartState::ready(
            reasons::CREDENTIALS_READY,
            format!("{total} federated credential(s) Ready in Azure Service Operator"),
        )
    } else {
        PartState::waiting(
            reasons::CREDENTIALS_PENDING,
            format!(
                "waiting for Azure Service Operator to report Ready on {} of {total} FederatedIdentityCredential(s)",
                total - ready
            ),
        )
    };
    (part, states)
}

fn ready_condition(obj: &DynamicObject, type_: &str) -> Option<serde_json::Value> {
    obj.data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(|t| t.as_str()) == Some(type_))
                .cloned()
        })
}

fn str_field<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or_default()
}

/// The condition is about the current spec (not an older generation).
fn current(obj: &DynamicObject, condition: &serde_json::Value) -> bool {
    let generation = obj.metadata.generation.unwrap_or(0);
    condition
        .get("observedGeneration")
        .and_then(|g| g.as_i64())
        .or_else(|| {
            obj.data
                .pointer("/status/observedGeneration")
                .and_then(|g| g.as_i64())
        })
        .is_none_or(|g| g >= generation)
}

fn aso_state(obj: &DynamicObject) -> CredentialState {
    let Some(ready) = ready_condition(obj, "Ready") else {
        return CredentialState::Pending("waiting for Azure Service Operator".into());
    };
    let message = str_field(&ready, "message").to_string();
    if !current(obj, &ready) {
        return CredentialState::Pending(
            "Azure Service Operator has not seen the latest spec yet".into(),
        );
    }
    match str_field(&ready, "status") {
        "True" => CredentialState::Ready,
        "False" if str_field(&ready, "severity") == "Error" => {
            CredentialState::Failed(if message.is_empty() {
                str_field(&ready, "reason").to_string()
            } else {
                message
            })
        }
        _ => CredentialState::Pending(if message.is_empty() {
            "waiting for Azure Service Operator".into()
        } else {
            message
        }),
    }
}

/// Mirror the GitRepository's Ready (and Stalled) into GitSourceReady.
fn observe_git(
    ti: &TenantIdentity,
    applied: &[DynamicObject],
) -> (Option<PartState>, Option<(String, String)>) {
    if ti.spec.git.is_none() {
        return (None, None);
    }
    let Some(repo) = applied
        .iter()
        .find(|o| o.types.as_ref().is_some_and(|t| t.kind == "GitRepository"))
    else {
        return (None, None);
    };
    let stalled = ready_condition(repo, "Stalled")
        .filter(|c| str_field(c, "status") == "True")
        .map(|c| {
            (
                str_field(&c, "reason").to_string(),
                str_field(&c, "message").to_string(),
            )
        });
    if let Some((reason, message)) = &stalled {
        return (Some(PartState::failed(reason, message.clone())), stalled);
    }
    let part = match ready_condition(repo, "Ready") {
        Some(c) if current(repo, &c) => {
            let reason = str_field(&c, "reason");
            let message = str_field(&c, "message").to_string();
            match str_field(&c, "status") {
                "True" => PartState::ready(reason, message),
                "False" => PartState::waiting(reason, message),
                _ => PartState::unknown(reason, message),
            }
        }
        _ => PartState::unknown(
            reasons::PROGRESSING,
            "waiting for Flux source-controller to reconcile the GitRepository",
        ),
    };
    (Some(part), None)
}

async fn write_error_status(
    ti: &TenantIdentity,
    ctx: &Context,
    part: PartState,
    credentials_failed: bool,
) -> Result<()> {
    let type_ = if part.terminal {
        conditions::STALLED
    } else {
        conditions::RECONCILING
    };
    let mut desired = vec![
        conditions::DesiredCondition::new(
            conditions::READY,
            Status::False,
            &part.reason,
            &part.message,
        ),
        conditions::DesiredCondition::new(type_, Status::True, &part.reason, &part.message),
    ];
    if credentials_failed {
        desired.push(conditions::DesiredCondition::new(
            conditions::FEDERATED_CREDENTIALS_READY,
            Status::False,
            &part.reason,
            &part.message,
        ));
    }
    let computed = ComputedStatus {
        conditions: desired,
        subjects: ti
            .status
            .as_ref()
            .map(|s| s.subjects.clone())
            .unwrap_or_default(),
    };
    let previous = ti.status.as_ref();
    write_status(
        ti,
        ctx,
        computed,
        previous.and_then(|s| s.issuer.clone()),
        previous
            .map(|s| s.host_service_accounts.clone())
            .unwrap_or_default(),
    )
    .await
}

/// Patch status with SSA on the status subresource (so a GitOps tool owning the spec never
/// conflicts with us), skipping the call when nothing changed, and publish an event when the
/// Ready condition changes.
async fn write_status(
    ti: &TenantIdentity,
    ctx: &Context,
    computed: ComputedStatus,
    issuer: Option<String>,
    host_service_accounts: Vec<String>,
) -> Result<()> {
    let now = Time(Timestamp::now());
    let previous = ti.status.clone().unwrap_or_default();
    let merged = conditions::merge(
        &previous.conditions,
        &computed.conditions,
        ti.metadata.generation,
        &now,
    );
    let requested_at = ti
        .annotations()
        .get(names::REQUESTED_AT_ANNOTATION)
        .cloned()
        .or(previous.last_handled_reconcile_at.clone());
    let status = TenantIdentityStatus {
        observed_generation: ti.metadata.generation,
        conditions: merged,
        issuer,
        subjects: computed.subjects,
        host_service_accounts,
        last_handled_reconcile_at: requested_at,
    };
    if status == previous {
        debug!(tenant = %ti.name_any(), "status unchanged");
        return Ok(());
    }
    let mut ours = status.clone();
    ours.conditions
        .retain(|c| ALL_TYPES.contains(&c.type_.as_str()));
    let patch = json!({
        "apiVersion": TenantIdentity::api_version(&()),
        "kind": TenantIdentity::kind(&()),
        "status": ours,
    });
    let api: Api<TenantIdentity> =
        Api::namespaced(ctx.client(), &ti.namespace().unwrap_or_default());
    api.patch_status(
        &ti.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::KubernetesApiError)?;

    let before = conditions::find(&previous.conditions, conditions::READY);
    let after = conditions::find(&status.conditions, conditions::READY);
    if let Some(after) = after
        && before.is_none_or(|b| b.status != after.status || b.reason != after.reason)
    {
        let event = Event {
            type_: if after.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: after.reason.clone(),
            note: Some(after.message.chars().take(1000).collect()),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = ctx
            .shared
            .recorder
            .publish(&event, &ti.object_ref(&()))
            .await
        {
            warn!(tenant = %ti.name_any(), error = %e, "could not publish event");
        }
    }
    Ok(())
}

/// A TenantIdentity the operator cannot read: say so in its status (Ready=False, Stalled) and
/// with an event, once; the rest of the tenants keep being reconciled.
async fn report_unreadable(invalid: &InvalidObject, ctx: &Context) -> Result<()> {
    let ns = invalid.metadata.namespace.clone().unwrap_or_default();
    let name = invalid.metadata.name.clone().unwrap_or_default();
    warn!(tenant = %format!("{ns}/{name}"), error = %invalid.error, "TenantIdentity cannot be read");
    let resource = ApiResource::erase::<TenantIdentity>(&());
    let api: Api<DynamicObject> = Api::namespaced_with(ctx.client(), &ns, &resource);
    let Some(live) = api
        .get_opt(&name)
        .await
        .map_err(Error::KubernetesApiError)?
    else {
        return Ok(());
    };
    let message = format!(
        "this operator version cannot read the object: {}; fix the spec or upgrade the operator",
        invalid.error
    );
    let generation = live.metadata.generation;
    let already = live
        .data
        .pointer("/status/conditions")
        .and_then(|c| c.as_array())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(|t| t.as_str()) == Some(conditions::READY)
                    && c.get("reason").and_then(|t| t.as_str()) == Some(reasons::INVALID_SPEC)
                    && c.get("message").and_then(|t| t.as_str()) == Some(message.as_str())
                    && c.get("observedGeneration").and_then(|g| g.as_i64()) == generation
            })
        });
    if already {
        return Ok(());
    }
    let refused = status::refused(&SpecError::invalid(message.clone()));
    let now = Time(Timestamp::now());
    let conditions = conditions::merge(&[], &refused.conditions, generation, &now);
    let patch = json!({
        "apiVersion": TenantIdentity::api_version(&()),
        "kind": TenantIdentity::kind(&()),
        "status": {"observedGeneration": generation, "conditions": conditions},
    });
    api.patch_status(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await
    .map_err(Error::KubernetesApiError)?;
    let event = Event {
        type_: EventType::Warning,
        reason: reasons::INVALID_SPEC.into(),
        note: Some(message.chars().take(1000).collect()),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx
        .shared
        .recorder
        .publish(&event, &live.object_ref(&resource))
        .await
    {
        warn!(error = %e, "could not publish event");
    }
    Ok(())
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
                            && (workload_service_account(t).as_deref() == Some(name.as_str())
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
