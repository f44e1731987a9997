//! NATS JetStream sync. The writer's outbox publishes its commit log, in `seq` order,
//! to the stream `ordo-rules`, which keeps the latest message per subject: a compacted
//! image of every live ruleset and the tenant list. Each reader follows the stream with
//! its durable pull consumer `ordo-{instance-id}`, and rebuilds its catalog from the
//! stream whenever it cannot be sure its view is complete. A lease in NATS KV keeps a
//! second writer from publishing.

mod follow;
mod lease;
mod outbox;

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::service::Service;
use crate::sync::STREAM;

/// Starts the writer's outbox and lease, or the reader's follower.
pub fn spawn(service: Arc<Service>) {
    let Some(url) = service.config().nats_url.clone() else {
        return;
    };
    tokio::spawn(async move {
        let client = connect(&service, &url).await;
        let js = jetstream::new(client);
        if service.is_reader() {
            follow::run(service, js).await;
        } else {
            tokio::spawn(lease::run(service.clone(), js.clone()));
            outbox::run(service, js).await;
        }
    });
}

/// A client that keeps reconnecting for ever and reports its connection state.
async fn connect(service: &Arc<Service>, url: &str) -> async_nats::Client {
    let status = service.nats().cloned();
    let options = async_nats::ConnectOptions::new()
        .name(format!("ordo-server {}", service.instance_id()))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        // Reconnect quickly: a few hundred ms after an outage ends, not seconds.
        .reconnect_delay_callback(|attempts| Duration::from_millis((50 * attempts as u64).min(500)))
        .event_callback(move |event| {
            let status = status.clone();
            async move {
                if let Some(status) = status {
                    match event {
                        async_nats::Event::Connected => {
                            tracing::info!("connected to NATS");
                            status.set_connected(true);
                        }
                        async_nats::Event::Disconnected => {
                            tracing::warn!("disconnected from NATS");
                            status.set_connected(false);
                        }
                        other => tracing::debug!(event = %other, "NATS event"),
                    }
                }
            }
        });
    loop {
        match options.clone().connect(url).await {
            Ok(client) => return client,
            // Only a malformed address fails here (the connection itself is retried).
            Err(e) => {
                tracing::error!(error = %e, "cannot use the NATS URL; retrying");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// The stream's configuration: every subject under the prefix, on disk, the latest
/// message per subject kept for ever (a reader joining at any time gets every live
/// ruleset), and a dedup window for the outbox's retries.
fn stream_config(prefix: &str) -> stream::Config {
    stream::Config {
        name: STREAM.to_string(),
        description: Some(
            "Ordo rule commits: the latest event per ruleset and the tenant list".into(),
        ),
        subjects: vec![format!("{prefix}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_messages_per_subject: 1,
        duplicate_window: Duration::from_secs(120),
        allow_direct: true,
        ..Default::default()
    }
}

/// Whether a configured stream can hold this deployment's events as specified.
fn check_stream(info: &stream::Info, prefix: &str) -> Result<(), String> {
    let wanted = format!("{prefix}.>");
    if !info.config.subjects.contains(&wanted) {
        return Err(format!(
            "stream {STREAM} exists with subjects {:?}, not {wanted}",
            info.config.subjects
        ));
    }
    if info.config.max_messages_per_subject != 1 {
        return Err(format!(
            "stream {STREAM} keeps {} message(s) per subject, not 1",
            info.config.max_messages_per_subject
        ));
    }
    Ok(())
}

/// The stream's identity: a deleted and recreated stream has another creation time.
fn created_of(info: &stream::Info) -> i128 {
    info.created.unix_timestamp_nanos()
}

/// Waits `delay`, growing it for the next time (up to `max`).
async fn back_off(delay: &mut Duration, max: Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(max);
}
