//! Pipeline mode, the whole flow a team sees, with the real binary: its
//! files (a BucketClaim and a BucketAccess, under the platform's class and
//! policy) -> `valet broker apply` -> a bucket with the platform's defaults
//! -> a role -> the ServiceAccount manifest (`--write-service-accounts`) ->
//! `valet mutate` on the team's pod -> the AWS SDK for Python's default
//! credential chain, given only that pod's env and token, writes and reads
//! an object in the new bucket.
//!
//! AWS is moto (IAM, STS, S3); the cluster's issuer is the in-process HTTPS
//! OIDC issuer, whose tokens the app presents.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use valet_broker::config::BrokerConfig;
use valet_testkit::moto::Moto;
use valet_testkit::oidc::OidcIssuer;

const VALET: &str = env!("CARGO_BIN_EXE_valet");
const ACCOUNT: &str = "333300000001";
/// The class's region, not the broker's (eu-west-1): the pod must get it.
const BUCKET_REGION: &str = "eu-west-2";
/// `{cluster}-{namespace}-{name}`, the default nameTemplate.
const BUCKET: &str = "pipeline-team-a-media";

/// The README's walk-through files ("Pipeline mode"), so that it stays true.
const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pipeline");

/// The bucket as S3 holds it, read with boto3 through a role of the
/// bucket account (moto keeps each account's buckets apart).
const READ_BACK: &str = r#"
import boto3, json, os
kw = dict(endpoint_url=os.environ["MOTO"], region_name=os.environ["REGION"])
creds = boto3.client("sts", aws_access_key_id="AKIDOWNER", aws_secret_access_key="owner", **kw).assume_role(
    RoleArn="arn:aws:iam::%s:role/bucket-owner" % os.environ["ACCOUNT"], RoleSessionName="read-back")["Credentials"]
s3 = boto3.client("s3", aws_access_key_id=creds["AccessKeyId"], aws_secret_access_key=creds["SecretAccessKey"],
                  aws_session_token=creds["SessionToken"], **kw)
b = os.environ["BUCKET"]
names = [x["Name"] for x in s3.list_buckets()["Buckets"]]
if b not in names:
    print(json.dumps({"exists": False})); raise SystemExit
out = {"exists": True,
  "location": s3.get_bucket_location(Bucket=b)["LocationConstraint"],
  "public_access_block": s3.get_public_access_block(Bucket=b)["PublicAccessBlockConfiguration"],
  "ownership": s3.get_bucket_ownership_controls(Bucket=b)["OwnershipControls"]["Rules"][0]["ObjectOwnership"],
  "encryption": s3.get_bucket_encryption(Bucket=b)["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"],
  "versioning": s3.get_bucket_versioning(Bucket=b).get("Status"),
  "policy": json.loads(s3.get_bucket_policy(Bucket=b)["Policy"]),
  "tags": {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=b)["TagSet"]},
  "lifecycle": s3.get_bucket_lifecycle_configuration(Bucket=b)["Rules"]}
print(json.dumps(out))
"#;

/// The team's app: boto3's default chain and nothing else.
const APP: &str = r#"
import boto3, json, os
s3 = boto3.client("s3")
key = os.environ["S3_PREFIX"] + "hello.txt"
s3.put_object(Bucket=os.environ["S3_BUCKET"], Key=key, Body=b"written by the pod")
body = s3.get_object(Bucket=os.environ["S3_BUCKET"], Key=key)["Body"].read()
who = boto3.client("sts").get_caller_identity()
print(json.dumps({"body": body.decode(), "account": who["Account"], "arn": who["Arn"],
                  "region": boto3.session.Session().region_name}))
"#;

