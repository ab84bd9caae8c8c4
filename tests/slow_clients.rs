//! The real `valet webhook` under clients that hold it without
//! authenticating: many announcing a large body and sending it slowly, more
//! connections than --max-connections, and idle TLS, HTTP/1.1 keep-alive and
//! HTTP/2 connections. Memory (the process's VmRSS) and open connections
//! stay under the caps, slow bodies are cut at --body-timeout, idle
//! connections closed at --idle-timeout, and a real review is answered
//! meanwhile.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ARN, Cluster, admit, client, env_of, patched, pod, review, sa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const SLOW_CLIENTS: usize = 100;
const MAX_CONNECTIONS: usize = 128;
const BODY_TIMEOUT: Duration = Duration::from_secs(15);
const BODY_MEMORY_MIB: u64 = 16;
/// What each slow client sends of the 3 MiB it announces, then holds.
const SENT_PER_CLIENT: usize = 1 << 20;

fn connector(ca_pem: &str, alpn: &[u8]) -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

async fn connect(port: u16, tls: &TlsConnector) -> TlsStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    tls.connect(name, tcp).await.unwrap()
}

fn status_field(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Resident memory of the webhook process, MiB.
fn rss_mib(pid: u32) -> f64 {
    status_field(pid, "VmRSS:") as f64 / 1024.0
}

/// Sockets the webhook process holds open (listeners, its API server
/// client, and every connection it accepted; not those the kernel queues).
fn open_sockets(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().starts_with("socket:"))
        .count()
}

