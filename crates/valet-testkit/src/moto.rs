//! A real moto server (PyPI `moto[server]`) started per test process.
//!
//! moto is lenient (no token or trust-policy validation, no IAM limits, no
//! throttling), so tests use it for the AWS wire protocol and account
//! isolation only; our own checks are tested against our own fixtures.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running `moto_server` on 127.0.0.1. Killed on drop, and also when the
/// test process exits without dropping it (a `Moto` in a `static` never is):
/// a shell keeps moto's lifeline on our stdin pipe and kills it when the pipe
/// closes, which the kernel does at our exit.
pub struct Moto {
    child: Child,
    lifeline: Option<std::process::ChildStdin>,
    port: u16,
}

impl Moto {
    /// Starts `moto_server` on a free loopback port and waits until it answers.
    ///
    /// Fails with a message naming the install command when moto is missing:
    /// tests never silently skip.
    pub fn start() -> anyhow::Result<Moto> {
        let port = free_port()?;
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".to_string());
        which(&bin).with_context(|| {
            format!("cannot start {bin:?}: install it with `pip install 'moto[server]'`")
        })?;
        let script = r#""$0" -H 127.0.0.1 -p "$1" </dev/null >/dev/null 2>&1 & m=$!; cat >/dev/null; kill $m 2>/dev/null; wait $m"#;
        let mut child = Command::new("sh")
            .args(["-c", script, &bin, &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start sh to supervise moto_server")?;
        let lifeline = child.stdin.take();
        let mut moto = Moto {
            child,
            lifeline,
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(moto);
            }
            if let Some(status) = moto.child.try_wait()? {
                bail!("moto_server exited before listening: {status}");
            }
            if Instant::now() > deadline {
                bail!("moto_server did not listen on port {port} within 60s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `http://127.0.0.1:PORT`: the endpoint for IAM and STS clients.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Forgets every resource in every account (`POST /moto-api/reset`).
    pub fn reset(&self) -> anyhow::Result<()> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        write!(
            s,
            "POST /moto-api/reset HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        if !out.starts_with("HTTP/1.1 200") && !out.starts_with("HTTP/1.0 200") {
            bail!(
                "moto reset failed: {}",
                out.lines().next().unwrap_or_default()
            );
        }
        Ok(())
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Closing the lifeline makes the supervising shell kill moto.
        drop(self.lifeline.take());
        let _ = self.child.wait();
    }
}

fn which(bin: &str) -> anyhow::Result<()> {
    if bin.contains('/') {
        return if std::path::Path::new(bin).exists() {
            Ok(())
        } else {
            bail!("{bin} does not exist")
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(bin).is_file()) {
        Ok(())
    } else {
        bail!("{bin} is not on PATH")
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(l.local_addr()?.port())
}
