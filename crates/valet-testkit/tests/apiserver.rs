//! The in-process API server driven by the real kube-rs client.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::mpsc;
use valet_testkit::apiserver::{ApiServer, Verb};

const WAIT: Duration = Duration::from_secs(20);

fn sa(ns: &str, name: &str) -> ServiceAccount {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.to_string());
    sa.metadata.namespace = Some(ns.to_string());
    sa
}

fn api_status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API Status error, got {other:?}"),
    }
}

/// Polls a watcher in the background (a watcher only opens its watch while
/// polled) and hands its events over a channel.
fn spawn_events<K: Send + 'static>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> mpsc::UnboundedReceiver<Event<K>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("watcher error (it retries): {e}"),
            }
        }
    });
    rx
}

/// The next event, skipping those `skip` says are noise; fails after WAIT.
async fn next_event<K>(
    events: &mut mpsc::UnboundedReceiver<Event<K>>,
    skip: impl Fn(&Event<K>) -> bool,
) -> Event<K> {
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no watch event within the deadline")
            .expect("watch stream ended");
        if !skip(&ev) {
            return ev;
        }
    }
}

fn is_init_marker<K>(ev: &Event<K>) -> bool {
    matches!(ev, Event::Init | Event::InitDone)
}

#[tokio::test]
async fn create_get_list_with_pagination_and_selectors() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let client = server.client();
    let a: Api<ServiceAccount> = Api::namespaced(client.clone(), "a");
    for i in 0..25 {
        let mut obj = sa("a", &format!("sa-{i:02}"));
        if i % 5 == 0 {
            obj.metadata.labels = Some([("tier".to_string(), "gold".to_string())].into());
        }
        a.create(&PostParams::default(), &obj).await?;
    }
    let b: Api<ServiceAccount> = Api::namespaced(client.clone(), "b");
    for i in 0..3 {
        b.create(&PostParams::default(), &sa("b", &format!("other-{i}")))
            .await?;
    }

    let got = a.get("sa-07").await?;
    assert_eq!(got.metadata.namespace.as_deref(), Some("a"));
    assert!(got.metadata.uid.is_some() && got.metadata.creation_timestamp.is_some());
    let (code, reason) = api_status(
        a.create(&PostParams::default(), &sa("a", "sa-07"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    let (code, reason) = api_status(a.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));

    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut remaining = Vec::new();
    loop {
        let page = a.list(&lp).await?;
        names.extend(page.items.iter().filter_map(|s| s.metadata.name.clone()));
        remaining.push(page.metadata.remaining_item_count);
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => lp = lp.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(names.len(), 25);
    assert_eq!(names[0], "sa-00");
    assert_eq!(names[24], "sa-24");
    assert_eq!(remaining, vec![Some(15), Some(5), None]);

    let all: Api<ServiceAccount> = Api::all(client.clone());
    assert_eq!(all.list(&ListParams::default()).await?.items.len(), 28);
    let gold = a.list(&ListParams::default().labels("tier=gold")).await?;
    assert_eq!(gold.items.len(), 5);
    let one = all
        .list(&ListParams::default().fields("metadata.name=other-1"))
        .await?;
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].metadata.namespace.as_deref(), Some("b"));
    assert_eq!(server.verb_count(Verb::Create), 29);
    Ok(())
}

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
async fn merge_json_and_apply_patches() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "p");
    let created = api.create(&PostParams::default(), &sa("p", "x")).await?;

    let merged = api
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "1", "b": "2"}}})),
        )
        .await?;
    let rv1: u64 = merged
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default()
        .parse()?;
    assert!(
        rv1 > created
            .metadata
            .resource_version
            .unwrap_or_default()
            .parse()?
    );

    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "remove", "path": "/metadata/labels/b"},
        {"op": "add", "path": "/metadata/annotations", "value": {"eks.amazonaws.com~role": "r"}}
    ]))?;
    let jsoned = api
        .patch("x", &PatchParams::default(), &Patch::Json::<()>(ops))
        .await?;
    let labels = jsoned.metadata.labels.unwrap_or_default();
    assert_eq!(labels.len(), 1);
    assert_eq!(
        jsoned.metadata.annotations.unwrap_or_default()["eks.amazonaws.com~role"],
        "r"
    );

    // Server-side apply: merges into an existing object and creates a new one.
    let applied = api
        .patch(
            "x",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "x", "labels": {"c": "3"}}})),
        )
        .await?;
    assert_eq!(applied.metadata.labels.unwrap_or_default().len(), 2);
    let fresh = api
        .patch(
            "y",
            &PatchParams::apply("test"),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "y"}}),
            ),
        )
        .await?;
    assert!(fresh.metadata.uid.is_some());

    // A stale resourceVersion in a patch or an update conflicts.
    let stale = json!({"metadata": {"resourceVersion": rv1.to_string(), "labels": {"d": "4"}}});
    let (code, reason) = api_status(
        api.patch("x", &PatchParams::default(), &Patch::Merge(stale))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    let mut old = merged.clone();
    old.metadata.labels = None;
    let (code, _) = api_status(
        api.replace("x", &PostParams::default(), &old)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 409);
    assert!(
        server
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path.contains("fieldManager=test"))
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<Pod> = Api::namespaced(server.client(), "f");
    let mut pod = Pod::default();
    pod.metadata.name = Some("held".into());
    pod.metadata.finalizers = Some(vec!["storage-valet.dev/cleanup".into()]);
    api.create(&PostParams::default(), &pod).await?;

    api.delete("held", &DeleteParams::default()).await?;
    let marked = api.get("held").await?;
    assert!(
        marked.metadata.deletion_timestamp.is_some(),
        "deletionTimestamp not set"
    );

    let clear = json!({"metadata": {"finalizers": null}});
    api.patch("held", &PatchParams::default(), &Patch::Merge(clear))
        .await?;
    let (code, _) = api_status(api.get("held").await.unwrap_err());
    assert_eq!(code, 404);

    let mut plain = Pod::default();
    plain.metadata.name = Some("plain".into());
    api.create(&PostParams::default(), &plain).await?;
    api.delete("plain", &DeleteParams::default()).await?;
    assert!(server.get("v1", "Pod", "f", "plain").is_none());
    Ok(())
}

