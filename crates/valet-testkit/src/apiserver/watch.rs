//! `?watch=true`: newline-delimited JSON `WatchEvent`s, replayed from the
//! store's event history and then followed live.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::Response;
use http::{StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::handler::{Req, Target};
use super::registry::ResourceDef;
use super::select::Selector;
use super::state::Shared;
use super::store::{Event, EventKind, Scan};
use super::wire::{ApiError, Form, meta_str};

/// Flush a batch of lines to the connection at about this size.
const BATCH_BYTES: usize = 64 * 1024;

struct Filter {
    ns: Option<String>,
    labels: Selector,
    fields: Selector,
}

impl Filter {
    fn keep(&self, obj: &Value) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.labels.matches_labels(obj)
            && self.fields.matches_fields(obj)
    }
}

/// Counts the watch as active for as long as its task runs.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.watches.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Watch {
    shared: Arc<Shared>,
    def: Arc<ResourceDef>,
    filter: Filter,
    form: Form,
    bookmarks: bool,
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

enum Start {
    /// Synthetic ADDED events for the current state, then live from `rv`.
    State {
        objects: Vec<Arc<Value>>,
        rv: u64,
        initial_end_bookmark: bool,
    },
    /// Replay history after `rv`.
    From(u64),
}

pub fn serve(shared: Arc<Shared>, t: Target, req: &Req) -> Result<Response, ApiError> {
    let p = |k: &str| {
        req.params
            .get(k)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    };
    let filter = Filter {
        ns: t.ns.clone(),
        labels: Selector::parse_labels(p("labelSelector").unwrap_or(""))?,
        fields: Selector::parse_fields(p("fieldSelector").unwrap_or(""))?,
    };
    let bookmarks = p("allowWatchBookmarks") == Some("true");
    let send_initial = p("sendInitialEvents") == Some("true");
    let timeout = match p("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds {s:?}")))?,
        ),
        None => Duration::from_secs(1800),
    };
    let rv = p("resourceVersion").unwrap_or("0");
    let start = if send_initial || rv == "0" {
        let store = shared.store();
        let scan = Scan {
            ns: t.ns.as_deref(),
            ..Scan::default()
        };
        let page = store.list(&t.def, scan, |o| filter.keep(o));
        Start::State {
            objects: page.items,
            rv: store.resource_version(),
            initial_end_bookmark: send_initial,
        }
    } else {
        Start::From(
            rv.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {rv:?}")))?,
        )
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(64);
    let watch = Watch {
        shared: shared.clone(),
        def: t.def.clone(),
        filter,
        form: req.form,
        bookmarks,
        tx,
        buf: Vec::new(),
    };
    shared.watches.fetch_add(1, Ordering::SeqCst);
    let active = Active(shared);
    tokio::spawn(async move {
        let _active = active;
        watch.run(start, Instant::now() + timeout).await;
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::convert::Infallible>))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    Ok(resp)
}

impl Watch {
    async fn run(mut self, start: Start, deadline: Instant) {
        let mut cursor = match start {
            Start::State {
                objects,
                rv,
                initial_end_bookmark,
            } => {
                for obj in &objects {
                    self.line(EventKind::Added.wire(), obj);
                    if self.buf.len() >= BATCH_BYTES && !self.flush().await {
                        return;
                    }
                }
                if initial_end_bookmark && self.bookmarks {
                    self.bookmark(rv, true);
                }
                rv
            }
            Start::From(rv) => rv,
        };
        let mut changes = self.shared.changes.clone();
        let interval = *self
            .shared
            .bookmark_interval
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut next_bookmark = Instant::now() + interval;
        loop {
            // Drain what happened since the cursor, then sleep until a change.
            match self.drain(cursor) {
                Ok(rv) => cursor = rv,
                Err(floor) => {
                    self.gone(cursor, floor);
                    self.flush().await;
                    return;
                }
            }
            if !self.flush().await {
                return;
            }
            tokio::select! {
                _ = self.tx.closed() => return,
                _ = tokio::time::sleep_until(deadline) => return,
                changed = changes.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep_until(next_bookmark), if self.bookmarks => {
                    next_bookmark = Instant::now() + interval;
                    if let Ok(rv) = self.drain(cursor) {
                        cursor = rv;
                        self.bookmark(cursor, false);
                    }
                }
            }
        }
    }

    /// Queues the events after `cursor`; returns the store's revision they
    /// bring the watch to, or the history floor when `cursor` is too old.
    fn drain(&mut self, cursor: u64) -> Result<u64, u64> {
        let (events, rv) = {
            let store = self.shared.store();
            (
                store.events_since(&self.def, cursor)?,
                store.resource_version(),
            )
        };
        for Event {
            kind, obj, prev, ..
        } in &events
        {
            let now = self.filter.keep(obj);
            let before = prev.as_ref().map_or(now, |p| self.filter.keep(p));
            let wire = match (kind, before, now) {
                (EventKind::Modified, false, true) => EventKind::Added,
                (EventKind::Modified, true, false) => EventKind::Deleted,
                (_, _, true) => *kind,
                _ => continue,
            };
            self.line(wire.wire(), obj);
        }
        Ok(rv.max(cursor))
    }

    fn line(&mut self, kind: &str, obj: &Value) {
        self.buf.extend_from_slice(b"{\"type\":\"");
        self.buf.extend_from_slice(kind.as_bytes());
        self.buf.extend_from_slice(b"\",\"object\":");
        let written = match self.form {
            Form::Full => serde_json::to_writer(&mut self.buf, obj),
            Form::Metadata => serde_json::to_writer(&mut self.buf, &Form::Metadata.render(obj)),
        };
        if written.is_err() {
            self.buf.extend_from_slice(b"{}");
        }
        self.buf.extend_from_slice(b"}\n");
    }

    fn bookmark(&mut self, rv: u64, initial_end: bool) {
        let (kind, api_version) = match self.form {
            Form::Full => (self.def.kind.clone(), self.def.api_version()),
            Form::Metadata => (
                "PartialObjectMetadata".to_string(),
                "meta.k8s.io/v1".to_string(),
            ),
        };
        let mut meta = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj = json!({ "kind": kind, "apiVersion": api_version, "metadata": meta });
        let saved = self.form;
        self.form = Form::Full;
        self.line("BOOKMARK", &obj);
        self.form = saved;
    }

    /// What the real server sends when the requested revision was compacted.
    fn gone(&mut self, cursor: u64, floor: u64) {
        let status = ApiError::new(
            410,
            "Expired",
            format!("too old resource version: {cursor} ({floor})"),
        )
        .to_status();
        self.buf
            .extend_from_slice(b"{\"type\":\"ERROR\",\"object\":");
        self.buf.extend_from_slice(status.to_string().as_bytes());
        self.buf.extend_from_slice(b"}\n");
    }

    /// Sends the queued lines; false when the client has gone.
    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return true;
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx.send(chunk).await.is_ok()
    }
}
