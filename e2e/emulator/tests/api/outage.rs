//! Control-plane outages as kube-rs sees them: a restart keeps every object (uid,
//! resourceVersion, data) but cuts connections and watches, refuses connections while down and
//! starts a fresh watch cache (resume from the current resourceVersion, 410 from an older one);
//! dropped connections and refusals keep the watch history.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use kube_emulator::Emulator;
use serde_json::json;

use crate::common::{eventually, start};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": name}})).expect("cm")
}

async fn create(cms: &Api<ConfigMap>, name: &str) -> ConfigMap {
    cms.create(&PostParams::default(), &cm(name))
        .await
        .expect("create")
}

/// Whether a TCP connection to the emulator is refused (nothing listens on its port).
async fn refused(emu: &Emulator) -> bool {
    match tokio::net::TcpStream::connect(emu.addr()).await {
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}

/// The resourceVersion of a fresh list: what a client that just relisted resumes from.
async fn list_rv(cms: &Api<ConfigMap>) -> String {
    cms.list(&ListParams::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("list resourceVersion")
}

/// The first event of a raw watch from `rv`.
async fn first_event(cms: &Api<ConfigMap>, rv: &str) -> WatchEvent<ConfigMap> {
    let stream = cms
        .watch(&WatchParams::default(), rv)
        .await
        .expect("watch starts");
    let mut stream = Box::pin(stream);
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event decodes")
}

/// Waits for a raw watch stream to end (cut: an error or the end of the stream).
async fn ends<S, T>(stream: &mut S)
where
    S: Stream<Item = Result<T, kube::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => panic!("the watch was not cut"),
            Ok(None | Some(Err(_))) => return,
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A request that fails without reaching an API server: not an API error.
fn is_connection_error(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(_))
}

async fn get_fails_to_connect(client: &Client) -> bool {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    match cms.get_opt("nothing").await {
        Ok(_) => false,
        Err(e) => is_connection_error(&e),
    }
}

#[tokio::test]
async fn restart_keeps_state_cuts_watches_and_refuses_while_down() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let before = create(&cms, "before").await;
    let mut raw = Box::pin(
        cms.watch(&WatchParams::default(), &list_rv(&cms).await)
            .await
            .expect("watch starts"),
    );
    let mut watcher = watcher::watcher(cms.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), watcher.next())
            .await
            .expect("event in time")
            .expect("stream open");
        if matches!(ev, Ok(Event::InitDone)) {
            break;
        }
    }
    // A write the configmap watches do not see: their resourceVersion falls behind.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "s"}})).expect("s");
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let stale_rv = before.resource_version().expect("rv");

    // Down for a while: refused from the first moment until it serves again.
    let (restarted, seen_down) = tokio::join!(emu.restart(Duration::from_millis(500)), async {
        eventually("the emulator to go down", || async {
            (!emu.is_serving().await).then_some(())
        })
        .await;
        (refused(&emu).await, get_fails_to_connect(&client).await)
    });
    restarted.expect("restart");
    assert_eq!(seen_down, (true, true), "refused while down");
    assert!(emu.is_serving().await);
    ends(&mut raw).await;

    // Every object as it was.
    let after = cms.get("before").await.expect("kept");
    assert_eq!(after.uid(), before.uid());
    assert_eq!(after.resource_version(), before.resource_version());
    assert_eq!(after.data, before.data);
    assert!(secrets.get("s").await.is_ok());

    // A fresh watch cache: an older resourceVersion is gone, the current one resumes.
    match first_event(&cms, &stale_rv).await {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    let current = list_rv(&cms).await;
    let resumed = tokio::spawn({
        let cms = cms.clone();
        async move { first_event(&cms, &current).await }
    });
    // Written before or after the watch starts: either way it comes after `current`.
    create(&cms, "resumed").await;
    match resumed.await.expect("watch task") {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "resumed"),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // The kube-runtime watcher saw the outage and recovers (resuming or relisting).
    create(&cms, "after").await;
    let mut saw_error = false;
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(20), watcher.next())
            .await
            .expect("the watcher recovers in time")
            .expect("stream open");
        match ev {
            Err(_) => saw_error = true,
            Ok(Event::Apply(c) | Event::InitApply(c)) if c.name_any() == "after" => break,
            Ok(_) => {}
        }
    }
    assert!(saw_error, "the watcher saw its watch fail");
    emu.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_end_watches_and_keep_history() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = list_rv(&cms).await;
    let mut raw = Box::pin(
        cms.watch(&WatchParams::default(), &rv)
            .await
            .expect("watch starts"),
    );
    eventually("the watch's connection", || async {
        (emu.open_connections() > 0).then_some(())
    })
    .await;
    emu.drop_connections();
    ends(&mut raw).await;

    // Still serving, and the history is kept: a watch from before resumes.
    create(&cms, "x").await;
    match first_event(&cms, &rv).await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "x"),
        other => panic!("expected ADDED, got {other:?}"),
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn refused_until_told_then_history_resumes() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = list_rv(&cms).await;
    create(&cms, "y").await;
    let mut raw = Box::pin(
        cms.watch(&WatchParams::default(), &rv)
            .await
            .expect("watch starts"),
    );

    emu.refuse_connections().await;
    assert!(!emu.is_serving().await);
    assert!(refused(&emu).await);
    assert!(get_fails_to_connect(&client).await);
    ends(&mut raw).await;
    eventually("every connection closed", || async {
        (emu.open_connections() == 0).then_some(())
    })
    .await;

    emu.accept_connections().await.expect("serving again");
    // The same server "process": its watch history is kept.
    match first_event(&cms, &rv).await {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "y"),
        other => panic!("expected ADDED, got {other:?}"),
    }

    // refuse_for: refused for the duration, serving once it returns.
    let (back, was_refused) = tokio::join!(emu.refuse_for(Duration::from_millis(300)), async {
        eventually("the emulator to go down", || async {
            (!emu.is_serving().await).then_some(())
        })
        .await;
        refused(&emu).await
    });
    back.expect("serving again");
    assert!(was_refused);
    assert!(cms.get("y").await.is_ok());
    emu.shutdown().await;
}