async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How a slow client's request ended: the status line's code (0: closed
/// without an answer) and when, from its headers.
struct Ended {
    status: u16,
    after: Duration,
}

async fn slow_client(port: u16, tls: TlsConnector, sent: Arc<AtomicUsize>) -> Ended {
    let mut s = connect(port, &tls).await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        3 << 20
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let chunk = vec![b' '; 16 << 10];
    let (mut read, mut write) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        for _ in 0..SENT_PER_CLIENT / chunk.len() {
            if write.write_all(&chunk).await.is_err() || write.flush().await.is_err() {
                return;
            }
            sent.fetch_add(chunk.len(), Ordering::Relaxed);
        }
        // Then hold: the rest of the announced body never comes.
        std::future::pending::<()>().await;
        drop(write);
    });
    let mut answer = Vec::new();
    let _ = read.read_to_end(&mut answer).await;
    let after = started.elapsed();
    writer.abort();
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|a| a.strip_prefix("HTTP/1.1 "))
        .and_then(|a| a.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ended { status, after }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_are_bounded_cut_and_do_not_block_reviews() {
    let cluster = Cluster::start(&[sa(
        "team-a",
        "app",
        json!({"eks.amazonaws.com/role-arn": ARN}),
    )])
    .await;
    let hook = cluster.spawn(
        Path::new(env!("CARGO_BIN_EXE_valet")),
        &[
            "webhook".to_string(),
            format!("--max-connections={MAX_CONNECTIONS}"),
            format!("--body-timeout={}s", BODY_TIMEOUT.as_secs()),
            format!("--body-memory={BODY_MEMORY_MIB}Mi"),
            "--idle-timeout=3s".into(),
        ],
    );
    let pid = hook.child.id();
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;
    let the_pod = pod("app", json!([]));
    let body = review("u1", "team-a", the_pod.clone());
    // Warm: the allocator's arenas and one connection of each kind exist.
    admit(&c, hook.port, &body).await;
    let (rss_before, sockets_before) = (rss_mib(pid), open_sockets(pid));

    let tls = connector(&cluster.ca_pem, b"http/1.1");
    let sent = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let clients: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| tokio::spawn(slow_client(hook.port, tls.clone(), sent.clone())))
        .collect();
    // Every slow client connected and sending (the server reads what its
    // --body-memory lets it; the kernel buffers some of the rest).
    wait_for("slow clients connected", Duration::from_secs(60), || {
        open_sockets(pid) >= sockets_before + SLOW_CLIENTS
    })
    .await;
    // Until the sending stalls (what is not read is held back by TCP),
    // within a third of --body-timeout.
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = sent.load(Ordering::Relaxed);
        if now == last
            || now >= SLOW_CLIENTS * SENT_PER_CLIENT
            || started.elapsed() > BODY_TIMEOUT / 3
        {
            break;
        }
        last = now;
    }

    let offered_mib = sent.load(Ordering::Relaxed) as f64 / f64::from(1 << 20);
    let rss_held = rss_mib(pid);
    let sockets_held = open_sockets(pid);

    // A real review is still answered, while the slow ones hold.
    let started = Instant::now();
    let env = env_of(&patched(&the_pod, &admit(&c, hook.port, &body).await));
    assert!(env.contains(&format!("AWS_ROLE_ARN={ARN}")), "{env:?}");
    let review_took = started.elapsed();
    let cut_early = clients.iter().filter(|c| c.is_finished()).count();

    // More connections than the cap: the process holds no more than it.
    let mut extra = Vec::new();
    for _ in 0..(MAX_CONNECTIONS - SLOW_CLIENTS + 40) {
        extra.push(
            tokio::net::TcpStream::connect(("127.0.0.1", hook.port))
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // let the accept loop run
    let sockets_capped = open_sockets(pid);
    drop(extra);

    let mut ended = Vec::new();
    for c in clients {
        ended.push(c.await.unwrap());
    }
    assert_eq!(
        cut_early, 0,
        "slow clients cut before the review was answered"
    );
    let rss_after = rss_mib(pid);
    let statuses: std::collections::BTreeMap<u16, usize> =
        ended.iter().fold(Default::default(), |mut m, e| {
            *m.entry(e.status).or_default() += 1;
            m
        });
    let (first, last_end) = (
        ended.iter().map(|e| e.after).min().unwrap(),
        ended.iter().map(|e| e.after).max().unwrap(),
    );
    println!(
        "slow clients: {SLOW_CLIENTS} x 3 MiB announced, {offered_mib:.0} MiB sent in all; \
         --body-memory {BODY_MEMORY_MIB}Mi --max-connections {MAX_CONNECTIONS}\n\
         VmRSS MiB: before {rss_before:.1}, while held {rss_held:.1}, after {rss_after:.1}\n\
         open sockets: before {sockets_before}, while held {sockets_held}, \
         with {} more connecting {sockets_capped}\n\
         a review while held took {review_took:?}; slow bodies cut after {first:?}..{last_end:?} \
         (--body-timeout {BODY_TIMEOUT:?}); answers {statuses:?}",
        MAX_CONNECTIONS - SLOW_CLIENTS + 40
    );
    // Bodies beyond --body-memory were not read into memory: what the
    // process holds is its budget plus per-connection buffers, not 100 MiB.
    let grown = rss_held - rss_before;
    assert!(
        grown < BODY_MEMORY_MIB as f64 + 32.0,
        "RSS grew {grown:.1} MiB while {offered_mib:.0} MiB was sent"
    );
    assert!(
        sockets_capped <= sockets_before + MAX_CONNECTIONS,
        "{sockets_capped} sockets open; cap {MAX_CONNECTIONS} over {sockets_before}"
    );
    assert!(
        sockets_capped >= sockets_before + MAX_CONNECTIONS - 1,
        "the cap was not reached ({sockets_capped}): the test proves nothing"
    );
    // Cut at --body-timeout: 408 when they were slow, 503 when the memory
    // they waited for did not come; not before (the idle timeout is shorter,
    // but a request in flight is not idle).
    assert!(
        first >= BODY_TIMEOUT - Duration::from_millis(500),
        "{first:?}"
    );
    assert!(
        last_end < BODY_TIMEOUT + Duration::from_secs(20),
        "{last_end:?}"
    );
    assert_eq!(
        statuses.keys().filter(|s| ![408, 503].contains(s)).count(),
        0,
        "{statuses:?}"
    );
    // Everything given back: connections closed, reviews still answered.
    wait_for("slow connections closed", Duration::from_secs(30), || {
        open_sockets(pid) <= sockets_before + 1
    })
    .await;
    admit(&c, hook.port, &body).await;
}

/// Reads until the server closes; the time it took.
async fn time_to_close<S: tokio::io::AsyncRead + Unpin>(s: &mut S, since: Instant) -> Duration {
    let mut buf = [0u8; 4096];
    let deadline = since + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Err(_) => panic!("not closed within 60s"),
            Ok(Ok(0) | Err(_)) => return since.elapsed(),
            Ok(Ok(_)) => {}
        }
    }
}

