//! `valet broker apply -f`, the real binary, against moto and an HTTPS OIDC
//! issuer: the exit codes pipelines branch on (DESIGN.md "Pipeline mode"):
//! 0 done or nothing to do, 1 refused input / not permitted / a trust link
//! failing (also with `--dry-run`), 2 could not run.
//!
//! Every AWS call of the binary goes through a counting proxy in front of
//! moto, so "refused with no AWS call" is a count of zero, and moto's roles
//! are listed before and after to show its state did not change.

mod support;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use valet_broker::accounts::Accounts;
use valet_broker::config::{BrokerConfig, BucketAccountConfig};
use valet_broker::iam::IamProbe;
use valet_testkit::moto::Moto;
use valet_testkit::oidc::OidcIssuer;
use valet_trust::aws::{AwsClients, AwsConfig};

const VALET: &str = env!("CARGO_BIN_EXE_valet");

/// The platform's policy: team-a may read and write its own prefix of
/// acme-media, nobody else anything.
const POLICY: &str = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccessPolicy
metadata: { name: team-a-media }
spec:
  namespaces: ["team-a"]
  buckets:
    - { name: acme-media, prefixes: ["{namespace}/"], maxAccess: readwrite }
"#;

fn access(namespace: &str, bucket_line: &str) -> String {
    format!(
        r#"{POLICY}
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: {{ name: media, namespace: {namespace} }}
spec:
  serviceAccountName: media-app
  buckets:
    - {bucket_line}
"#
    )
}

fn permitted() -> String {
    access(
        "team-a",
        "{ name: acme-media, prefix: team-a/, access: readwrite }",
    )
}

/// A TCP proxy to moto that counts the connections the binary opens.
struct CountingProxy {
    endpoint: String,
    connections: Arc<AtomicUsize>,
}