fn bucket_access_api(server: &ApiServer, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("storage-valet.dev", "v1alpha1", "BucketAccess");
    Api::namespaced_with(
        server.client(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "bucketaccesses"),
    )
}

#[tokio::test]
async fn status_subresource_changes_only_status() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api = bucket_access_api(&server, "team");
    let obj: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "storage-valet.dev/v1alpha1",
        "kind": "BucketAccess",
        "metadata": {"name": "ba"},
        "spec": {"bucket": "b1"},
        "status": {"phase": "ignored-on-create"}
    }))?;
    let created = api.create(&PostParams::default(), &obj).await?;
    assert!(
        created.data.get("status").is_none(),
        "status must be dropped on create"
    );
    assert_eq!(created.metadata.generation, Some(1));

    let status_patch = json!({"status": {"phase": "Ready"}, "spec": {"bucket": "changed"}});
    let after = api
        .patch_status("ba", &PatchParams::default(), &Patch::Merge(&status_patch))
        .await?;
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.data["spec"]["bucket"], "b1");
    assert_eq!(after.metadata.generation, Some(1));

    let main_patch = json!({"status": {"phase": "Nope"}, "spec": {"bucket": "b2"}});
    let after = api
        .patch("ba", &PatchParams::default(), &Patch::Merge(&main_patch))
        .await?;
    assert_eq!(after.data["status"]["phase"], "Ready");
    assert_eq!(after.data["spec"]["bucket"], "b2");
    assert_eq!(
        after.metadata.generation,
        Some(2),
        "a spec change bumps generation"
    );
    let status = api.get_status("ba").await?;
    assert_eq!(status.data["status"]["phase"], "Ready");
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
async fn set_down_fails_requests_then_recovers() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "d");
    api.create(&PostParams::default(), &sa("d", "kept")).await?;
    let port = server.addr().port();
    server.set_down(true).await;
    assert!(
        api.get("kept").await.is_err(),
        "a request to a down server must fail"
    );
    server.set_down(false).await;
    assert_eq!(server.addr().port(), port);
    let got = api.get("kept").await?;
    assert_eq!(got.metadata.name.as_deref(), Some("kept"));

    // 500, not 503: kube's client retries 429/503/504 by itself.
    server.fail_next("GET", "/api/v1/namespaces/d/serviceaccounts/kept", 500);
    let (code, reason) = api_status(api.get("kept").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (500, "InternalError"));
    api.get("kept").await?;
    Ok(())
}
