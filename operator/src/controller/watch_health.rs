//! Each watch of the controller gets its own backoff and its own health.
//!
//! kube-runtime's `Controller` merges every watch into one stream and applies one backoff to
//! it (kube-runtime `controller/mod.rs`: `for_stream_with` and `owns_stream_with` push every
//! trigger into one `SelectAll`, backed off by the single `trigger_backoff`): after an API server restart every watch reports errors (connection refused, TLS EOF, a
//! 403 while the authorizer warms up, 410), each error re-arms the shared backoff, and no event
//! of any watch is processed for minutes. Here every watch is backed off on its own (client-go's
//! 0.8 s → 30 s) and restarted with a fresh list, and its errors are counted, logged and kept out
//! of the merged stream, so the shared backoff never arms and one failing watch cannot silence
//! the others. The same bookkeeping says whether the operator is ready (every watch synced
//! since its last error) and alive (no watch failing for longer than a bound).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{Stream, StreamExt};
use kube::runtime::watcher;
use tracing::{info, warn};

use crate::{
    http::{Liveness, Readiness},
    metrics::{Metrics, Watched},
};

#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// The last list (Init .. InitDone) completed and no error came after it.
    synced: bool,
    /// Errors without an event in between, since then.
    failing_since: Option<Instant>,
}

/// The health of every watch of one controller run.
pub struct WatchHealth {
    states: Mutex<BTreeMap<Watched, State>>,
    metrics: Arc<Metrics>,
    readiness: Readiness,
}

impl WatchHealth {
    pub fn new(metrics: Arc<Metrics>, readiness: Readiness) -> Arc<Self> {
        readiness.set_ready(false);
        Arc::new(Self {
            states: Mutex::new(BTreeMap::new()),
            metrics,
            readiness,
        })
    }

    fn update(&self, watch: Watched, change: impl FnOnce(&mut State)) {
        // A poisoned lock only means a panic elsewhere mid-update; the map is still usable.
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let state = states.entry(watch).or_default();
        let was = state.synced && state.failing_since.is_none();
        change(state);
        let now = state.synced && state.failing_since.is_none();
        if was != now {
            self.metrics
                .watch_healthy
                .with_label_values(&[watch.kind()])
                .set(i64::from(now));
        }
        let ready = states
            .values()
            .all(|s| s.synced && s.failing_since.is_none());
        self.readiness.set_ready(ready);
    }

    /// A watch starts: its series exist from now on (0 until its first list completes), and
    /// the run is not ready until it has synced.
    fn register(&self, watch: Watched) {
        self.metrics.watch_errors.with_label_values(&[watch.kind()]);
        self.metrics
            .watch_healthy
            .with_label_values(&[watch.kind()])
            .set(0);
        self.update(watch, |_| {});
    }

    /// The run has ended: this replica watches nothing any more. The gauges go back to what
    /// they were before the run: 0 for the watches every run starts (no live watch here), no
    /// series for the others, so a kind the next leader does not watch cannot read as failing.
    /// The error counters stay: they count what happened.
    pub fn stopped(&self) {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        for watch in states.keys() {
            if watch.always_started() {
                self.metrics
                    .watch_healthy
                    .with_label_values(&[watch.kind()])
                    .set(0);
            } else {
                // Err only if there is no such series, which is the state wanted.
                let _ = self
                    .metrics
                    .watch_healthy
                    .remove_label_values(&[watch.kind()]);
            }
        }
    }

    fn seen<K>(&self, watch: Watched, event: &watcher::Event<K>) {
        self.update(watch, |s| {
            if s.failing_since.take().is_some() {
                info!(kind = watch.kind(), "watch recovered");
            }
            match event {
                watcher::Event::Init => s.synced = false,
                watcher::Event::InitDone => s.synced = true,
                _ => {}
            }
        });
    }

    fn failed(&self, watch: Watched, error: &watcher::Error) {
        self.metrics
            .watch_errors
            .with_label_values(&[watch.kind()])
            .inc();
        warn!(kind = watch.kind(), error = %error, "watch failed; retrying with backoff");
        self.update(watch, |s| {
            s.synced = false;
            s.failing_since.get_or_insert_with(Instant::now);
        });
    }

    /// The watch that has been failing the longest, if longer than `bound`.
    pub fn stalled(&self, bound: Duration) -> Option<(&'static str, Duration)> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        states
            .iter()
            .filter_map(|(watch, s)| s.failing_since.map(|t| (watch.kind(), t.elapsed())))
            .filter(|(_, elapsed)| *elapsed > bound)
            .max_by_key(|(_, elapsed)| *elapsed)
    }

    /// A watch stream with its own backoff, whose errors are recorded here and never reach the
    /// controller's merged stream. After an error the watch starts afresh (a new list, then a
    /// watch), as after a 410: kube's watcher would resume silently, and a fresh list is what
    /// proves the stream live and synced again (`InitDone`) and repairs the cache after an outage.
    pub fn track<K, F, S>(
        self: &Arc<Self>,
        kind: Watched,
        watch: F,
    ) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
    where
        K: Send + 'static,
        F: Fn() -> S + Send + 'static,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    {
        self.register(kind);
        let health = self.clone();
        restarting(watch).filter_map(move |item| {
            let result = match item {
                Ok(event) => {
                    health.seen(kind, &event);
                    Some(Ok(event))
                }
                Err(error) => {
                    health.failed(kind, &error);
                    None
                }
            };
            futures::future::ready(result)
        })
    }

    /// Keep `liveness` false while a watch has been failing longer than `bound`, so the kubelet
    /// restarts a pod that has gone deaf; runs until the controller run ends.
    pub async fn watch_liveness(self: Arc<Self>, liveness: Liveness, bound: Duration) {
        let mut tick =
            tokio::time::interval(bound.clamp(Duration::from_millis(100), Duration::from_secs(1)));
        loop {
            tick.tick().await;
            match self.stalled(bound) {
                Some((kind, elapsed)) => {
                    if liveness.is_live() {
                        warn!(kind, failing_for = ?elapsed, "a watch has failed for longer than the stall bound; reporting not alive");
                    }
                    liveness.set_live(false);
                }
                None => liveness.set_live(true),
            }
        }
    }
}

