//! The writer lease: one key in the NATS KV bucket `ordo-writer-lease` (named after the
//! subject prefix), created by the writer that takes it and renewed by compare-and-swap
//! every third of its time to live. A second writer finds it held, refuses writes and
//! stays not ready; it takes over once the key expires (the first writer stopped).
//!
//! While NATS cannot be reached the holder keeps its lease (and keeps accepting writes,
//! which its outbox publishes on return); a holder that finds the key taken by another
//! instance on return stops.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::Context;
use async_nats::jetstream::kv::{CreateErrorKind, Store, UpdateErrorKind};
use async_nats::jetstream::stream::{self, DiscardPolicy, StorageType};

use crate::service::Service;
use crate::sync::status::Lease;

pub const BUCKET: &str = "ordo-writer-lease";

pub async fn run(service: Arc<Service>, js: Context) {
    let Some(status) = service.nats().cloned() else {
        return;
    };
    let ttl = Duration::from_secs(service.config().writer_lease_ttl_secs);
    let key = status.prefix().to_string();
    let me = service.instance_id().to_string();
    let mut kv: Option<Store> = None;
    let mut revision: Option<u64> = None;
    let mut stopping = status.stopping();
    loop {
        let store = match &kv {
            Some(s) => s.clone(),
            None => match bucket(&js, ttl).await {
                Ok(s) => {
                    kv = Some(s.clone());
                    s
                }
                Err(e) => {
                    status.set_error(Some(format!("writer lease bucket: {e}")));
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        let wait = match revision {
            Some(rev) => match store.update(&key, me.clone().into(), rev).await {
                Ok(next) => {
                    revision = Some(next);
                    status.set_lease(Lease::Held);
                    ttl / 3
                }
                // Expired meanwhile (NATS was away for longer than the TTL) or taken:
                // try to create it again at once.
                Err(e) if e.kind() == UpdateErrorKind::WrongLastRevision => {
                    revision = None;
                    Duration::ZERO
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot renew the writer lease; keeping it");
                    Duration::from_millis(500)
                }
            },
            None => match store.create(&key, me.clone().into()).await {
                Ok(rev) => {
                    revision = Some(rev);
                    status.set_lease(Lease::Held);
                    ttl / 3
                }
                Err(e) if e.kind() == CreateErrorKind::AlreadyExists => {
                    match store.entry(&key).await {
                        // Our own id (a restart within the TTL): take it back.
                        Ok(Some(entry)) if entry.value.as_ref() == me.as_bytes() => {
                            match store.update(&key, me.clone().into(), entry.revision).await {
                                Ok(rev) => {
                                    revision = Some(rev);
                                    status.set_lease(Lease::Held);
                                    ttl / 3
                                }
                                Err(_) => Duration::from_millis(200),
                            }
                        }
                        Ok(Some(entry)) => {
                            let holder = String::from_utf8_lossy(&entry.value).into_owned();
                            status.set_lease(Lease::HeldBy(holder));
                            Duration::from_millis(500)
                        }
                        Ok(None) => Duration::ZERO,
                        Err(_) => Duration::from_millis(500),
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot take the writer lease yet");
                    Duration::from_millis(500)
                }
            },
        };
        let stop = tokio::select! {
            () = tokio::time::sleep(wait) => false,
            _ = stopping.wait_for(|stop| *stop) => true,
        };
        if stop {
            // Let a successor take over at once instead of after the TTL.
            if revision.is_some() {
                match store.delete(&key).await {
                    Ok(()) => tracing::info!("writer lease given back"),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot give the writer lease back; it expires by itself")
                    }
                }
            }
            status.set_lease(Lease::Unknown);
            return;
        }
    }
}

/// The lease bucket, created with the configured TTL if it does not exist. The bucket's
/// stream is created as the key-value layout prescribes rather than through
/// `create_key_value`, which first queries account information that older servers
/// (2.9) answer in a shape the client does not read.
async fn bucket(js: &Context, ttl: Duration) -> Result<Store, String> {
    if let Ok(store) = js.get_key_value(BUCKET).await {
        return Ok(store);
    }
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{BUCKET}"),
        description: Some("Which ordo-server instance may publish commits".into()),
        subjects: vec![format!("$KV.{BUCKET}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        storage: StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    })
    .await
    .map_err(|e| e.to_string())?;
    js.get_key_value(BUCKET).await.map_err(|e| e.to_string())
}