impl CountingProxy {
    async fn start(target: u16) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    if let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        CountingProxy {
            endpoint,
            connections,
        }
    }

    fn count(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

struct Setup {
    moto: Moto,
    proxy: CountingProxy,
    oidc: OidcIssuer,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn start() -> Setup {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let moto = Moto::start().expect("moto_server (pip install 'moto[server]')");
        let proxy = CountingProxy::start(moto.port()).await;
        let oidc = OidcIssuer::start().await.expect("OIDC issuer");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), oidc.ca_pem()).unwrap();
        Setup {
            moto,
            proxy,
            oidc,
            dir,
        }
    }

    /// The broker config for `account`, with IAM and STS through the proxy.
    fn config(&self, account: &str, issuer: &str, create_provider: bool) -> BrokerConfig {
        let mut cfg = BrokerConfig::new("apply-cli", "eu-west-1");
        cfg.oidc_issuer = Some(issuer.to_string());
        cfg.default_bucket_account = Some(account.to_string());
        cfg.create_oidc_provider = create_provider;
        cfg.bucket_accounts.insert(
            account.to_string(),
            BucketAccountConfig {
                provisioning_role_arn: Some(format!(
                    "arn:aws:iam::{account}:role/valet-provisioner"
                )),
                external_id: Some("apply-cli".into()),
                ..BucketAccountConfig::default()
            },
        );
        cfg.endpoints.iam = Some(self.proxy.endpoint.clone());
        cfg.endpoints.sts = Some(self.proxy.endpoint.clone());
        cfg.endpoints.s3 = Some(self.proxy.endpoint.clone());
        cfg
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    fn write_config(&self, name: &str, cfg: &BrokerConfig) -> PathBuf {
        self.write(name, &serde_yaml_ng::to_string(cfg).unwrap())
    }

    /// `valet broker apply --config CONFIG -f FILE [extra]`, the binary's own process.
    async fn apply(&self, config: &Path, file: &Path, extra: &[&str]) -> Output {
        let mut args: Vec<OsString> = vec!["--config".into(), config.into()];
        args.extend([
            "--oidc-ca-file".into(),
            self.dir.path().join("ca.pem").into(),
        ]);
        args.extend(["-f".into(), file.into()]);
        args.extend(extra.iter().map(OsString::from));
        support::broker_apply(args).await
    }

    /// The bucket account's clients, straight to moto (not through the proxy).
    async fn direct(&self, account: &str) -> Accounts {
        let mut cfg = self.config(account, &self.oidc.url(), false);
        cfg.endpoints.iam = Some(self.moto.endpoint());
        cfg.endpoints.sts = Some(self.moto.endpoint());
        cfg.endpoints.s3 = Some(self.moto.endpoint());
        let aws = AwsClients::load(&AwsConfig {
            region: Some("eu-west-1".into()),
            iam_endpoint: cfg.endpoints.iam.clone(),
            sts_endpoint: cfg.endpoints.sts.clone(),
            credentials: Some(
                aws_credential_types::provider::SharedCredentialsProvider::new(
                    aws_credential_types::Credentials::new("AKIDTEST", "secret", None, None, "t"),
                ),
            ),
        })
        .await;
        Accounts::new(aws, Arc::new(cfg), Arc::new(IamProbe::default()))
    }

    /// S3 in `account` (eu-west-1), straight to moto.
    async fn s3(&self, account: &str) -> aws_sdk_s3::Client {
        let accounts = self.direct(account).await;
        let s3 = accounts
            .s3(account, "eu-west-1")
            .await
            .expect("bucket account");
        s3.client().clone()
    }

    /// Role names in `account`, read straight from moto (not through the proxy).
    async fn roles(&self, account: &str) -> Vec<String> {
        let accounts = self.direct(account).await;
        let clients = accounts.get(account).await.expect("bucket account");
        let out = clients
            .iam
            .client()
            .list_roles()
            .send()
            .await
            .expect("ListRoles");
        let mut names: Vec<String> = out
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .collect();
        names.sort();
        names
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(out: &Output) -> Option<i32> {
    out.status.code()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_of_broker_apply() {
    let s = Setup::start().await;

    // 0: a permitted file is applied (the OIDC provider created on the way);
    // again, nothing to do, still 0; a dry run of it too.
    let account = "444400000001";
    let cfg = s.write_config("ok.yaml", &s.config(account, &s.oidc.url(), true));
    let file = s.write("permitted.yaml", &permitted());
    // The dry run shows the provider it would create, and passes: with
    // createOidcProvider the missing provider is a planned change, not a
    // failing link. Nothing is made.
    let out = s.apply(&cfg, &file, &["--dry-run"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(&format!("IAM OIDC provider in account {account}\n  + create or repair arn:aws:iam::{account}:oidc-provider/")),
        "{stdout}"
    );
    assert!(s.roles(account).await.is_empty(), "a dry run made a role");
    let out = s.apply(&cfg, &file, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(0), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains("applied BucketAccess team-a/media"),
        "{stdout}"
    );
    let roles = s.roles(account).await;
    assert!(
        roles.len() == 1 && roles[0].contains("media"),
        "one role for team-a/media: {roles:?}"
    );
    let out = s.apply(&cfg, &file, &[]).await;
    assert_eq!(code(&out), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("= no changes"));
    let out = s.apply(&cfg, &file, &["--dry-run"]).await;
    assert_eq!(code(&out), Some(0), "{}", text(&out.stdout));

    // 1: not permitted (team-b asks for team-a's prefix), with and without
    // --dry-run, and no AWS call at all: refusals are decided from the files.
    let before_roles = s.roles(account).await;
    let refused = s.write(
        "refused.yaml",
        &access(
            "team-b",
            "{ name: acme-media, prefix: team-a/, access: readwrite }",
        ),
    );
    for extra in [&[][..], &["--dry-run"][..]] {
        let calls = s.proxy.count();
        let out = s.apply(&cfg, &refused, extra).await;
        let stdout = text(&out.stdout);
        assert_eq!(code(&out), Some(1), "{extra:?}: {stdout}");
        assert!(stdout.contains("refused"), "{stdout}");
        assert!(stdout.contains("team-b"), "{stdout}");
        assert_eq!(
            s.proxy.count(),
            calls,
            "{extra:?}: a refused object called AWS"
        );
    }
    assert_eq!(s.roles(account).await, before_roles, "moto's state changed");

    // 1: a refused object among permitted ones stops the whole apply.
    let mixed = s.write(
        "mixed.yaml",
        &format!(
            "{}\n---\n{}",
            permitted()
                .replace("name: media,", "name: other,")
                .replace("media-app", "other-app"),
            access("team-b", "{ name: acme-media, access: read }")
                .split_once("---")
                .unwrap()
                .1
        ),
    );
    let out = s.apply(&cfg, &mixed, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(1), "{stdout}");
    assert!(stdout.contains("Nothing applied"), "{stdout}");
    assert!(
        stdout.contains("+ create role"),
        "the permitted one was planned: {stdout}"
    );
    assert_eq!(s.roles(account).await, before_roles, "half applied");

    // 1: a typo'd field, named by its path, before any AWS call.
    let typo = s.write(
        "typo.yaml",
        &permitted().replace("prefix: team-a/", "prefx: team-a/"),
    );
    let calls = s.proxy.count();
    let out = s.apply(&cfg, &typo, &["--dry-run"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), Some(1), "{stderr}");
    assert!(stderr.contains("spec.buckets[0].prefx"), "{stderr}");
    assert_eq!(s.proxy.count(), calls);

    // 1: a trust link failing, also with --dry-run. The provider missing
    // in a fresh account (and the broker not allowed to create it) ...
    let fresh = "444400000002";
    let no_provider = s.write_config("fresh.yaml", &s.config(fresh, &s.oidc.url(), false));
    for extra in [&["--dry-run"][..], &[][..]] {
        let out = s.apply(&no_provider, &file, extra).await;
        let stdout = text(&out.stdout);
        assert_eq!(code(&out), Some(1), "{extra:?}: {stdout}");
        assert!(stdout.contains("trust FAIL"), "{stdout}");
        // The fix names apply's own switch, not trust check's --fix.
        assert!(stdout.contains("--create-oidc-provider"), "{stdout}");
        assert!(!stdout.contains("--fix"), "{stdout}");
    }
    // ... and an issuer nobody answers at.
    let unreachable = OidcIssuer::unreachable_url().unwrap();
    let cfg_down = s.write_config("down.yaml", &s.config(account, &unreachable, false));
    let out = s.apply(&cfg_down, &file, &["--dry-run"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(1), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("trust FAIL"), "{stdout}");

    // 2: could not run: an unreadable file, a missing config, bad flags.
    let out = s
        .apply(&cfg, &s.dir.path().join("does-not-exist.yaml"), &[])
        .await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), Some(2), "{stderr}");
    assert!(stderr.contains("does-not-exist.yaml"), "{stderr}");
    let out = s
        .apply(&s.dir.path().join("no-config.yaml"), &file, &[])
        .await;
    assert_eq!(code(&out), Some(2), "{}", text(&out.stderr));
    // 2: no AWS credentials at all: said in one line, without the SDK's
    // debug dump of every provider it tried.
    let mut cmd = Command::new(VALET);
    cmd.args(["broker", "apply", "--dry-run", "--config"])
        .arg(&cfg)
        .arg("-f")
        .arg(&file)
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env("HOME", s.dir.path())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(2), "{stdout}");
    assert!(stdout.contains("check AWS credentials"), "{stdout}");
    for dump in ["ProviderError(", "SdkBody", "DispatchFailure("] {
        assert!(!stdout.contains(dump), "{dump} in {stdout}");
    }
    let out = s.apply(&cfg, &file, &["--dry-rnu"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), Some(2), "{stderr}");
    assert!(stderr.contains("--dry-rnu"), "{stderr}");
}

/// The platform's class and policy for claims: team-a may claim through
/// `standard` and be granted what it claims.
const CLASS: &str = r#"
apiVersion: storage-valet.dev/v1alpha1
kind: BucketClass
metadata: { name: standard }
spec:
  namespaces: ["team-a"]
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccessPolicy
metadata: { name: claimed }
spec:
  namespaces: ["team-*"]
  buckets:
    - { bucketClass: standard, maxAccess: readwrite }
"#;

fn claim_and_grant(namespace: &str, claim: &str, granted: &str) -> String {
    format!(
        r#"{CLASS}
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketClaim
metadata: {{ name: {claim}, namespace: {namespace} }}
spec: {{ bucketClassName: standard }}
---
apiVersion: storage-valet.dev/v1alpha1
kind: BucketAccess
metadata: {{ name: app, namespace: {namespace} }}
spec:
  serviceAccountName: app
  buckets:
    - {{ bucketClaimName: {granted}, access: readwrite }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_claims_change_nothing_and_a_foreign_bucket_is_never_adopted() {
    let s = Setup::start().await;
    let account = "444400000003";
    let cfg = s.write_config("claims.yaml", &s.config(account, &s.oidc.url(), true));
    // The class lets team-a claim, not team-b: the claim is refused, and the
    // grant by it too, with no AWS call at all.
    let team_b = s.write("team-b.yaml", &claim_and_grant("team-b", "media", "media"));
    // A grant by a claim that is not in the files (the claim that is there
    // is planned: reads only).
    let missing = s.write("missing.yaml", &claim_and_grant("team-a", "media", "other"));
    // A claim its class allows is not a grant: with no policy allowing the
    // class's buckets, the grant by claim is refused (deny by default).
    let no_policy = s.write(
        "no-policy.yaml",
        &claim_and_grant("team-a", "media", "media")
            .replace("bucketClass: standard", "bucketClass: premium"),
    );
    for (file, why, calls_allowed) in [
        (&team_b, "BucketClass standard", false),
        (&team_b, "BucketClaim team-b/media has no bucket", false),
        (&missing, "no BucketClaim team-a/other in the files", true),
        (
            &no_policy,
            "refused: no BucketAccessPolicy allows namespace team-a bucket apply-cli-team-a-media",
            true,
        ),
    ] {
        for extra in [&["--dry-run"][..], &[][..]] {
            let calls = s.proxy.count();
            let out = s.apply(&cfg, file, extra).await;
            let stdout = text(&out.stdout);
            assert_eq!(code(&out), Some(1), "{file:?} {extra:?}: {stdout}");
            assert!(stdout.contains(why), "{why:?} missing from {stdout}");
            if !calls_allowed {
                assert_eq!(s.proxy.count(), calls, "{file:?} {extra:?}: AWS was called");
            }
        }
    }
    assert!(
        s.s3(account)
            .await
            .list_buckets()
            .send()
            .await
            .expect("ListBuckets")
            .buckets()
            .is_empty(),
        "a refused run made a bucket"
    );
    // A typo in a claim is named by its path.
    let typo = s.write(
        "typo.yaml",
        &claim_and_grant("team-a", "media", "media").replace("bucketClassName", "bucketClasName"),
    );
    let out = s.apply(&cfg, &typo, &["--dry-run"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(code(&out), Some(1), "{stderr}");
    assert!(
        stderr.contains("(BucketClaim) has unknown field(s) spec.bucketClasName"),
        "{stderr}"
    );

    // A bucket someone else made under the claim's name: refused, and left
    // exactly as it was (no tag, no policy, no setting of ours).
    let foreign = "apply-cli-team-a-media";
    let raw = s.s3(account).await;
    raw.create_bucket()
        .bucket(foreign)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::EuWest1)
                .build(),
        )
        .send()
        .await
        .expect("the foreign bucket");
    let file = s.write("clash.yaml", &claim_and_grant("team-a", "media", "media"));
    let out = s.apply(&cfg, &file, &[]).await;
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("bucket {foreign} is not ours")),
        "{stdout}"
    );
    assert!(stdout.contains("Nothing applied"), "{stdout}");
    assert!(
        raw.get_bucket_tagging()
            .bucket(foreign)
            .send()
            .await
            .is_err(),
        "the foreign bucket was tagged"
    );
    assert!(
        raw.get_bucket_policy()
            .bucket(foreign)
            .send()
            .await
            .is_err(),
        "the foreign bucket got a policy"
    );
    assert!(s.roles(account).await.is_empty(), "a role was made");
}
