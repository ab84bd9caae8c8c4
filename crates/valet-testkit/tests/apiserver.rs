//! The in-process API server driven by the real kube-rs client.

#[path = "apiserver/admission.rs"]
mod admission;
#[path = "apiserver/control.rs"]
mod control;
#[path = "apiserver/crud.rs"]
mod crud;
#[path = "apiserver/watch.rs"]
mod watch;

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

pub const WAIT: Duration = Duration::from_secs(20);

pub fn sa(ns: &str, name: &str) -> ServiceAccount {
    let mut sa = ServiceAccount::default();
    sa.metadata.name = Some(name.to_string());
    sa.metadata.namespace = Some(ns.to_string());
    sa
}

pub fn api_status(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.reason.clone()),
        other => panic!("expected an API Status error, got {other:?}"),
    }
}

/// Polls a watcher in the background (a watcher only opens its watch while
/// polled) and hands its events over a channel.
pub fn spawn_events<K: Send + 'static>(
    stream: impl Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
) -> mpsc::UnboundedReceiver<Event<K>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send(ev).is_err() {
                        return;
                    }
                }
                Err(e) => eprintln!("watcher error (it retries): {e}"),
            }
        }
    });
    rx
}

/// The next event, skipping those `skip` says are noise; fails after WAIT.
pub async fn next_event<K>(
    events: &mut mpsc::UnboundedReceiver<Event<K>>,
    skip: impl Fn(&Event<K>) -> bool,
) -> Event<K> {
    loop {
        let ev = tokio::time::timeout(WAIT, events.recv())
            .await
            .expect("no watch event within the deadline")
            .expect("watch stream ended");
        if !skip(&ev) {
            return ev;
        }
    }
}

pub fn is_init_marker<K>(ev: &Event<K>) -> bool {
    matches!(ev, Event::Init | Event::InitDone)
}