/// A minimal well-behaved idle HTTP/2 client: the preface, then it answers
/// SETTINGS and PINGs until the server closes. True when a GOAWAY came.
async fn h2_idle_until_closed(
    s: &mut TlsStream<tokio::net::TcpStream>,
    since: Instant,
) -> (bool, Duration) {
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut goaway = false;
    let deadline = since + Duration::from_secs(60);
    loop {
        let mut header = [0u8; 9];
        match tokio::time::timeout_at(deadline.into(), s.read_exact(&mut header)).await {
            Err(_) => panic!("h2 connection not closed within 60s"),
            Ok(Err(_)) => return (goaway, since.elapsed()),
            Ok(Ok(_)) => {}
        }
        let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
        let mut payload = vec![0u8; len];
        if s.read_exact(&mut payload).await.is_err() {
            return (goaway, since.elapsed());
        }
        let (kind, flags) = (header[3], header[4]);
        match (kind, flags & 1) {
            (4, 0) => s.write_all(b"\0\0\0\x04\x01\0\0\0\0").await.unwrap(),
            (6, 0) => {
                let mut pong = b"\0\0\x08\x06\x01\0\0\0\0".to_vec();
                pong.extend_from_slice(&payload);
                s.write_all(&pong).await.unwrap();
            }
            (7, _) => goaway = true,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_idle_timeout() {
    const IDLE: Duration = Duration::from_secs(2);
    let cluster = Cluster::start(&[]).await;
    let hook = cluster.spawn(
        Path::new(env!("CARGO_BIN_EXE_valet")),
        &["webhook".to_string(), "--idle-timeout=2s".into()],
    );
    let c = client(&cluster.ca_pem);
    hook.wait_ready(&c).await;
    let h1 = connector(&cluster.ca_pem, b"http/1.1");
    let h2 = connector(&cluster.ca_pem, b"h2");
    // Closed no earlier than the timeout, and well before the 10s header
    // timeout (so that it is this limit that acted).
    let in_time = |took: Duration, what: &str| {
        assert!(
            took >= IDLE - Duration::from_millis(300),
            "{what}: {took:?}"
        );
        assert!(took < Duration::from_secs(9), "{what}: {took:?}");
        println!("{what}: closed after {took:?} (--idle-timeout {IDLE:?})");
    };

    // TLS, then silence.
    let since = Instant::now();
    let mut silent = connect(hook.port, &h1).await;
    let silent = tokio::spawn(async move { time_to_close(&mut silent, since).await });

    // HTTP/1.1 keep-alive after one request.
    let mut kept = connect(hook.port, &h1).await;
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&answer[..n])
    );
    let since = Instant::now();
    let kept = tokio::spawn(async move { time_to_close(&mut kept, since).await });

    // HTTP/2 after the preface, answering the server's PINGs.
    let since = Instant::now();
    let mut s = connect(hook.port, &h2).await;
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let h2 = tokio::spawn(async move { h2_idle_until_closed(&mut s, since).await });

    in_time(silent.await.unwrap(), "TLS connection that never sent");
    in_time(kept.await.unwrap(), "HTTP/1.1 keep-alive after a request");
    let (goaway, took) = h2.await.unwrap();
    assert!(goaway, "HTTP/2 closed without GOAWAY");
    in_time(took, "HTTP/2 connection after the preface");
}
