//! Where NATS sync stands, as the sync tasks report it: what readiness, the write path
//! and `/health` read.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Value, json};

/// The writer lease as this instance last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// Not known yet (NATS not reached since the start).
    Unknown,
    Held,
    /// Another instance holds it.
    HeldBy(String),
}

#[derive(Debug)]
struct Inner {
    connected: bool,
    /// Since when the connection is down (`None` while connected or never connected).
    down_since: Option<Instant>,
    /// Reader: the catalog is known to match the stream; otherwise why not.
    unfresh: Option<String>,
    /// Writer: last commit the stream acknowledged.
    published_seq: u64,
    lease: Lease,
    last_error: Option<String>,
    rebuilds: u64,
}

/// Shared between the sync tasks and the service.
#[derive(Debug)]
pub struct NatsStatus {
    inner: Mutex<Inner>,
    /// Set when the process stops: the writer lease is given back.
    stopping: tokio::sync::watch::Sender<bool>,
    url: String,
    prefix: String,
}

impl NatsStatus {
    pub fn new(url: &str, prefix: &str) -> NatsStatus {
        NatsStatus {
            inner: Mutex::new(Inner {
                connected: false,
                down_since: Some(Instant::now()),
                unfresh: Some("connecting to NATS".into()),
                published_seq: 0,
                lease: Lease::Unknown,
                last_error: None,
                rebuilds: 0,
            }),
            url: crate::store::redact_url(url),
            prefix: prefix.to_string(),
            stopping: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Asks the sync tasks to let go (the writer gives its lease back).
    pub fn stop(&self) {
        self.stopping.send_replace(true);
    }

    pub fn stopping(&self) -> tokio::sync::watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn set_connected(&self, connected: bool) {
        self.with(|s| {
            if connected {
                s.down_since = None;
            } else if s.connected || s.down_since.is_none() {
                s.down_since = Some(Instant::now());
            }
            s.connected = connected;
        });
        metrics::gauge!("ordo_nats_connected").set(if connected { 1.0 } else { 0.0 });
    }

    /// How long the connection has been down.
    pub fn down_for(&self) -> Option<std::time::Duration> {
        self.with(|s| s.down_since.map(|t| t.elapsed()))
    }

    pub fn set_fresh(&self) {
        self.with(|s| {
            if s.unfresh.take().is_some() {
                tracing::info!("catalog in step with the stream");
            }
        });
        metrics::gauge!("ordo_sync_fresh").set(1.0);
    }

    pub fn set_unfresh(&self, reason: String) {
        self.with(|s| {
            if s.unfresh.as_deref() != Some(reason.as_str()) {
                tracing::warn!(reason = %reason, "catalog not known to be in step with the stream");
                s.unfresh = Some(reason);
            }
        });
        metrics::gauge!("ordo_sync_fresh").set(0.0);
    }

    pub fn unfresh(&self) -> Option<String> {
        self.with(|s| s.unfresh.clone())
    }

    pub fn count_rebuild(&self) {
        self.with(|s| s.rebuilds += 1);
        metrics::counter!("ordo_sync_rebuilds_total").increment(1);
    }

    pub fn set_published(&self, seq: u64) {
        self.with(|s| s.published_seq = seq);
        metrics::gauge!("ordo_outbox_published_seq").set(seq as f64);
    }

    pub fn published(&self) -> u64 {
        self.with(|s| s.published_seq)
    }

    pub fn set_lease(&self, lease: Lease) {
        self.with(|s| {
            if s.lease != lease {
                match &lease {
                    Lease::Held => tracing::info!("writer lease acquired"),
                    Lease::HeldBy(holder) => {
                        tracing::warn!(holder = %holder, "the writer lease is held by another instance; writes are refused")
                    }
                    Lease::Unknown => {}
                }
                s.lease = lease;
            }
        });
    }

    pub fn lease(&self) -> Lease {
        self.with(|s| s.lease.clone())
    }

    /// Records the last error of a sync task (`None`: it works again).
    pub fn set_error(&self, error: Option<String>) {
        self.with(|s| s.last_error = error);
    }

    /// For `/health`.
    pub fn to_json(&self, reader: bool, consumer: &str) -> Value {
        self.with(|s| {
            let lease = match &s.lease {
                Lease::Unknown => json!({"held": false, "holder": null}),
                Lease::Held => json!({"held": true}),
                Lease::HeldBy(holder) => json!({"held": false, "holder": holder}),
            };
            let mut v = serde_json::Map::new();
            v.insert("url".into(), json!(self.url));
            v.insert("connected".into(), json!(s.connected));
            v.insert("stream".into(), json!(super::STREAM));
            v.insert("subject_prefix".into(), json!(self.prefix));
            v.insert("last_error".into(), json!(s.last_error));
            if reader {
                v.insert("consumer".into(), json!(consumer));
                v.insert("fresh".into(), json!(s.unfresh.is_none()));
                v.insert("not_fresh_reason".into(), json!(s.unfresh));
                v.insert("rebuilds".into(), json!(s.rebuilds));
            } else {
                v.insert("published_seq".into(), json!(s.published_seq));
                v.insert("lease".into(), lease);
            }
            Value::Object(v)
        })
    }
}
