//! Leader election on a `coordination.k8s.io/v1` Lease: only the holder reconciles, and work
//! stops as soon as the lease is lost.

use std::future::Future;

use futures::{FutureExt, future::BoxFuture};
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::watch;
use tracing::info;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

/// Run `work` each time this replica becomes leader; the future passed to `work` resolves when
/// the lease is lost. Returns when `shutdown` resolves.
pub async fn run_as_leader<W, WF>(
    client: Client,
    config: LeaseConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    mut work: W,
) -> Result<(), kube_lease_manager::LeaseManagerError>
where
    W: FnMut(BoxFuture<'static, ()>) -> WF,
    WF: Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &config.name)
        .with_namespace(&config.namespace)
        .with_identity(&config.identity)
        .with_duration(config.duration_seconds)
        .with_grace(config.grace_seconds)
        .build()
        .await?;
    let (mut leader, task) = manager.watch().await;
    let mut shutdown = Box::pin(shutdown.shared());
    loop {
        info!(lease = %config.name, identity = %config.identity, "waiting for leadership");
        while !*leader.borrow_and_update() {
            tokio::select! {
                changed = leader.changed() => if changed.is_err() { return finish(leader, task).await },
                _ = &mut shutdown => return finish(leader, task).await,
            }
        }
        info!(lease = %config.name, identity = %config.identity, "acquired leadership");
        let lost = lost_leadership(leader.clone());
        let stop = {
            let shutdown = shutdown.clone();
            async move {
                tokio::select! {
                    _ = lost => {},
                    _ = shutdown => {},
                }
            }
            .boxed()
        };
        work(stop).await;
        if shutdown.as_mut().now_or_never().is_some() {
            return finish(leader, task).await;
        }
        info!(lease = %config.name, "lost leadership; stopped reconciling");
    }
}

async fn lost_leadership(mut leader: watch::Receiver<bool>) {
    while *leader.borrow_and_update() {
        if leader.changed().await.is_err() {
            return;
        }
    }
}

async fn finish(
    leader: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<
        Result<kube_lease_manager::LeaseManager, kube_lease_manager::LeaseManagerError>,
    >,
) -> Result<(), kube_lease_manager::LeaseManagerError> {
    // Closing the channel stops the manager's task; then hand the lease back so a standby takes
    // over at once instead of waiting for it to expire.
    drop(leader);
    if let Ok(Ok(manager)) = task.await {
        manager.release().await?;
    }
    Ok(())
}
