//! Object verbs: create, get, list, patch, delete, status.

use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use valet_testkit::apiserver::{ApiServer, Verb};

use super::*;

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
async fn generate_name_and_delete_collection() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<Pod> = Api::namespaced(server.client(), "g");
    let mut pod = Pod::default();
    pod.metadata.generate_name = Some("worker-".into());
    pod.metadata.labels = Some([("app".to_string(), "w".to_string())].into());
    let a = api.create(&PostParams::default(), &pod).await?;
    let b = api.create(&PostParams::default(), &pod).await?;
    let (na, nb) = (
        a.metadata.name.unwrap_or_default(),
        b.metadata.name.unwrap_or_default(),
    );
    assert!(
        na.starts_with("worker-") && na.len() == "worker-".len() + 5,
        "{na}"
    );
    assert_ne!(na, nb);
    let mut other = Pod::default();
    other.metadata.name = Some("other".into());
    api.create(&PostParams::default(), &other).await?;

    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("app=w"),
        )
        .await?;
    let deleted = deleted.left().expect("a list of the deleted objects");
    assert_eq!(deleted.items.len(), 2);
    assert_eq!(server.count("v1", "Pod"), 1);
    let left: Vec<Pod> = server.list_typed();
    assert_eq!(left[0].metadata.name.as_deref(), Some("other"));
    assert!(server.get_typed::<Pod>("g", "other").is_some());
    Ok(())
}

#[tokio::test]
async fn unknown_resources_and_bad_requests_are_status_errors() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let client = server.client();
    let get = |path: &str| http::Request::get(path).body(Vec::new());
    let (code, reason) = api_status(
        client
            .request_text(get("/apis/nope.dev/v1/things")?)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    let bad = get("/api/v1/serviceaccounts?labelSelector=a%20in%20b")?;
    let (code, reason) = api_status(client.request_text(bad).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (400, "BadRequest"));
    let bad = get("/api/v1/serviceaccounts?continue=garbage")?;
    assert_eq!(
        api_status(client.request_text(bad).await.unwrap_err()).0,
        400
    );

    // A continue token from before a compaction has expired.
    for i in 0..3 {
        server.insert(sa("c", &format!("s{i}")))?;
    }
    let api: Api<ServiceAccount> = Api::namespaced(client, "c");
    let page = api.list(&ListParams::default().limit(1)).await?;
    let token = page.metadata.continue_.expect("more pages");
    server.insert(sa("c", "later"))?;
    server.compact();
    let (code, reason) = api_status(
        api.list(&ListParams::default().limit(1).continue_token(&token))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (410, "Expired"));
    Ok(())
}

#[tokio::test]
async fn kube_finalizer_helper_adds_runs_cleanup_and_releases() -> anyhow::Result<()> {
    use kube::runtime::controller::Action;
    use kube::runtime::finalizer::{Event as Fin, finalizer};
    use std::sync::Arc;

    const NAME: &str = "storage-valet.dev/cleanup";
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "fz");
    api.create(&PostParams::default(), &sa("fz", "x")).await?;

    let step = |obj: ServiceAccount| {
        let api = api.clone();
        async move {
            finalizer(&api, NAME, Arc::new(obj), |ev| async move {
                Ok::<_, std::io::Error>(match ev {
                    Fin::Apply(_) => Action::await_change(),
                    Fin::Cleanup(_) => Action::await_change(),
                })
            })
            .await
        }
    };
    // First pass: the helper adds its finalizer with a JSON patch that tests
    // the absent list against null.
    step(api.get("x").await?).await?;
    assert_eq!(
        api.get("x").await?.metadata.finalizers,
        Some(vec![NAME.to_string()])
    );
    step(api.get("x").await?).await?;

    api.delete("x", &DeleteParams::default()).await?;
    let deleting = api.get("x").await?;
    assert!(deleting.metadata.deletion_timestamp.is_some());
    step(deleting).await?;
    assert!(
        api.get_opt("x").await?.is_none(),
        "released once cleanup ran"
    );
    Ok(())
}
