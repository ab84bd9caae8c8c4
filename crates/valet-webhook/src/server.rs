//! HTTPS serving: rustls (TLS 1.2/1.3, ALPN h2 + http/1.1, certificates
//! re-read on rotation), hyper's auto HTTP/1+2 per connection, graceful
//! shutdown of every connection on one signal, and the connection limits of
//! [`crate::limits`]: a cap on open connections, an idle timeout, HTTP/2
//! stream cap, windows and keep-alive pings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{debug, info, warn};

use crate::limits::LimitFlags;

/// A slow or silent client must not hold a connection slot forever.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an idle connection told to close may take to do so (an HTTP/2
/// client that never acknowledges the GOAWAY's PING) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// HTTP/1.1 read buffer: a review's headers are well under 16 KiB; hyper's
/// default (about 400 KiB) times --max-connections would be the largest
/// share of memory under clients sending endless headers.
const H1_MAX_BUF: usize = 64 * 1024;
/// HTTP/2 receive windows: what a client may send before the server reads
/// it, per stream and per connection. A review is a few KiB; the connection
/// window times --max-connections bounds what h2 buffers in all.
const H2_STREAM_WINDOW: u32 = 64 * 1024;
const H2_CONN_WINDOW: u32 = 256 * 1024;

/// Serves `app` over TLS on `listener` until `shutdown` fires, then stops
/// accepting and waits up to `drain` for requests in flight.
pub async fn serve_tls(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
    limits: LimitFlags,
) {
    let acceptor = TlsAcceptor::from(tls);
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(H1_MAX_BUF);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_concurrent_streams)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONN_WINDOW)
        .keep_alive_interval(limits.http2_keepalive_interval)
        .keep_alive_timeout(limits.http2_keepalive_timeout);
    let builder = Arc::new(builder);
    // One permit per open connection; all of them back once every
    // connection has closed, which is also how shutdown knows it drained.
    let slots = Arc::new(Semaphore::new(limits.max_connections as usize));
    let mut full_since: Option<Instant> = None;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if full_since.is_none() {
                    warn!(
                        max_connections = limits.max_connections,
                        "connection limit reached; not accepting until one closes"
                    );
                    full_since = Some(Instant::now());
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                }
            }
        };
        if let Some(since) = full_since.take() {
            info!(waited = ?since.elapsed(), "accepting connections again");
        }
        let (tcp, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(error) => {
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        no_delay(&tcp, peer);
        let (acceptor, app, builder) = (acceptor.clone(), app.clone(), builder.clone());
        let shutdown = shutdown.clone();
        let idle_timeout = limits.idle_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(tcp, peer, acceptor, app, &builder, shutdown, idle_timeout).await;
        });
    }
    drop(listener);
    info!("shutting down: no new connections; draining requests in flight");
    let all = limits.max_connections;
    tokio::select! {
        _ = slots.acquire_many(all) => info!("all connections drained"),
        _ = tokio::time::sleep(drain) => warn!(?drain, "drain timed out; closing remaining connections"),
    }
}

/// Turns Nagle's algorithm off: an answer is written as soon as it is ready.
/// With it on, a write waits while an earlier one is unacknowledged, and the
/// client delays its ACK (40 ms on Linux): every HTTP/2 connection with
/// several streams answering at once stalled on it (bench/webhook: 7,000
/// req/s at 33 ms mean for 16 x 16 streams; 44,000 at 5.5 ms without it).
/// nginx sets the same (`tcp_nodelay on`, its default).
fn no_delay(tcp: &tokio::net::TcpStream, peer: SocketAddr) {
    if let Err(error) = tcp.set_nodelay(true) {
        debug!(%peer, %error, "cannot set TCP_NODELAY");
    }
}

async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    builder: &Builder<TokioExecutor>,
    shutdown: CancellationToken,
    idle_timeout: Duration,
) {
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(error)) => {
            debug!(%peer, %error, "TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let activity = Arc::new(Activity::new());
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let in_flight = activity.start();
            let mut app = app.clone();
            let response = app.call(req);
            async move {
                let response = response.await;
                drop(in_flight);
                response
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(tls), service);
    tokio::pin!(conn);
    let mut close_by: Option<Instant> = None;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(error) = result {
                    debug!(%peer, %error, "connection closed with an error");
                }
                return;
            }
            _ = shutdown.cancelled(), if close_by.is_none() => {
                conn.as_mut().graceful_shutdown();
                // Requests in flight finish within serve_tls's drain.
                close_by = Some(Instant::now() + Duration::from_secs(3600));
            }
            _ = activity.idle_for(idle_timeout), if close_by.is_none() => {
                debug!(%peer, ?idle_timeout, "closing idle connection");
                conn.as_mut().graceful_shutdown();
                close_by = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = tokio::time::sleep_until(close_by.unwrap_or_else(Instant::now)), if close_by.is_some() => {
                debug!(%peer, "connection did not close in time; dropped");
                return;
            }
        }
    }
}

/// Requests in flight on one connection and when the last one ended.
struct Activity {
    started: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `started` to the end of the last request.
    last_ms: AtomicU64,
    ended: Notify,
}

struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms.store(a.now_ms(), Ordering::Relaxed);
        if a.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            a.ended.notify_one();
        }
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            started: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
            ended: Notify::new(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves once no request has been in flight for `timeout` (counted
    /// from the connection's start when it never had one).
    async fn idle_for(&self, timeout: Duration) {
        loop {
            if self.in_flight.load(Ordering::Acquire) > 0 {
                self.ended.notified().await;
                continue;
            }
            let last = self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let due = last + timeout;
            if Instant::now() >= due {
                return;
            }
            tokio::time::sleep_until(due).await;
        }
    }
}