/// client-go's watch backoff: 0.8 s doubling to 30 s, with jitter; reset by a completed list.
fn watch_backoff() -> backon::ExponentialBackoff {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::new()
        .with_min_delay(Duration::from_millis(800))
        .with_max_delay(Duration::from_secs(30))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

struct Restarting<F, S> {
    watch: F,
    current: Option<std::pin::Pin<Box<S>>>,
    backoff: backon::ExponentialBackoff,
    delay: Option<Duration>,
}

/// `watch()` run again, after a backoff, whenever it yields an error.
fn restarting<K, F, S>(
    watch: F,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static
where
    K: Send + 'static,
    F: Fn() -> S + Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    let state = Restarting {
        watch,
        current: None,
        backoff: watch_backoff(),
        delay: None,
    };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            let current = match state.current.as_mut() {
                Some(current) => current,
                None => {
                    if let Some(delay) = state.delay.take() {
                        tokio::time::sleep(delay).await;
                    }
                    state.current.insert(Box::pin((state.watch)()))
                }
            };
            match current.next().await {
                Some(Ok(event)) => {
                    if matches!(event, watcher::Event::InitDone) {
                        state.backoff = watch_backoff();
                    }
                    return Some((Ok(event), state));
                }
                Some(Err(error)) => {
                    state.current = None;
                    state.delay = Some(state.backoff.next().unwrap_or(Duration::from_secs(30)));
                    return Some((Err(error), state));
                }
                // A watcher does not end; if one did, start it again.
                None => state.current = None,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> (Arc<WatchHealth>, Readiness) {
        let readiness = Readiness::default();
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        (WatchHealth::new(metrics, readiness.clone()), readiness)
    }

    fn error() -> watcher::Error {
        watcher::Error::NoResourceVersion
    }

    const A: Watched = Watched::Tenants;
    const B: Watched = Watched::Namespaces;

    #[test]
    fn ready_only_when_every_watch_is_synced_since_its_last_error() {
        let (h, ready) = health();
        h.register(A);
        h.register(B);
        assert!(!ready.is_ready(), "nothing listed yet");
        h.seen::<()>(A, &watcher::Event::Init);
        h.seen::<()>(A, &watcher::Event::InitDone);
        assert!(!ready.is_ready(), "B not synced");
        h.seen::<()>(B, &watcher::Event::InitDone);
        assert!(ready.is_ready());
        h.failed(A, &error());
        assert!(!ready.is_ready(), "A's stream is down");
        assert!(
            h.stalled(Duration::ZERO)
                .is_some_and(|(k, _)| k == A.kind())
        );
        assert!(h.stalled(Duration::from_secs(3600)).is_none());
        h.seen::<()>(A, &watcher::Event::Init);
        assert!(!ready.is_ready(), "re-listing");
        assert!(h.stalled(Duration::ZERO).is_none(), "alive again");
        h.seen::<()>(A, &watcher::Event::InitDone);
        assert!(ready.is_ready());
        let m = &h.metrics;
        assert_eq!(m.watch_errors.with_label_values(&[A.kind()]).get(), 1);
        assert_eq!(m.watch_healthy.with_label_values(&[A.kind()]).get(), 1);
    }

    /// The series of a watch exist while a run has started it: from its start (at 0, not
    /// synced yet), and after the run only for the watches every run starts (at 0).
    #[test]
    fn a_watch_has_series_from_its_start_and_none_after_its_run_unless_every_run_starts_it() {
        let (h, _) = health();
        // The scrape's `tenant_identity_watch_healthy` series of A and B.
        let exported = |h: &WatchHealth| -> Vec<(String, i64)> {
            let text = h.metrics.render().expect("render");
            text.lines()
                .filter_map(|line| {
                    let rest = line.strip_prefix("tenant_identity_watch_healthy{kind=\"")?;
                    let (kind, value) = rest.split_once("\"} ")?;
                    Some((kind.to_string(), value.parse().ok()?))
                })
                .filter(|(kind, _)| kind == A.kind() || kind == B.kind())
                .collect()
        };
        assert_eq!(
            exported(&h),
            [(A.kind().to_string(), 0)],
            "B not started yet"
        );
        h.register(B);
        assert!(
            exported(&h).contains(&(B.kind().to_string(), 0)),
            "B started, not synced"
        );
        h.register(A);
        h.seen::<()>(A, &watcher::Event::InitDone);
        h.seen::<()>(B, &watcher::Event::InitDone);
        let mut now = exported(&h);
        now.sort();
        assert_eq!(now, [(B.kind().to_string(), 1), (A.kind().to_string(), 1)]);
        h.stopped();
        assert_eq!(exported(&h), [(A.kind().to_string(), 0)], "after the run");
        assert_eq!(
            h.metrics.watch_errors.with_label_values(&[B.kind()]).get(),
            0
        );
    }
}
