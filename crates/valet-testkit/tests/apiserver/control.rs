//! Test controls: outages, faults, token issuer, OIDC documents, kubeconfig,
//! request log, discovery.

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ListParams, PostParams};
use kube::core::GroupVersionKind;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use valet_testkit::apiserver::{ApiServer, ResourceDef, Verb};

use super::*;

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

    // Faults match by method and path prefix, and are used up in order.
    server.fail_times("get", "/api/v1/namespaces/d/", 500, 2);
    assert!(api.list(&ListParams::default()).await.is_err());
    assert!(api.get("kept").await.is_err());
    api.get("kept").await?;
    Ok(())
}

#[tokio::test]
async fn watcher_resumes_after_an_outage_and_relists_after_410() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "o");
    let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
    let mut events = spawn_events(stream);
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::Init
    ));
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::InitDone
    ));
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);

    // Down: the watch is cut. A write made meanwhile is replayed on resume.
    server.set_down(true).await;
    assert_eq!(server.watch_count(), 0);
    server.insert(sa("o", "while-down"))?;
    server.set_down(false).await;
    match next_event(&mut events, is_init_marker).await {
        Event::Apply(s) => assert_eq!(s.metadata.name.as_deref(), Some("while-down")),
        other => panic!("expected the missed ADDED after resuming, got {other:?}"),
    }

    // Down again, and the history is compacted: the resumed watch gets 410
    // and the watcher starts over with a fresh list.
    assert!(server.wait_until(WAIT, |s| s.watch_count() == 1).await);
    server.set_down(true).await;
    server.insert(sa("o", "after-compaction"))?;
    server.compact();
    server.set_down(false).await;
    assert!(matches!(
        next_event(&mut events, |_| false).await,
        Event::Init
    ));
    let mut relisted = Vec::new();
    loop {
        match next_event(&mut events, |_| false).await {
            Event::InitApply(s) => relisted.extend(s.metadata.name),
            Event::InitDone => break,
            other => panic!("unexpected event during the relist: {other:?}"),
        }
    }
    relisted.sort();
    assert_eq!(relisted, ["after-compaction", "while-down"]);
    Ok(())
}

#[tokio::test]
async fn token_requests_go_to_the_installed_issuer() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "t");
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(vec!["sts.amazonaws.com".into()]),
            expiration_seconds: Some(900),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, _) = api_status(
        api.create_token_request("app", &PostParams::default(), &request)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404, "no such service account");

    server.insert(sa("t", "app"))?;
    let (code, _) = api_status(
        api.create_token_request("app", &PostParams::default(), &request)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 500, "no issuer installed");

    server.set_token_issuer(|ns, name, audiences, exp| {
        format!("{ns}/{name}/{}/{exp}", audiences.join(","))
    });
    let got = api
        .create_token_request("app", &PostParams::default(), &request)
        .await?;
    let status = got.status.expect("TokenRequest status");
    assert_eq!(status.token.as_deref(), Some("t/app/sts.amazonaws.com/900"));
    assert_eq!(server.verb_count(Verb::Create), 3);
    Ok(())
}

#[tokio::test]
async fn serves_oidc_documents_set_by_the_test() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let client = server.client();
    let get = |path: &str| http::Request::get(path).body(Vec::new());
    let (code, _) = api_status(
        client
            .request_text(get("/.well-known/openid-configuration")?)
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);
    server.set_oidc_discovery(
        json!({"issuer": "https://issuer.test", "jwks_uri": "https://issuer.test/keys"}),
    );
    server.set_oidc_jwks(json!({"keys": []}));
    let doc: serde_json::Value = client
        .request(get("/.well-known/openid-configuration")?)
        .await?;
    assert_eq!(doc["issuer"], "https://issuer.test");
    let jwks: serde_json::Value = client.request(get("/openid/v1/jwks")?).await?;
    assert_eq!(jwks, json!({"keys": []}));
    Ok(())
}

#[tokio::test]
async fn kubeconfig_file_reaches_the_server() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    server.insert(sa("default", "from-kubeconfig"))?;
    let dir = tempfile::tempdir()?;
    let path = server.write_kubeconfig(dir.path())?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)?;
    let options = kube::config::KubeConfigOptions::default();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await?;
    assert_eq!(
        config.cluster_url.to_string().trim_end_matches('/'),
        server.url()
    );
    let api: Api<ServiceAccount> = Api::default_namespaced(kube::Client::try_from(config)?);
    assert_eq!(
        api.get("from-kubeconfig").await?.metadata.name.as_deref(),
        Some("from-kubeconfig")
    );
    Ok(())
}

#[tokio::test]
async fn request_log_and_counters_record_what_the_client_did() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    let api: Api<ServiceAccount> = Api::namespaced(server.client(), "r");
    api.create(&PostParams::default(), &sa("r", "x")).await?;
    api.list(&ListParams::default().labels("a=b")).await?;
    let log = server.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str()),
        ("POST", "/api/v1/namespaces/r/serviceaccounts?")
    );
    assert!(log[0].body.contains("\"name\":\"x\""));
    assert!(
        log[1].path.contains("labelSelector=a%3Db"),
        "{}",
        log[1].path
    );
    assert_eq!(
        (server.verb_count(Verb::List), server.write_count()),
        (1, 1)
    );
    server.clear_requests();
    assert!(server.requests().is_empty());
    Ok(())
}

#[tokio::test]
async fn discovery_finds_registered_and_crd_declared_types() -> anyhow::Result<()> {
    let server = ApiServer::start().await;
    server.register(ResourceDef::cluster(
        "example.dev",
        "v1",
        "Widget",
        "widgets",
    ));
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "gadgets.example.org"},
        "spec": {
            "group": "example.org",
            "scope": "Namespaced",
            "names": {"kind": "Gadget", "plural": "gadgets"},
            "versions": [{"name": "v2", "served": true, "storage": true, "subresources": {"status": {}}}]
        }
    });
    let crds: Api<kube::core::DynamicObject> = Api::all_with(
        server.client(),
        &kube::core::ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    crds.create(&PostParams::default(), &serde_json::from_value(crd)?)
        .await?;

    let discovery = kube::Discovery::new(server.client()).run().await?;
    assert!(discovery.has_group("example.dev"));
    let (sa_res, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ServiceAccount"))
        .expect("serviceaccounts discovered");
    assert_eq!(sa_res.plural, "serviceaccounts");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    let (gadget, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.org", "v2", "Gadget"))
        .expect("the CRD's type is served");
    assert_eq!(gadget.plural, "gadgets");
    assert!(
        caps.subresources
            .iter()
            .any(|(r, _)| r.plural == "gadgets/status" || r.plural == "status")
    );
    let gadgets: Api<kube::core::DynamicObject> =
        Api::namespaced_with(server.client(), "ns", &gadget);
    let obj = json!({"apiVersion": "example.org/v2", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {}});
    gadgets
        .create(&PostParams::default(), &serde_json::from_value(obj)?)
        .await?;
    assert!(server.get("example.org/v2", "Gadget", "ns", "g").is_some());
    Ok(())
}
