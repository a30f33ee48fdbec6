//! Watch streams: newline-delimited JSON watch events over a chunked response.
//!
//! The snapshot (initial ADDED events or the replay of history since the requested
//! resourceVersion) is taken and the broadcast subscription made under the store lock, so no
//! event is lost or duplicated between them. Then a task forwards live events, sends BOOKMARKs,
//! and ends at `timeoutSeconds`, on shutdown, or when the client goes away.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::error::ApiError;
use crate::ops::{self, Target};
use crate::response::partial_metadata;
use crate::selectors::Selectors;
use crate::state::AppState;
use crate::store::{EventType, StoreEvent};

/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(3);

#[derive(Clone, Debug, Default)]
pub struct WatchParams {
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub timeout: Option<Duration>,
    pub send_initial_events: bool,
    pub selectors: Selectors,
    /// Objects rendered as `PartialObjectMetadata`.
    pub metadata_only: bool,
}

fn line(etype: &str, object: Value) -> Bytes {
    let mut s = json!({"type": etype, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

fn bookmark(t: &Target, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": t.res.kind, "apiVersion": t.res.api_version(&t.version), "metadata": meta}),
    )
}

/// An object as the watch shows it: at the watched version, or as `PartialObjectMetadata`.
fn render(t: &Target, obj: Value, metadata_only: bool) -> Value {
    if metadata_only {
        partial_metadata(&obj)
    } else {
        t.res.convert(obj, &t.version)
    }
}

/// The event a watch of `t` with `p.selectors` sees for a store event, if any. A change that
/// moves an object into or out of the selection is seen as ADDED or DELETED.
fn transform(ev: &StoreEvent, t: &Target, p: &WatchParams) -> Option<Bytes> {
    let selectors = &p.selectors;
    if ev.key != t.res.key() {
        return None;
    }
    if t.res.namespaced
        && let Some(ns) = &t.namespace
        && &ev.namespace != ns
    {
        return None;
    }
    let now = selectors.matches(&ev.object);
    let etype = match ev.etype {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => now.then_some("DELETED"),
        EventType::Modified => {
            let before = ev.old.as_ref().is_some_and(|o| selectors.matches(o));
            match (before, now) {
                (true, true) => Some("MODIFIED"),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
    }?;
    Some(line(
        etype,
        render(t, (*ev.object).clone(), p.metadata_only),
    ))
}

fn expired(requested: u64, floor: u64) -> Bytes {
    line(
        "ERROR",
        ApiError::gone(format!("too old resource version: {requested} ({floor})")).to_status(),
    )
}

pub fn serve(state: Arc<AppState>, t: Target, p: WatchParams) -> Response {
    let mut initial = Vec::new();
    let (mut rx, mut last_rv, published, ended) = {
        let store = state.lock();
        let current = store.current_rv();
        let rx = store.subscribe();
        let requested = p.resource_version.as_deref().unwrap_or("");
        let mut ended = false;
        if p.send_initial_events || requested.is_empty() || requested == "0" {
            for obj in ops::select(&store, &t, &p.selectors) {
                initial.push(line("ADDED", render(&t, obj.clone(), p.metadata_only)));
            }
            if p.send_initial_events {
                initial.push(bookmark(&t, current, true));
            }
        } else {
            match requested.parse::<u64>() {
                Err(_) => {
                    initial.push(line(
                        "ERROR",
                        ApiError::bad_request(format!("invalid resource version: {requested}"))
                            .to_status(),
                    ));
                    ended = true;
                }
                Ok(r) => match store.history_since(r) {
                    Ok(events) => {
                        initial.extend(events.iter().filter_map(|e| transform(e, &t, &p)));
                    }
                    Err(floor) => {
                        initial.push(expired(r, floor));
                        ended = true;
                    }
                },
            }
        }
        (rx, current, store.published_rv(), ended)
    };

    let (tx, body_rx) = mpsc::channel::<Bytes>(256);
    let mut stop = state.stop_watches.subscribe();
    let ended = ended || state.closing.load(Ordering::SeqCst);
    tokio::spawn(async move {
        for l in initial {
            if tx.send(l).await.is_err() {
                return;
            }
        }
        if ended {
            return;
        }
        let deadline = p.timeout.map(|d| tokio::time::Instant::now() + d);
        let mut ticker = tokio::time::interval_at(
            tokio::time::Instant::now() + BOOKMARK_INTERVAL,
            BOOKMARK_INTERVAL,
        );
        loop {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if let Some(l) = transform(&ev, &t, &p)
                            && tx.send(l).await.is_err()
                        {
                            return;
                        }
                    }
                    // A watcher too slow to keep up is cut off; it resumes from its last
                    // resourceVersion through the history.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if p.bookmarks => {
                    // Read the published RV first, then drain: every event up to it is then
                    // delivered before the bookmark claims it.
                    let snapshot = published.load(Ordering::Acquire);
                    loop {
                        match rx.try_recv() {
                            Ok(ev) => {
                                if ev.rv <= last_rv {
                                    continue;
                                }
                                last_rv = ev.rv;
                                if let Some(l) = transform(&ev, &t, &p)
                                    && tx.send(l).await.is_err()
                                {
                                    return;
                                }
                            }
                            Err(broadcast::error::TryRecvError::Empty) => break,
                            Err(_) => return,
                        }
                    }
                    last_rv = last_rv.max(snapshot);
                    if tx.send(bookmark(&t, last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => return,
                _ = stop.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });

    let stream = futures::stream::unfold(body_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<Bytes, Infallible>(b), rx))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
