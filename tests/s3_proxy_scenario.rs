//! The S3-proxy app, as it runs in a cluster: the real `valet webhook`
//! mutates its pod (ServiceAccount from the in-process API server), and the
//! AWS SDK's default credential chain (boto3), given only that pod's env, the
//! token file at the injected path and an endpoint pointing at moto, assumes
//! the role in the bucket account and reads the object at S3_PREFIX in
//! S3_BUCKET. No static keys reach the app.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::*;
use valet_testkit::moto::Moto;
use valet_testkit::oidc::OidcIssuer;

const BUCKET_ACCOUNT: &str = "222222222222";
const ROLE: &str = "arn:aws:iam::222222222222:role/storage-valet/team-a-s3-proxy";

/// Creates the role, the bucket and the object in moto's bucket account, as
/// the broker and the data owner would have (the harness's keys, never the
/// app's: moto takes a 12-digit access key as the account).
fn seed_bucket_account(moto: &Moto) {
    let script = r#"
import boto3, json, os
kw = dict(endpoint_url=os.environ["MOTO"], region_name="eu-west-1",
          aws_access_key_id=os.environ["ACCOUNT"], aws_secret_access_key="harness")
iam = boto3.client("iam", **kw)
iam.create_role(Path="/storage-valet/", RoleName="team-a-s3-proxy",
    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity",
        "Principal": {"Federated": "arn:aws:iam::%s:oidc-provider/cluster" % os.environ["ACCOUNT"]}}]}))
s3 = boto3.client("s3", **kw)
s3.create_bucket(Bucket="acme-media", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
s3.put_object(Bucket="acme-media", Key="team-a/hello.txt", Body=b"hello from the bucket account")
"#;
    let out = Command::new("python3")
        .args(["-c", script])
        .env("MOTO", moto.endpoint())
        .env("ACCOUNT", BUCKET_ACCOUNT)
        .output()
        .expect("python3 with boto3 (pip install boto3)");
    assert!(
        out.status.success(),
        "seeding moto failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The app: boto3's default chain and nothing else.
const APP: &str = r#"
import boto3, json, os
s3 = boto3.client("s3")
body = s3.get_object(Bucket=os.environ["S3_BUCKET"], Key=os.environ["S3_PREFIX"] + "hello.txt")["Body"].read()
who = boto3.client("sts").get_caller_identity()
print(json.dumps({"body": body.decode(), "account": who["Account"], "arn": who["Arn"],
                  "region": boto3.session.Session().region_name}))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_proxy_reads_its_prefix_with_only_the_injected_env() {
    let moto = Moto::start().expect("moto_server (pip install 'moto[server]')");
    seed_bucket_account(&moto);
    let issuer = OidcIssuer::start().await.unwrap();
    let cluster = Cluster::start(&[sa(
        "team-a",
        "s3-proxy",
        json!({
            "eks.amazonaws.com/role-arn": ROLE,
            "storage-valet.dev/bucket": "acme-media/team-a/",
            "storage-valet.dev/bucket-region": "eu-west-1",
        }),
    )])
    .await;
    // The kubelet's projected volume, where the webhook says it is.
    let mount = tempfile::tempdir().unwrap();
    let hook = cluster.spawn(
        Path::new(env!("CARGO_BIN_EXE_valet")),
        &[
            "webhook".into(),
            format!("--token-mount-path={}", mount.path().display()),
        ],
    );
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;

    let app = pod("s3-proxy", json!([]));
    let mutated = patched(
        &app,
        &admit(&c, hook.port, &review("u1", "team-a", app.clone())).await,
    );
    let container = &mutated["spec"]["containers"][0];
    let volume = &mutated["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"];
    let token_path = mount.path().join(volume["path"].as_str().unwrap());
    let audience = volume["audience"].as_str().unwrap();
    let ttl = Duration::from_secs(volume["expirationSeconds"].as_u64().unwrap());
    std::fs::write(
        &token_path,
        issuer.mint("team-a", "s3-proxy", &[audience], ttl).unwrap(),
    )
    .unwrap();

    let mut app = Command::new("python3");
    app.args(["-c", APP])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", mount.path())
        // The one thing a cluster would not set: where AWS is.
        .env("AWS_ENDPOINT_URL", moto.endpoint());
    let env = env_of(&mutated);
    for var in &env {
        let (k, v) = var.split_once('=').unwrap();
        app.env(k, v);
    }
    println!("pod env injected by valet webhook:");
    for var in &env {
        println!("  {var}");
    }
    assert!(
        !env.iter()
            .any(|v| v.starts_with("AWS_ACCESS_KEY_ID") || v.starts_with("AWS_SECRET")),
        "static keys in the pod: {env:?}"
    );
    let out = app.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("app output: {stdout}");
    assert!(
        out.status.success(),
        "the app failed: {}\nits env: {env:?}\ncontainer: {container}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["body"], "hello from the bucket account");
    assert_eq!(result["account"], BUCKET_ACCOUNT);
    assert_eq!(result["region"], "eu-west-1");
    assert!(
        result["arn"]
            .as_str()
            .unwrap()
            .starts_with("arn:aws:sts::222222222222:assumed-role/team-a-s3-proxy/"),
        "{result}"
    );
}
