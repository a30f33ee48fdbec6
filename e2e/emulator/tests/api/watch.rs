use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::common::start;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"v": "0"}})).expect("cm")
}

/// Next watcher event that is not part of an initial listing, with a deadline.
async fn next<S>(stream: &mut S) -> Event<ConfigMap>
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("event in time")
        .expect("stream open")
        .expect("no watcher error")
}

async fn expect_apply<S>(stream: &mut S, name: &str, v: &str)
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    loop {
        if let Event::Apply(c) | Event::InitApply(c) = next(stream).await
            && c.name_any() == name
            && c.data.as_ref().and_then(|d| d.get("v")).map(String::as_str) == Some(v)
        {
            return;
        }
    }
}

#[tokio::test]
async fn watcher_sees_changes_and_survives_compaction() {
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let (emu, client) = start().await;
        let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        cms.create(&PostParams::default(), &cm("before"))
            .await
            .expect("create");
        let mut stream = watcher::watcher(cms.clone(), config).boxed();

        assert!(matches!(next(&mut stream).await, Event::Init));
        match next(&mut stream).await {
            Event::InitApply(c) => assert_eq!(c.name_any(), "before"),
            other => panic!("expected InitApply, got {other:?}"),
        }
        assert!(matches!(next(&mut stream).await, Event::InitDone));

        cms.create(&PostParams::default(), &cm("a"))
            .await
            .expect("create");
        expect_apply(&mut stream, "a", "0").await;
        cms.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": "1"}})),
        )
        .await
        .expect("patch");
        expect_apply(&mut stream, "a", "1").await;
        cms.delete("a", &DeleteParams::default())
            .await
            .expect("delete");
        loop {
            if let Event::Delete(c) = next(&mut stream).await {
                assert_eq!(c.name_any(), "a");
                break;
            }
        }

        // History compacted and watches cut: the watcher's resume gets 410 and it relists.
        emu.compact();
        cms.create(&PostParams::default(), &cm("after"))
            .await
            .expect("create");
        let (mut relisted, mut seen_after) = (false, false);
        while !(relisted && seen_after) {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("relist in time")
                .expect("stream open");
            match item {
                Ok(Event::Init) => relisted = true,
                Ok(Event::InitApply(c) | Event::Apply(c)) if c.name_any() == "after" => {
                    seen_after = true
                }
                // The 410 surfaces as one error item before the relist; the watcher recovers.
                Ok(_) | Err(_) => {}
            }
        }
        emu.shutdown().await;
    }
}

#[tokio::test]
async fn metadata_watcher() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let metas: Api<kube::core::PartialObjectMeta<ConfigMap>> =
        Api::namespaced(client.clone(), "default");
    let mut stream = watcher::watcher(metas, watcher::Config::default()).boxed();
    cms.create(&PostParams::default(), &cm("m"))
        .await
        .expect("create");
    loop {
        let ev = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("event in time")
            .expect("open")
            .expect("ok");
        if let Event::Apply(m) | Event::InitApply(m) = ev
            && m.name_any() == "m"
        {
            assert_eq!(
                m.types.map(|t| t.kind).as_deref(),
                Some("PartialObjectMetadata")
            );
            break;
        }
    }
    emu.shutdown().await;
}

#[tokio::test]
async fn raw_watch_semantics() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &cm("one"))
        .await
        .expect("create");
    let rv = first.resource_version().expect("rv");
    cms.patch(
        "one",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .expect("patch");

    // Resuming from an RV replays what happened since.
    let wp = WatchParams::default().timeout(2);
    let events: Vec<WatchEvent<ConfigMap>> = cms
        .watch(&wp, &rv)
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    assert!(
        matches!(events.first(), Some(WatchEvent::Modified(c)) if c.name_any() == "one"),
        "{events:?}"
    );

    // Label-selected watch: an object leaving the selection is DELETED for the watcher.
    let labelled: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "sel", "labels": {"pick": "yes"}}}))
            .expect("cm");
    cms.create(&PostParams::default(), &labelled)
        .await
        .expect("create");
    let list_rv = cms
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut stream = cms
        .watch(
            &WatchParams::default().labels("pick=yes").timeout(5),
            &list_rv,
        )
        .await
        .expect("watch")
        .boxed();
    cms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"pick": "no"}}})),
    )
    .await
    .expect("patch");
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .expect("in time")
        .expect("ok");
    assert!(
        matches!(ev, Some(WatchEvent::Deleted(ref c)) if c.name_any() == "sel"),
        "{ev:?}"
    );

    // A too-old RV is a 410 Expired error event.
    emu.compact();
    let mut old = cms
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .expect("watch")
        .boxed();
    match old.try_next().await.expect("ok") {
        Some(WatchEvent::Error(e)) => assert_eq!(e.code, 410),
        other => panic!("expected 410, got {other:?}"),
    }

    // Bookmarks arrive on a quiet watch that asked for them.
    let now_rv = cms
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    let mut quiet = cms
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default().timeout(10)
            },
            &now_rv,
        )
        .await
        .expect("watch")
        .boxed();
    let ev = tokio::time::timeout(Duration::from_secs(8), quiet.try_next())
        .await
        .expect("bookmark in time")
        .expect("ok");
    assert!(matches!(ev, Some(WatchEvent::Bookmark(_))), "{ev:?}");
    emu.shutdown().await;
}

/// Dozens of watches and concurrent writers: every watch sees every write, nothing deadlocks.
#[tokio::test]
async fn many_watches_and_writers() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&Default::default())
        .await
        .expect("list")
        .metadata
        .resource_version
        .expect("rv");
    const WRITERS: usize = 20;
    let mut watches = Vec::new();
    for _ in 0..30 {
        let stream = cms
            .watch(&WatchParams::default().timeout(20), &rv)
            .await
            .expect("watch");
        watches.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut seen = std::collections::BTreeSet::new();
            while seen.len() < WRITERS {
                match stream.try_next().await {
                    Ok(Some(WatchEvent::Added(c))) => {
                        seen.insert(c.name_any());
                    }
                    Ok(Some(_)) => {}
                    other => panic!("watch ended early: {other:?}"),
                }
            }
            seen.len()
        }));
    }
    let writers: Vec<_> = (0..WRITERS)
        .map(|i| {
            let cms = cms.clone();
            tokio::spawn(async move {
                cms.create(&PostParams::default(), &cm(&format!("c{i}")))
                    .await
                    .expect("create");
                cms.patch(
                    &format!("c{i}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"data": {"v": "1"}})),
                )
                .await
                .expect("patch");
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    for w in watches {
        let seen = tokio::time::timeout(Duration::from_secs(15), w)
            .await
            .expect("in time")
            .expect("watch task");
        assert_eq!(seen, WRITERS);
    }
    emu.shutdown().await;
}
