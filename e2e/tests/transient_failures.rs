//! No storms: a failure of the moment (the API server answering 500 to a few writes) never turns
//! a Ready tenant False nor emits a Warning event; the operator retries with backoff. Only a
//! failure that persists past a bound is reported, and the tenant recovers on its own after.
//! A lost race on the finalizer (422 adding it, 404 removing it) is no failure at all.
//!
//! The failures are injected into the emulator; against a real cluster the injection step is
//! skipped with a printed reason.

use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams};
use serde_json::json;
use tenant_identity_crd::TenantIdentity;
use tenant_identity_e2e::{
    DEFAULT_TIMEOUT, TestEnv, namespace::random_guid, objects::*, simulate, wait_for,
};

/// More failures in a row than the operator rides out quietly (3, docs/architecture.md
/// "Failures"), so the last ones are reported.
const PERSISTENT: u32 = 4;

/// Only the operator's requests fail (its User-Agent), never the suite's.
fn fault(times: u32) -> kube_emulator::Fault {
    kube_emulator::Fault {
        verb: "APPLY".into(),
        resource: "configmaps".into(),
        user_agent_prefix: Some("tenant-identity-operator/".into()),
        // 500: kube's client retries 429, 503 and 504 itself (server-aware retry policy), so
        // those never reach the operator's own handling.
        code: 500,
        times,
    }
}

async fn ready_tenant(env: &TestEnv, name: &str) {
    simulate::helm_workload_service_account(&env.client, env.ns(), name)
        .await
        .unwrap();
    create_tenant(
        &env.client,
        env.ns(),
        name,
        shared_spec(&random_guid(), name),
    )
    .await
    .unwrap();
    simulate::converge(&env.client, env.ns(), name, DEFAULT_TIMEOUT)
        .await
        .unwrap();
}

/// Someone edits the tenant's sync-rules ConfigMap behind the operator's back, so the operator
/// must apply it again; wait until it is repaired and the tenant Ready, recording every Ready
/// state seen from the edit on.
async fn drift_and_watch(env: &TestEnv, name: &str, timeout: Duration) -> Vec<String> {
    let config_map = sync_rules_config_map(name);
    let maps = config_maps(&env.client, env.ns());
    let wanted = maps.get(&config_map).await.unwrap().data;
    maps.patch(
        &config_map,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"values.yaml": "edited: by hand\n"}})),
    )
    .await
    .unwrap();
    let seen = Mutex::new(Vec::<String>::new());
    let record = |t: &TenantIdentity| {
        if let Some(c) = condition(t, "Ready") {
            let state = format!("Ready={} {}", c.status, c.reason);
            let mut seen = seen.lock().unwrap();
            if seen.last() != Some(&state) {
                seen.push(state);
            }
        }
    };
    let api = tenants(&env.client, env.ns());
    let repaired = wait_for(
        &maps,
        &config_map,
        "the sync rules repaired",
        timeout,
        |cm| cm.data == wanted,
    );
    let watching = wait_for(&api, name, "(recording only)", timeout, |t| {
        record(t);
        false
    });
    tokio::select! {
        r = repaired => { r.unwrap(); }
        _ = watching => panic!("the tenant watch ended first"),
    }
    wait_for(&api, name, "Ready", timeout, |t| {
        record(t);
        is_ready(t)
    })
    .await
    .unwrap();
    seen.into_inner().unwrap()
}

