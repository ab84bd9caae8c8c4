//! A TCP proxy that can freeze: while frozen, bytes stop flowing both ways
//! and connections stay open, as when the network to a server hangs (no
//! reset, no refusal: a client's request simply never gets an answer).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub struct FreezingProxy {
    addr: SocketAddr,
    frozen: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    /// Listens on 127.0.0.1 (ephemeral port) and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<FreezingProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let frozen = watch::Sender::new(false);
        let rx = frozen.subscribe();
        let accept = tokio::spawn(async move {
            // Dropping the set (when this task is aborted) ends every connection.
            let mut conns = JoinSet::new();
            while let Ok((down, _)) = listener.accept().await {
                let rx = rx.clone();
                conns.spawn(async move {
                    if let Ok(up) = TcpStream::connect(upstream).await {
                        let (dr, dw) = down.into_split();
                        let (ur, uw) = up.into_split();
                        tokio::join!(pump(dr, uw, rx.clone()), pump(ur, dw, rx));
                    }
                });
                while conns.try_join_next().is_some() {}
            }
        });
        Ok(FreezingProxy {
            addr,
            frozen,
            accept,
        })
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Holds (true) or lets through (false) every byte, on every connection.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}