struct Pipeline {
    moto: Moto,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Pipeline {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `valet broker apply --config broker.yaml -f platform.yaml -f team-a.yaml [extra]`.
    async fn apply(&self, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["--config".into(), self.config.clone().into()];
        args.extend(["--oidc-ca-file".into(), self.path("ca.pem").into()]);
        for file in ["platform.yaml", "team-a.yaml"] {
            args.extend(["-f".into(), self.path(file).into()]);
        }
        args.extend(extra.iter().map(OsString::from));
        support::broker_apply(args).await
    }

    fn bucket(&self) -> Value {
        let out = Command::new("python3")
            .args(["-c", READ_BACK])
            .env("MOTO", self.moto.endpoint())
            .env("REGION", BUCKET_REGION)
            .env("ACCOUNT", ACCOUNT)
            .env("BUCKET", BUCKET)
            .output()
            .expect("python3 with boto3 (pip install boto3)");
        assert!(out.status.success(), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn drop_bucket_policy(&self) {
        let script = READ_BACK
            .split("b = os.environ")
            .next()
            .unwrap_or_default()
            .to_string()
            + "s3.delete_bucket_policy(Bucket=os.environ[\"BUCKET\"])\n";
        let out = Command::new("python3")
            .args(["-c", &script])
            .env("MOTO", self.moto.endpoint())
            .env("REGION", BUCKET_REGION)
            .env("ACCOUNT", ACCOUNT)
            .env("BUCKET", BUCKET)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\nstderr: {}",
        text(&out.stderr)
    );
    stdout
}

fn contains_all(haystack: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            haystack.contains(needle),
            "{needle:?} missing from:\n{haystack}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_gets_a_bucket_and_its_pod_writes_to_it_from_files_alone() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let moto = Moto::start().expect("moto_server (pip install 'moto[server]')");
    let issuer = OidcIssuer::start().await.expect("OIDC issuer");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), issuer.ca_pem()).unwrap();
    // The example's config, with this run's issuer and moto.
    let mut cfg = BrokerConfig::load(&Path::new(EXAMPLES).join("broker.yaml")).unwrap();
    assert_eq!(cfg.default_bucket_account.as_deref(), Some(ACCOUNT));
    cfg.oidc_issuer = Some(issuer.url());
    for endpoint in [
        &mut cfg.endpoints.iam,
        &mut cfg.endpoints.sts,
        &mut cfg.endpoints.s3,
    ] {
        *endpoint = Some(moto.endpoint());
    }
    let config = dir.path().join("broker.yaml");
    std::fs::write(&config, serde_yaml_ng::to_string(&cfg).unwrap()).unwrap();
    let p = Pipeline { moto, dir, config };
    for file in ["platform.yaml", "team-a.yaml", "pod.yaml"] {
        std::fs::copy(Path::new(EXAMPLES).join(file), p.path(file)).unwrap();
    }

    // The merge request's CI job: the plan, with every S3 and IAM change
    // and the policy documents, and nothing made.
    let plan = ok(&p.apply(&["--dry-run"]).await);
    contains_all(
        &plan,
        &[
            "BucketClaim team-a/media (",
            &format!("class standard: bucket {BUCKET} in account {ACCOUNT} ({BUCKET_REGION})"),
            "+ create bucket",
            "+ block public access",
            "+ object ownership BucketOwnerEnforced",
            "+ set bucket policy",
            "StorageValetDenyInsecureTransport",
            "+ default encryption AES256",
            "+ versioning Enabled",
            "+ abort incomplete multipart uploads after 7 days",
            "+ cost-center=media",
            &format!("IAM OIDC provider in account {ACCOUNT}"),
            "+ create or repair arn:aws:iam::333300000001:oidc-provider/",
            "BucketAccess team-a/media-app (",
            "allowed by BucketAccessPolicy claimed-buckets",
            "+ create role (trust policy, tags)",
            "\"sts:AssumeRoleWithWebIdentity\"",
            "system:serviceaccount:team-a:app",
            "+ put inline access policy",
            &format!("arn:aws:s3:::{BUCKET}/uploads/*"),
            "trust waits for the OIDC provider above",
            &format!("storage-valet.dev/bucket: {BUCKET}/uploads/"),
            &format!("storage-valet.dev/bucket-region: {BUCKET_REGION}"),
            "Dry run: nothing applied.",
        ],
    );
    assert_eq!(p.bucket()["exists"], false, "a dry run made the bucket");

    // The merge: applied, and the ServiceAccount written for GitOps.
    let sa_dir = p.path("serviceaccounts");
    let out = ok(&p
        .apply(&["--write-service-accounts", sa_dir.to_str().unwrap()])
        .await);
    contains_all(
        &out,
        &[
            "trust repaired",
            &format!("applied BucketClaim team-a/media: bucket {BUCKET} in {BUCKET_REGION}"),
            "applied BucketAccess team-a/media-app: arn:aws:iam::333300000001:role/",
            "wrote ",
        ],
    );
    let bucket = p.bucket();
    assert_eq!(bucket["location"], BUCKET_REGION, "{bucket}");
    for setting in [
        "BlockPublicAcls",
        "IgnorePublicAcls",
        "BlockPublicPolicy",
        "RestrictPublicBuckets",
    ] {
        assert_eq!(bucket["public_access_block"][setting], true, "{bucket}");
    }
    assert_eq!(bucket["ownership"], "BucketOwnerEnforced");
    assert_eq!(bucket["encryption"], "AES256");
    assert_eq!(bucket["versioning"], "Enabled");
    assert!(
        bucket["policy"].to_string().contains("aws:SecureTransport"),
        "{bucket}"
    );
    let tags = &bucket["tags"];
    assert_eq!(tags["cost-center"], "media");
    assert_eq!(tags["storage-valet.dev/managed-by"], "storage-valet");
    assert_eq!(tags["storage-valet.dev/namespace"], "team-a");
    assert_eq!(tags["storage-valet.dev/cluster"], "pipeline");
    assert_eq!(
        bucket["lifecycle"][0]["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"],
        7
    );

    // The next pipeline run: nothing to do.
    let again = ok(&p.apply(&[]).await);
    contains_all(
        &again,
        &["= no changes", "Plan: 0 change(s) to 2 object(s)"],
    );
    assert!(!again.contains("+ "), "{again}");

    // The cluster side: the ServiceAccount from Git, the pod through the
    // webhook's own mutation.
    let sa_file = sa_dir.join("team-a.app.yaml");
    let sa: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&sa_file).unwrap()).unwrap();
    assert_eq!(sa["kind"], "ServiceAccount");
    assert_eq!(sa["metadata"]["namespace"], "team-a");
    let pod = p.path("pod.yaml");
    let token_dir = p.path("token");
    std::fs::create_dir_all(&token_dir).unwrap();
    let out = Command::new(VALET)
        .args(["mutate", "--pod"])
        .arg(&pod)
        .arg("--service-account")
        .arg(&sa_file)
        .arg(format!("--token-mount-path={}", token_dir.display()))
        .output()
        .unwrap();
    let mutated: Value = serde_yaml_ng::from_str(&ok(&out)).unwrap();
    let env = pod_env(&mutated);
    let get = |k: &str| {
        env.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} not injected: {env:?}"))
    };
    assert_eq!(get("S3_BUCKET"), BUCKET);
    assert_eq!(get("AWS_REGION"), BUCKET_REGION);
    let token_file = get("AWS_WEB_IDENTITY_TOKEN_FILE");
    assert!(
        Path::new(&token_file).starts_with(&token_dir),
        "{token_file}"
    );
    // The kubelet's part: the projected token, from the cluster's issuer.
    let token = issuer
        .mint(
            "team-a",
            "app",
            &["sts.amazonaws.com"],
            Duration::from_secs(3600),
        )
        .unwrap();
    std::fs::write(&token_file, token).unwrap();

    // moto cannot evaluate the bucket's TLS-only policy: it judges bucket
    // policies with no request context, so its Deny on aws:SecureTransport
    // "false" refuses every object call, over TLS or not. The harness drops
    // the policy for the app's calls (the policy itself was checked above,
    // and valet-buckets' desired.rs tests judge it with valet-policy's
    // evaluator); the next apply must put it back as drift.
    p.drop_bucket_policy();

    let mut app = Command::new("python3");
    app.args(["-c", APP])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", p.dir.path())
        // The one thing a cluster would not set: where AWS is.
        .env("AWS_ENDPOINT_URL", p.moto.endpoint());
    for (k, v) in &env {
        app.env(k, v);
    }
    assert!(
        !env.iter().any(|(k, _)| k.starts_with("AWS_ACCESS_KEY")),
        "static keys in the pod: {env:?}"
    );
    let out = app.output().unwrap();
    let stdout = text(&out.stdout);
    println!("pod env: {env:?}\napp output: {stdout}");
    assert!(
        out.status.success(),
        "the app failed: {}",
        text(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(result["body"], "written by the pod");
    assert_eq!(result["account"], ACCOUNT);
    assert_eq!(result["region"], BUCKET_REGION);
    assert!(
        result["arn"]
            .as_str()
            .unwrap_or_default()
            .contains(":assumed-role/pipeline-team-a-app-"),
        "{result}"
    );

    // The dropped policy is drift: the next pipeline run restores it, and
    // only it.
    let repaired = ok(&p.apply(&[]).await);
    contains_all(
        &repaired,
        &["~ set bucket policy", "Plan: 1 change(s) to 2 object(s)"],
    );
    assert!(
        p.bucket()["policy"]
            .to_string()
            .contains("aws:SecureTransport"),
        "the TLS-only policy is back"
    );

    // The team narrows its grant to read: the plan shows the access
    // policy's change as a diff, the write statement's lines removed.
    let team_a = std::fs::read_to_string(p.path("team-a.yaml")).unwrap();
    std::fs::write(
        p.path("team-a.yaml"),
        team_a.replace("access: readwrite", "access: read"),
    )
    .unwrap();
    let narrowed = ok(&p.apply(&["--dry-run"]).await);
    contains_all(
        &narrowed,
        &[
            "~ put inline access policy",
            "-         \"s3:PutObject\",",
            "-       \"Sid\": \"Write0\"",
            "          \"s3:GetObject\",",
            "Plan: 1 change(s) to 2 object(s)",
        ],
    );
    assert!(!narrowed.contains("+         \"s3:"), "{narrowed}");
}

/// The first container's env as (name, value).
fn pod_env(pod: &Value) -> Vec<(String, String)> {
    pod["spec"]["containers"][0]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e["name"].as_str()?.to_string(),
                e["value"].as_str()?.to_string(),
            ))
        })
        .collect()
}
