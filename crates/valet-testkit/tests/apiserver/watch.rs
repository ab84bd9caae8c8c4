//! Watches: events, metadata-only form, 410, scale.

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::core::WatchEvent;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use valet_testkit::apiserver::ApiServer;

use super::*;

#[tokio::test]
async fn watcher_sees_added_modified_deleted() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    server.insert(sa("ns", "before"))?;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "ns");
    let mut stream = spawn_events(watcher::watcher(
        api.clone(),
        watcher::Config::default().any_semantic(),
    ));

    match next_event(&mut stream, is_init_marker).await {
        Event::InitApply(s) => assert_eq!(s.metadata.name.as_deref(), Some("before")),
        other => panic!("expected the listed object, got {other:?}"),
    }
    assert!(
        server.wait_until(WAIT, |s| s.watch_count() == 1).await,
        "watch not opened"
    );

    api.create(&PostParams::default(), &sa("ns", "live"))
        .await?;
    match next_event(&mut stream, is_init_marker).await {
        Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("live")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let patch = json!({"metadata": {"labels": {"x": "1"}}});
    api.patch("live", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    match next_event(&mut stream, is_init_marker).await {
        Event::Apply(s) => assert_eq!(
            s.metadata
                .labels
                .unwrap_or_default()
                .get("x")
                .map(String::as_str),
            Some("1")
        ),
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    // A write from the test side is seen like any other.
    server.delete("v1", "ServiceAccount", "ns", "live")?;
    match next_event(&mut stream, is_init_marker).await {
        Event::Delete(s) => assert_eq!(s.metadata.name.as_deref(), Some("live")),
        other => panic!("expected DELETED, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn metadata_watcher_receives_partial_object_metadata() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let mut obj = sa("ns", "meta");
    obj.automount_service_account_token = Some(false);
    obj.metadata.annotations = Some(
        [(
            "eks.amazonaws.com/role-arn".to_string(),
            "arn:x".to_string(),
        )]
        .into(),
    );
    server.insert(obj)?;
    let api: Api<PartialObjectMeta<ServiceAccount>> = Api::namespaced(server.client(), "ns");
    let mut stream = spawn_events(watcher::watcher(api.clone(), watcher::Config::default()));
    match next_event(&mut stream, is_init_marker).await {
        Event::InitApply(m) => {
            assert_eq!(m.metadata.name.as_deref(), Some("meta"));
            assert_eq!(
                m.types.as_ref().map(|t| t.kind.as_str()),
                Some("PartialObjectMetadata")
            );
        }
        other => panic!("expected the listed metadata, got {other:?}"),
    }
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);
    server.insert(sa("ns", "second"))?;
    match next_event(&mut stream, is_init_marker).await {
        Event::Apply(m) => assert_eq!(m.metadata.name.as_deref(), Some("second")),
        other => panic!("expected ADDED metadata, got {other:?}"),
    }
    let watches: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("watch=true"))
        .collect();
    assert!(!watches.is_empty());

    // The wire form itself: only metadata, in meta.k8s.io/v1.
    let got = api.get_metadata("meta").await?;
    assert_eq!(
        got.metadata.annotations.unwrap_or_default()["eks.amazonaws.com/role-arn"],
        "arn:x"
    );
    let request = http::Request::get("/api/v1/namespaces/ns/serviceaccounts/meta")
        .header(
            "Accept",
            "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
        )
        .body(Vec::new())?;
    let raw: serde_json::Value =
        serde_json::from_str(&server.client().request_text(request).await?)?;
    assert_eq!(raw["apiVersion"], "meta.k8s.io/v1");
    assert!(raw.get("automountServiceAccountToken").is_none());
    Ok(())
}

#[tokio::test]
async fn watch_from_compacted_version_is_gone() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "g");
    let first = api.create(&PostParams::default(), &sa("g", "one")).await?;
    api.create(&PostParams::default(), &sa("g", "two")).await?;
    server.compact();
    let old_rv = first.metadata.resource_version.unwrap_or_default();
    let mut events = api
        .watch(&kube::api::WatchParams::default(), &old_rv)
        .await?
        .boxed();
    let ev = tokio::time::timeout(WAIT, events.next())
        .await?
        .expect("stream ended");
    match ev {
        Ok(kube::core::WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // A watch from the current version works and sees new writes.
    let now = server.resource_version().to_string();
    let mut events = api
        .watch(&kube::api::WatchParams::default(), &now)
        .await?
        .boxed();
    api.create(&PostParams::default(), &sa("g", "three"))
        .await?;
    match tokio::time::timeout(WAIT, events.next())
        .await?
        .expect("stream ended")?
    {
        kube::core::WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("three")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn serves_100k_service_accounts_to_a_paginated_metadata_watcher() -> anyhow::Result<()> {
    const N: usize = 100_000;
    let server = ApiServer::start().await;
    for i in 0..N {
        server.insert(sa(&format!("ns-{}", i % 100), &format!("sa-{i}")))?;
    }
    let api: Api<PartialObjectMeta<ServiceAccount>> = Api::all(server.client());
    let mut events = spawn_events(watcher::watcher(
        api,
        watcher::Config::default().page_size(500),
    ));
    let mut seen = 0;
    loop {
        match next_event(&mut events, |_| false).await {
            Event::InitApply(_) => seen += 1,
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen, N);
    let all: Api<ServiceAccount> = Api::all(server.client());
    let full = all.list(&ListParams::default()).await?;
    assert_eq!(full.items.len(), N);
    assert!(server.requests().len() > N / 500, "every page was logged");
    server.set_request_log(false);
    server.clear_requests();
    all.list(&ListParams::default().limit(1)).await?;
    assert!(server.requests().is_empty(), "logging was turned off");
    Ok(())
}

#[tokio::test]
async fn label_filtered_watch_sees_objects_enter_and_leave_the_selector() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "l");
    let config = watcher::Config::default().labels("team=storage");
    let mut events = spawn_events(watcher::watcher(api.clone(), config));
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::Init
    ));
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::InitDone
    ));
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);

    api.create(&PostParams::default(), &sa("l", "x")).await?;
    let label = |v: Option<&str>| Patch::Merge(json!({"metadata": {"labels": {"team": v}}}));
    api.patch("x", &PatchParams::default(), &label(Some("storage")))
        .await?;
    match next_event(&mut events, |_| false).await {
        Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("x")),
        other => panic!("expected the object entering the selector, got {other:?}"),
    }
    api.patch("x", &PatchParams::default(), &label(None))
        .await?;
    match next_event(&mut events, |_| false).await {
        Event::Delete(s) => assert_eq!(s.metadata.name.as_deref(), Some("x")),
        other => panic!("expected the object leaving the selector, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn streaming_list_watcher_gets_initial_events_and_the_end_bookmark() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    for name in ["a", "b", "c"] {
        server.insert(sa("s", name))?;
    }
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "s");
    let mut events = spawn_events(watcher::watcher(
        api.clone(),
        watcher::Config::default().streaming_lists(),
    ));
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::Init
    ));
    let mut names = Vec::new();
    loop {
        match next_event(&mut events, |_| false).await {
            Event::InitApply(s) => names.extend(s.metadata.name),
            Event::InitDone => break,
            other => panic!("unexpected event in the initial stream: {other:?}"),
        }
    }
    assert_eq!(names, ["a", "b", "c"]);
    let watch = server
        .requests()
        .into_iter()
        .find(|r| r.path.contains("sendInitialEvents=true"));
    assert!(watch.is_some(), "the watcher used a streaming list");
    api.create(&PostParams::default(), &sa("s", "d")).await?;
    match next_event(&mut events, |_| false).await {
        Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("d")),
        other => panic!("expected ADDED, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn raw_watch_gets_bookmarks_and_ends_at_its_timeout() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(50));
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "b");
    let rv = server.resource_version().to_string();
    let params = kube::api::WatchParams::default().timeout(1);
    let mut stream = api.watch(&params, &rv).await?.boxed();
    let first = tokio::time::timeout(WAIT, stream.next())
        .await?
        .expect("stream ended")?;
    match first {
        WatchEvent::Bookmark(b) => {
            assert!(b.metadata.resource_version.parse::<u64>()? >= rv.parse()?)
        }
        other => panic!("expected a BOOKMARK, got {other:?}"),
    }
    // timeoutSeconds=1: the server ends the stream by itself.
    let ended = tokio::time::timeout(WAIT, async {
        while let Some(ev) = stream.next().await {
            ev?;
        }
        Ok::<_, kube::Error>(())
    });
    ended.await??;
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 0).await);

    let no_bookmarks = kube::api::WatchParams {
        bookmarks: false,
        ..kube::api::WatchParams::default()
    };
    let mut quiet = api.watch(&no_bookmarks, &rv).await?.boxed();
    server.insert(sa("b", "only-event"))?;
    match tokio::time::timeout(WAIT, quiet.next())
        .await?
        .expect("stream ended")?
    {
        WatchEvent::Added(s) => assert_eq!(s.metadata.name.as_deref(), Some("only-event")),
        other => panic!("expected ADDED and no bookmark, got {other:?}"),
    }
    Ok(())
}
