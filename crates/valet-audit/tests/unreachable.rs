//! `valet audit` when it cannot reach or read the cluster: a clear error
//! (exit 2 in main), never a partial report presented as complete.

mod support;

use support::args;
use valet_testkit::apiserver::ApiServer;

#[tokio::test]
async fn unreachable_api_server_is_a_clear_error() {
    let server = ApiServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = server.write_kubeconfig(dir.path()).expect("kubeconfig");
    server.set_down(true).await;
    let a = args(&["--kubeconfig", path.to_str().expect("utf-8")]);
    let err = valet_audit::run(a).await.expect_err("no server");
    let msg = err.to_string();
    assert!(msg.contains("cannot list serviceaccounts"), "{msg}");
    assert!(msg.contains("reachable"), "{msg}");
    assert_eq!(valet_audit::cli::EXIT_ERROR, 2);

    let a = args(&["--kubeconfig", "/nonexistent/kubeconfig"]);
    let msg = valet_audit::run(a).await.expect_err("no file").to_string();
    assert!(msg.contains("/nonexistent/kubeconfig"), "{msg}");
}
