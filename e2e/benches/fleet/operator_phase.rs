//! The operator phase: the fleet created and converged with ASO played, the forced resync, and
//! waiting for the operator to settle.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _, stream};
use kube::{
    Api, Client,
    api::{DynamicObject, ListParams, Patch, PatchParams, PostParams},
};
use serde_json::json;
use tenant_identity_e2e::{
    Operator,
    objects::{self, TENANT_LABEL},
    simulate,
};

use crate::metrics::OperatorMetrics;
use crate::tenants::{CONCURRENCY, Tenant};

/// Settled: this long without a reconcile or a request of the operator.
const SETTLE: Duration = Duration::from_secs(2);
/// How long a phase may take at most.
const PHASE_TIMEOUT: Duration = Duration::from_secs(1800);

/// Children with the tenant label, in every namespace.
async fn count_children(client: &Client) -> anyhow::Result<usize> {
    let mut count = 0;
    for resource in objects::child_kinds() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        count += api
            .list_metadata(&ListParams::default().labels(TENANT_LABEL))
            .await?
            .items
            .len();
    }
    Ok(count)
}

/// Create every tenant (at most [`CONCURRENCY`] at once) and play ASO for each once it exists;
/// returns the time until every child exists and until every tenant is Ready.
pub(crate) async fn converge_fleet(
    client: &Client,
    fleet: &[Tenant],
    expected_children: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let start = Instant::now();
    let (created_tx, created_rx) = tokio::sync::mpsc::unbounded_channel::<Tenant>();
    // The sender lives in the stream: once every tenant is created, the ASO player's stream ends.
    let create = stream::iter(fleet.iter().cloned())
        .map(move |t| {
            let created_tx = created_tx.clone();
            async move {
                objects::tenants(client, &t.ns)
                    .create(
                        &PostParams::default(),
                        &objects::tenant_identity(&t.ns, &t.name, t.spec())?,
                    )
                    .await
                    .with_context(|| format!("cannot create {}/{}", t.ns, t.name))?;
                let _ = created_tx.send(t);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>();
    let ready = stream::unfold(created_rx, |mut rx| async move {
        rx.recv().await.map(|t| (t, rx))
    })
    .map(|t| async move {
        simulate::converge(client, &t.ns, &t.name, PHASE_TIMEOUT).await?;
        anyhow::Ok(())
    })
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<()>>();
    let children = async {
        loop {
            if count_children(client).await? >= expected_children {
                return anyhow::Ok(start.elapsed());
            }
            anyhow::ensure!(
                start.elapsed() < PHASE_TIMEOUT,
                "children never all appeared"
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    };
    let ready = async {
        ready.await?;
        anyhow::Ok(start.elapsed())
    };
    let (created, all_children, all_ready) = tokio::join!(create, children, ready);
    created?;
    Ok((all_children?, all_ready?))
}

/// Force a reconcile of every tenant with nothing to do, as the periodic resync (or any change
/// that alters neither spec nor children) does: annotate each with a bench-only annotation and
/// wait until the operator has reconciled as many times as there are tenants. (A
/// `reconcile.fluxcd.io/requestedAt` request would cost one status write per tenant on top,
/// by design: `status.lastHandledReconcileAt` records it.)
pub(crate) async fn resync(
    client: &Client,
    fleet: &[Tenant],
    token: &str,
    operator: &Operator,
) -> anyhow::Result<()> {
    let before = OperatorMetrics::scrape(operator).await?.reconciles;
    stream::iter(fleet)
        .map(|t| async move {
            objects::tenants(client, &t.ns)
                .patch(
                    &t.name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"annotations": {RESYNC_ANNOTATION: token}}})),
                )
                .await
                .with_context(|| format!("cannot annotate {}/{}", t.ns, t.name))?;
            anyhow::Ok(())
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await?;
    let start = Instant::now();
    loop {
        let done = OperatorMetrics::scrape(operator).await?.reconciles - before;
        if done >= fleet.len() as f64 {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < PHASE_TIMEOUT,
            "only {done} reconciles for {} tenants on resync",
            fleet.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The bench's own annotation: a change of the object that asks for nothing.
const RESYNC_ANNOTATION: &str = "bench.identity.tenancy.dev/resync";

/// Wait until the operator neither reconciles nor sends a request for [`SETTLE`].
pub(crate) async fn settle(operator: &Operator) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut last = OperatorMetrics::scrape(operator).await?.activity();
    let mut since = Instant::now();
    while since.elapsed() < SETTLE {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = OperatorMetrics::scrape(operator).await?.activity();
        if now != last {
            last = now;
            since = Instant::now();
        }
        if start.elapsed() > PHASE_TIMEOUT {
            eprintln!("warning: the operator never settled");
            break;
        }
    }
    Ok(())
}