async fn warnings(env: &TestEnv, name: &str) -> Vec<String> {
    kube::Api::<Event>::namespaced(env.client.clone(), env.ns())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            format!(
                "{}: {}",
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_failure_neither_flips_ready_nor_warns() {
    let test = "a_passing_failure_neither_flips_ready_nor_warns";
    let env = TestEnv::start("transient", &[]).await.unwrap();
    ready_tenant(&env, "team-t").await;
    let before = warnings(&env, "team-t").await;
    let injected = env.cluster.inject_fault_or_skip(test, fault(2));
    let seen = drift_and_watch(&env, "team-t", DEFAULT_TIMEOUT).await;
    if injected {
        assert_eq!(env.cluster.pending_faults(), 0, "both failures were served");
        let retried = env
            .operator
            .metric_sum(
                "tenant_identity_reconcile_errors_total",
                &[("reason", "KubernetesApiError")],
            )
            .await
            .unwrap();
        assert!(
            retried >= 2.0,
            "the failed reconciles were counted: {retried}"
        );
    }
    assert!(
        seen.iter().all(|s| s.starts_with("Ready=True")),
        "Ready never left True: {seen:?}"
    );
    assert_eq!(
        warnings(&env, "team-t").await,
        before,
        "no new Warning event"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_failure_is_reported_after_the_bound_then_recovers() {
    let test = "a_persistent_failure_is_reported_after_the_bound_then_recovers";
    let env = TestEnv::start("persistent", &[]).await.unwrap();
    ready_tenant(&env, "team-p").await;
    let before = warnings(&env, "team-p").await;
    if !env.cluster.inject_fault_or_skip(test, fault(PERSISTENT)) {
        env.finish().await;
        return;
    }
    let seen = drift_and_watch(&env, "team-p", Duration::from_secs(90)).await;
    assert!(
        seen.iter().any(|s| s == "Ready=False KubernetesApiError"),
        "the persisting failure was reported: {seen:?}"
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Ready=True IdentityReady")
    );
    let warned: Vec<String> = warnings(&env, "team-p")
        .await
        .into_iter()
        .filter(|w| !before.contains(w))
        .collect();
    assert!(
        warned.len() == 1 && warned[0].starts_with("KubernetesApiError"),
        "one Warning event for the one transition: {warned:?}"
    );
    env.finish().await;
}

/// The operator's next finalizer patch fails with `code`: kube-runtime's `finalizer` helper adds
/// and removes the finalizer with a JSON patch (`finalizer` in kube-runtime's finalizer.rs), the
/// only PATCH the operator sends for a TenantIdentity (its status and children are applies).
fn finalizer_patch_fault(code: u16) -> kube_emulator::Fault {
    kube_emulator::Fault {
        verb: "PATCH".into(),
        resource: "tenantidentities".into(),
        user_agent_prefix: Some("tenant-identity-operator/".into()),
        code,
        times: 1,
    }
}

/// The two harmless races of the finalizer are retried quietly, never reported: 422 on adding
/// it (the object changed between the operator's read and its patch, whose JSON-patch `test`
/// then fails) and 404 on removing it (someone finished the deletion first). No reconcile
/// error is counted, no Warning event emitted, no failure logged; the tenant becomes Ready, and
/// later goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finalizer_races_are_retried_quietly() {
    let test = "finalizer_races_are_retried_quietly";
    let env = TestEnv::start("finalizer-race", &[]).await.unwrap();
    let api = tenants(&env.client, env.ns());

    // Shared mode: the tenant needs the finalizer (its host ServiceAccount's annotations).
    let add_raced = env
        .cluster
        .inject_fault_or_skip(test, finalizer_patch_fault(422));
    ready_tenant(&env, "team-f").await;
    if add_raced {
        assert_eq!(env.cluster.pending_faults(), 0, "adding answered 422 once");
    }
    let ti = api.get("team-f").await.unwrap();
    assert!(
        ti.metadata
            .finalizers
            .unwrap_or_default()
            .iter()
            .any(|f| f == "identity.tenancy.dev/cleanup"),
        "the finalizer was added after all"
    );

    let remove_raced = env
        .cluster
        .inject_fault_or_skip(test, finalizer_patch_fault(404));
    api.delete("team-f", &Default::default()).await.unwrap();
    if remove_raced {
        tenant_identity_e2e::poll_until(
            "the finalizer removal to be answered 404",
            DEFAULT_TIMEOUT,
            || async {
                Ok(match env.cluster.pending_faults() {
                    0 => tenant_identity_e2e::Check::Done(()),
                    n => tenant_identity_e2e::Check::NotYet(format!("{n} pending")),
                })
            },
        )
        .await
        .unwrap();
        // The 404 says someone else finished the deletion; the injected answer left the object
        // as it was, so finish it as they would have.
        api.patch(
            "team-f",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    }
    tenant_identity_e2e::wait_gone(&api, "team-f", DEFAULT_TIMEOUT)
        .await
        .unwrap();

    let errors = env
        .operator
        .metric_sum(
            "tenant_identity_reconcile_errors_total",
            &[("reason", "FinalizerError")],
        )
        .await
        .unwrap();
    assert_eq!(
        errors, 0.0,
        "no finalizer race counted as a reconcile error"
    );
    // (Converging passes through CredentialsPending, which warns as it always does.)
    let warned: Vec<String> = warnings(&env, "team-f")
        .await
        .into_iter()
        .filter(|w| w.contains("inalizer"))
        .collect();
    assert_eq!(
        warned,
        Vec::<String>::new(),
        "no Warning about the finalizer"
    );
    let logs = env.operator.logs();
    let failures: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("FinalizerError") || l.contains("reconcile failed"))
        .collect();
    assert!(failures.is_empty(), "failures logged: {failures:#?}");
    env.finish().await;
}
