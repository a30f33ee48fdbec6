//! Waiting on conditions: watches, or bounded polls, always with a timeout and a failure message
//! that shows the last thing seen.

use std::{fmt::Debug, future::Future, time::Duration};

use anyhow::{anyhow, bail};
use futures::StreamExt;
use kube::{
    Api, Resource,
    runtime::{WatchStreamExt, watcher},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::error::Result;

/// Default wait: generous for CI on two cores.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Wait for what only the garbage collector does (dependents of a deleted owner). On a real
/// cluster GC is asynchronous, and kube-controller-manager refreshes the kinds it watches from
/// discovery every 30 s (`garbageCollector.Sync(ctx, discoveryClient, 30*time.Second)` in
/// `cmd/kube-controller-manager/app/core.go`): dependents of a kind whose CRD was installed
/// moments ago may wait a full resync before GC even sees them.
pub const GC_TIMEOUT: Duration = Duration::from_secs(120);
/// Interval between two looks of a bounded poll.
const POLL_INTERVAL: Duration = Duration::from_millis(150);

/// Outcome of one look at a condition.
pub enum Check<T> {
    Done(T),
    /// Not yet; the text describes what was seen (shown on timeout).
    NotYet(String),
}

/// Poll `look` until it returns [`Check::Done`]; errors from `look` are remembered and retried
/// (the API may be briefly unavailable), and reported on timeout.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut look: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Check<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last;
    loop {
        match look().await {
            Ok(Check::Done(v)) => return Ok(v),
            Ok(Check::NotYet(seen)) => last = seen,
            Err(e) => last = format!("error: {e:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn show<K: Serialize>(obj: &K) -> String {
    serde_yaml::to_string(obj).unwrap_or_else(|e| format!("<cannot render: {e}>"))
}

/// Watch object `name` until `condition` holds; returns the object that satisfied it. On timeout
/// the error shows the last version seen (or that the object never existed).
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    timeout: Duration,
    condition: impl Fn(&K) -> bool,
) -> Result<K>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(api.clone(), config)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut last: Option<K> = None;
    let mut last_error: Option<String> = None;
    let outcome = tokio::time::timeout(timeout, async {
        while let Some(event) = stream.next().await {
            match event {
                Ok(obj) => {
                    if condition(&obj) {
                        return Some(obj);
                    }
                    last = Some(obj);
                }
                Err(e) => last_error = Some(e.to_string()),
            }
        }
        None
    })
    .await;
    match outcome {
        Ok(Some(obj)) => Ok(obj),
        Ok(None) => Err(anyhow!("watch of {name} ended while waiting for {what}")),
        Err(_) => {
            let seen = match &last {
                Some(obj) => show(obj),
                None => "the object was never seen".to_string(),
            };
            let error = last_error
                .map(|e| format!("\nlast watch error: {e}"))
                .unwrap_or_default();
            Err(anyhow!(
                "timed out after {timeout:?} waiting for {what} on {name}{error}\nlast seen:\n{seen}"
            ))
        }
    }
}

/// Wait until object `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str, timeout: Duration) -> Result<()>
where
    K: Resource + Clone + Debug + DeserializeOwned + Serialize + Send + 'static,
{
    poll_until(&format!("{name} to be deleted"), timeout, || async {
        Ok(match api.get_opt(name).await? {
            None => Check::Done(()),
            Some(obj) => Check::NotYet(show(&obj)),
        })
    })
    .await
}
