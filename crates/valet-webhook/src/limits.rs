//! What a client may hold of the webhook, whoever it is: connections, HTTP/2
//! streams, idle time, request bodies and the memory they take. Nothing is
//! authenticated before a review is read, so every one of these is bounded,
//! and memory with them: a pod at its 256 Mi limit survives any number of
//! slow or idle clients (the README's "Limits" section has the arithmetic).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::args::parse_go_duration;

/// The first bytes of every body are charged to a reserve of their own
/// (a quarter of `--body-memory`), so that large bodies filling the rest
/// never keep a typical review (2-20 KiB) out. 32 KiB: the default reserve
/// (16 MiB) then holds the start of 512 bodies, twice --max-connections.
pub const RESERVED_PREFIX: usize = 32 * 1024;

#[derive(clap::Args, Clone, Debug)]
pub struct LimitFlags {
    /// Connections served at once. Above it the server stops accepting (the
    /// kernel queues new connections) until one closes. The API server opens
    /// one connection per concurrent review.
    #[arg(long, env = "VALET_MAX_CONNECTIONS", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub max_connections: u32,
    /// Close a connection after this long with no request in flight: a TLS
    /// connection that never sends, HTTP/1.1 keep-alive, HTTP/2. Longer than
    /// the API server's own idle timeout (90s) so that the client closes
    /// first and no review races the close.
    #[arg(long, env = "VALET_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_go_duration)]
    pub idle_timeout: Duration,
    /// The whole request body must arrive within this, counted from the end
    /// of its headers (which have 10s); a slower client gets 408 and its
    /// connection is closed. The API server sends a review at once and waits
    /// 10s for the answer by default.
    #[arg(long, env = "VALET_BODY_TIMEOUT", default_value = "10s", value_parser = parse_go_duration)]
    pub body_timeout: Duration,
    /// Largest request body (bytes, or with Ki/Mi suffix); 413 above. The
    /// API server refuses objects above 3 MiB itself.
    #[arg(long, env = "VALET_MAX_BODY_BYTES", default_value = "3Mi", value_parser = parse_bytes)]
    pub max_body_bytes: usize,
    /// Memory for request bodies being received, all connections together
    /// (bytes, or with Ki/Mi/Gi suffix). A body that finds it full waits for
    /// room within --body-timeout, then gets 503. A quarter is reserved for
    /// the first 32 KiB of each body.
    #[arg(long, env = "VALET_BODY_MEMORY", default_value = "64Mi", value_parser = parse_bytes)]
    pub body_memory: usize,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, env = "VALET_HTTP2_MAX_CONCURRENT_STREAMS", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_concurrent_streams: u32,
    /// Interval of HTTP/2 keep-alive PINGs; a client that does not answer
    /// one within --http2-keepalive-timeout is disconnected.
    #[arg(long, env = "VALET_HTTP2_KEEPALIVE_INTERVAL", default_value = "30s", value_parser = parse_go_duration)]
    pub http2_keepalive_interval: Duration,
    /// How long an HTTP/2 keep-alive PING may go unanswered.
    #[arg(long, env = "VALET_HTTP2_KEEPALIVE_TIMEOUT", default_value = "10s", value_parser = parse_go_duration)]
    pub http2_keepalive_timeout: Duration,
}

impl Default for LimitFlags {
    fn default() -> Self {
        LimitFlags {
            max_connections: 256,
            idle_timeout: Duration::from_secs(120),
            body_timeout: Duration::from_secs(10),
            max_body_bytes: 3 << 20,
            body_memory: 64 << 20,
            http2_max_concurrent_streams: 32,
            http2_keepalive_interval: Duration::from_secs(30),
            http2_keepalive_timeout: Duration::from_secs(10),
        }
    }
}

impl LimitFlags {
    /// Refuses combinations that could never serve a request.
    pub fn validate(&self) -> Result<(), String> {
        for (flag, d) in [
            ("--idle-timeout", self.idle_timeout),
            ("--body-timeout", self.body_timeout),
            ("--http2-keepalive-interval", self.http2_keepalive_interval),
            ("--http2-keepalive-timeout", self.http2_keepalive_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{flag} is 0; give a duration such as 10s"));
            }
        }
        let (reserve, rest) = split(self.body_memory);
        if reserve < RESERVED_PREFIX || rest < self.max_body_bytes.saturating_sub(RESERVED_PREFIX) {
            return Err(format!(
                "--body-memory {} cannot hold one body of --max-body-bytes {} (a quarter of it \
                 is reserved for the first 32 KiB of each body): raise --body-memory to at least {}",
                self.body_memory,
                self.max_body_bytes,
                minimum_memory(self.max_body_bytes)
            ));
        }
        Ok(())
    }
}

/// `--body-memory` as (reserve for the first bytes of each body, the rest).
fn split(memory: usize) -> (usize, usize) {
    let reserve = memory / 4;
    (reserve, memory - reserve)
}

