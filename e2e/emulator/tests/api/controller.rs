//! A small kube-runtime controller in the operator's style (finalizer helper, server-side apply
//! of an owned child and of status, `owns`) converges and then stops writing.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, WatchEvent, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::common::{GUID, Widget, eventually, install_widgets, start};

const MANAGER: &str = "widget-controller";

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    #[error("finalizer: {0}")]
    Finalizer(String),
}

async fn apply(w: Arc<Widget>, client: Client) -> Result<Action, kube::Error> {
    let ns = w.namespace().unwrap_or_default();
    let owner = w.controller_owner_ref(&()).expect("owner ref");
    let child = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{}-child", w.name_any()), "ownerReferences": [owner], "labels": {"app.kubernetes.io/managed-by": MANAGER}},
        "data": {"replicas": w.spec.replicas.unwrap_or_default().to_string()}
    });
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.patch(
        &format!("{}-child", w.name_any()),
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&child),
    )
    .await?;
    let status = json!({
        "apiVersion": "test.emulator.dev/v1", "kind": "Widget",
        "status": {"phase": "Ready", "observedGeneration": w.meta().generation}
    });
    let widgets: Api<Widget> = Api::namespaced(client, &ns);
    widgets
        .patch_status(
            &w.name_any(),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&status),
        )
        .await?;
    Ok(Action::await_change())
}

async fn reconcile(w: Arc<Widget>, client: Arc<Client>) -> Result<Action, Error> {
    let api: Api<Widget> = Api::namespaced((*client).clone(), &w.namespace().unwrap_or_default());
    let client = (*client).clone();
    finalizer(&api, "test.emulator.dev/cleanup", w, |event| async move {
        match event {
            Finalizer::Apply(w) => apply(w, client).await,
            Finalizer::Cleanup(_) => Ok(Action::await_change()),
        }
    })
    .await
    .map_err(|e| Error::Finalizer(e.to_string()))
}

fn error_policy(_: Arc<Widget>, _: &Error, _: Arc<Client>) -> Action {
    Action::requeue(Duration::from_millis(200))
}

#[tokio::test]
async fn controller_converges_without_steady_state_writes() {
    let (emu, client) = start().await;
    install_widgets(&client).await;
    let widgets: Api<Widget> = Api::namespaced(client.clone(), "default");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let controller = Controller::new(
        Api::<Widget>::all(client.clone()),
        watcher::Config::default().any_semantic(),
    )
    .owns(
        Api::<ConfigMap>::all(client.clone()),
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={MANAGER}")),
    )
    .run(reconcile, error_policy, Arc::new(client.clone()))
    .for_each(|_| async {});
    let handle = tokio::spawn(controller);

    let w = json!({"apiVersion": "test.emulator.dev/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"clientId": GUID, "replicas": 3}});
    widgets
        .patch("w1", &PatchParams::apply("user"), &Patch::Apply(&w))
        .await
        .expect("apply widget");

    let converged = eventually("widget reconciled", || {
        let widgets = widgets.clone();
        async move {
            let w = widgets.get("w1").await.ok()?;
            let ready = w.status.as_ref()?.phase.as_deref() == Some("Ready")
                && w.status.as_ref()?.observed_generation == w.metadata.generation;
            (ready
                && w.finalizers()
                    .contains(&"test.emulator.dev/cleanup".to_string()))
            .then_some(w)
        }
    })
    .await;
    let child = cms.get("w1-child").await.expect("child applied");
    assert_eq!(child.data.expect("data")["replicas"], "3");

    // Steady state: nothing is written any more (no-op applies do not bump resourceVersion).
    let rv = converged.resource_version().expect("rv");
    let events: Vec<WatchEvent<Widget>> = widgets
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    assert!(events.is_empty(), "steady state writes: {events:?}");

    // A spec change bumps generation and is reconciled into the child.
    widgets.patch("w1", &PatchParams::apply("user"), &Patch::Apply(json!({"apiVersion": "test.emulator.dev/v1", "kind": "Widget", "spec": {"clientId": GUID, "replicas": 4}}))).await.expect("reapply");
    eventually("child updated", || {
        let cms = cms.clone();
        async move { (cms.get("w1-child").await.ok()?.data?.get("replicas")? == "4").then_some(()) }
    })
    .await;

    // Deletion runs the finalizer, then the child is garbage collected.
    widgets
        .delete("w1", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("widget and child gone", || {
        let (widgets, cms) = (widgets.clone(), cms.clone());
        async move {
            (widgets.get("w1").await.is_err() && cms.get("w1-child").await.is_err()).then_some(())
        }
    })
    .await;
    handle.abort();
    emu.shutdown().await;
}