fn minimum_memory(max_body: usize) -> usize {
    let rest = max_body.saturating_sub(RESERVED_PREFIX);
    // The least m with m/4 >= 32 KiB and m - m/4 (= ceil(3m/4)) >= rest.
    (4 * RESERVED_PREFIX).max(4 * rest.saturating_sub(1) / 3 + 1)
}

/// `3145728`, `64Ki`, `3Mi`, `1Gi`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let bad = || format!("{s:?} is not a size (e.g. 65536, 64Ki, 3Mi)");
    let (digits, scale) = match s.len().checked_sub(2).map(|i| s.split_at(i)) {
        Some((d, "Ki")) => (d, 1 << 10),
        Some((d, "Mi")) => (d, 1 << 20),
        Some((d, "Gi")) => (d, 1 << 30),
        _ => (s, 1),
    };
    let n: usize = digits.parse().map_err(|_| bad())?;
    n.checked_mul(scale)
        .filter(|&n| n > 0 && u32::try_from(n).is_ok())
        .ok_or_else(bad)
}

/// Why a body was not read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body is larger than {limit} bytes (--max-body-bytes)")]
    TooLarge { limit: usize },
    #[error("request body not received within {timeout:?} (--body-timeout); {received} bytes came")]
    TooSlow { timeout: Duration, received: usize },
    #[error(
        "request bodies in flight fill --body-memory; no room within {timeout:?} (--body-timeout)"
    )]
    NoMemory { timeout: Duration },
    #[error("reading the request body: {0}")]
    Read(String),
}

/// Reads request bodies within `--max-body-bytes`, `--body-timeout` and the
/// shared `--body-memory`.
pub struct BodyReader {
    reserve: Arc<Semaphore>,
    rest: Arc<Semaphore>,
    max_body: usize,
    timeout: Duration,
}

/// A body and the memory it is charged for (given back on drop).
pub struct HeldBody {
    pub bytes: Vec<u8>,
    /// From the reserve and from the rest (merged as the body grows: no
    /// allocation per request for the bookkeeping).
    charge: [Option<OwnedSemaphorePermit>; 2],
}

impl BodyReader {
    pub fn new(flags: &LimitFlags) -> BodyReader {
        let (reserve, rest) = split(flags.body_memory);
        BodyReader {
            reserve: Arc::new(Semaphore::new(reserve)),
            rest: Arc::new(Semaphore::new(rest)),
            max_body: flags.max_body_bytes,
            timeout: flags.body_timeout,
        }
    }

    /// Reads `body` whole. Memory is charged as the buffer grows, before it
    /// grows (doubling, never past the announced length): a client cannot
    /// make the server hold bytes it has not sent, and each chunk is copied
    /// out at once so that no tiny chunk pins a larger network buffer.
    pub async fn read(
        &self,
        body: Body,
        content_length: Option<u64>,
    ) -> Result<HeldBody, BodyError> {
        let too_large = BodyError::TooLarge {
            limit: self.max_body,
        };
        let announced = match content_length {
            Some(n) if n > self.max_body as u64 => return Err(too_large),
            Some(n) => Some(n as usize),
            None => None,
        };
        let deadline = Instant::now() + self.timeout;
        let mut held = HeldBody {
            bytes: Vec::new(),
            charge: [None, None],
        };
        let mut charged = 0;
        let mut body = body;
        let cap = announced.unwrap_or(self.max_body);
        if let Some(n) = announced {
            self.grow(&mut held, &mut charged, n.min(RESERVED_PREFIX), deadline)
                .await?;
        }
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => {
                    return Err(BodyError::TooSlow {
                        timeout: self.timeout,
                        received: held.bytes.len(),
                    });
                }
                Ok(None) => return Ok(held),
                Ok(Some(Err(e))) => return Err(BodyError::Read(e.to_string())),
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers: nothing reads them
            };
            let needed = held.bytes.len() + data.len();
            if needed > cap {
                return Err(too_large);
            }
            if needed > charged {
                let want = needed.max(charged * 2).min(cap);
                self.grow(&mut held, &mut charged, want, deadline).await?;
            }
            held.bytes.extend_from_slice(&data);
        }
    }

    /// Charges the bytes from `charged` to `want`, then reserves them.
    async fn grow(
        &self,
        held: &mut HeldBody,
        charged: &mut usize,
        want: usize,
        deadline: Instant,
    ) -> Result<(), BodyError> {
        let from_reserve = RESERVED_PREFIX.min(want).saturating_sub(*charged);
        let from_rest = want - *charged - from_reserve;
        let pools = [(&self.reserve, from_reserve), (&self.rest, from_rest)];
        for ((pool, n), slot) in pools.into_iter().zip(&mut held.charge) {
            if n == 0 {
                continue;
            }
            // `n` fits: validate() keeps each pool above one body's share,
            // and parse_bytes keeps sizes below 4 GiB.
            let n32 = u32::try_from(n).map_err(|_| BodyError::TooLarge {
                limit: self.max_body,
            })?;
            let permit = tokio::time::timeout_at(deadline, pool.clone().acquire_many_owned(n32))
                .await
                .map_err(|_| BodyError::NoMemory {
                    timeout: self.timeout,
                })?
                .map_err(|_| BodyError::NoMemory {
                    timeout: self.timeout,
                })?;
            match slot {
                Some(p) => p.merge(permit),
                None => *slot = Some(permit),
            }
        }
        held.bytes.reserve_exact(want - held.bytes.len());
        *charged = want;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("3Mi"), Ok(3 << 20));
        assert_eq!(parse_bytes("64Ki"), Ok(64 << 10));
        assert_eq!(parse_bytes("1Gi"), Ok(1 << 30));
        assert_eq!(parse_bytes("1000"), Ok(1000));
        for bad in ["", "Mi", "0", "-1", "3MB", "3 Mi", "8Gi"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn memory_must_hold_one_largest_body() {
        let mut f = LimitFlags::default();
        assert_eq!(f.validate(), Ok(()));
        f.body_memory = 2 << 20;
        let err = f.validate().unwrap_err();
        assert!(
            err.contains("raise --body-memory to at least 4150613"),
            "{err}"
        );
        f.body_memory = minimum_memory(f.max_body_bytes);
        assert_eq!(f.validate(), Ok(()));
        f.body_memory -= 1;
        assert!(f.validate().is_err());
        f = LimitFlags {
            body_timeout: Duration::ZERO,
            ..LimitFlags::default()
        };
        assert!(f.validate().unwrap_err().contains("--body-timeout is 0"));
    }

    /// Short timeout: the tests that wait for it wait that long.
    fn reader(memory: usize, max_body: usize) -> BodyReader {
        BodyReader::new(&LimitFlags {
            body_memory: memory,
            max_body_bytes: max_body,
            body_timeout: Duration::from_millis(300),
            ..LimitFlags::default()
        })
    }

    #[tokio::test]
    async fn bodies_are_read_whole_and_charged_until_dropped() {
        let r = reader(1 << 20, 512 << 10);
        let body = vec![7u8; 300_000];
        let held = r
            .read(Body::from(body.clone()), Some(body.len() as u64))
            .await
            .unwrap();
        assert_eq!(held.bytes, body);
        // Charged: 32 KiB from the reserve, the rest of the buffer from the rest.
        assert_eq!(r.reserve.available_permits(), (256 << 10) - RESERVED_PREFIX);
        let charged_rest = (768 << 10) - r.rest.available_permits();
        assert!(
            charged_rest >= body.len() - RESERVED_PREFIX,
            "{charged_rest}"
        );
        assert!(held.bytes.capacity() <= RESERVED_PREFIX + charged_rest);
        drop(held);
        assert_eq!(r.reserve.available_permits(), 256 << 10);
        assert_eq!(r.rest.available_permits(), 768 << 10);
    }

    #[tokio::test]
    async fn too_large_bodies_are_refused_announced_or_not() {
        let r = reader(4 << 20, 1000);
        let err = r.read(Body::from(vec![0; 10]), Some(1001)).await;
        assert!(matches!(err, Err(BodyError::TooLarge { limit: 1000 })));
        let stream =
            futures::stream::iter([vec![0u8; 600], vec![0u8; 600]].map(Ok::<_, std::io::Error>));
        let err = r.read(Body::from_stream(stream), None).await;
        assert!(matches!(err, Err(BodyError::TooLarge { .. })));
    }

    #[tokio::test]
    async fn a_body_that_does_not_finish_in_time_is_too_slow() {
        let r = reader(4 << 20, 1 << 20);
        let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
        tx.try_send(Ok(vec![1u8; 1000])).unwrap();
        // The sender stays open: the client announced more and holds it.
        let err = r.read(Body::from_stream(rx), Some(5000)).await;
        assert!(
            matches!(err, Err(BodyError::TooSlow { received: 1000, .. })),
            "{:?}",
            err.err()
        );
        drop(tx);
        // Its memory is given back.
        assert_eq!(r.reserve.available_permits(), 1 << 20);
    }

    #[tokio::test]
    async fn full_memory_makes_a_large_body_wait_then_503_but_small_ones_get_in() {
        let r = reader(minimum_memory(3 << 20), 3 << 20);
        let held_big = r
            .read(Body::from(vec![0u8; 2 << 20]), Some(2 << 20))
            .await
            .unwrap();
        // A typical review: from the reserve, while the rest is taken.
        let small = r
            .read(Body::from(vec![0u8; 8000]), Some(8000))
            .await
            .unwrap();
        assert_eq!(small.bytes.len(), 8000);
        // A second large one waits for room until --body-timeout, then is told.
        let err = r.read(Body::from(vec![0u8; 2 << 20]), Some(2 << 20)).await;
        assert!(
            matches!(err, Err(BodyError::NoMemory { .. })),
            "{:?}",
            err.err()
        );
        drop(held_big);
        assert!(
            r.read(Body::from(vec![0u8; 2 << 20]), Some(2 << 20))
                .await
                .is_ok()
        );
    }
}
