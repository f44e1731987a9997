//! The writer's outbox. The commit log is the outbox: commits are published in `seq`
//! order, each acknowledged by the stream before the next, with the commit id as the
//! JetStream message id. Where publishing stands is read back from the stream itself
//! (the `Ordo-Seq` header of its last message), so a restart, a crash between commit and
//! publish, or a NATS outage simply resumes from there; a purged or recreated stream is
//! filled again from the start of the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::Context;
use async_nats::jetstream::stream::LastRawMessageErrorKind;

use super::{back_off, check_stream, created_of, stream_config};
use crate::service::Service;
use crate::store::{Change, Commit, Store};
use crate::sync::event::{AUTHORITY_HEADER, Envelope, SEQ_HEADER};
use crate::sync::status::{Lease, NatsStatus};
use crate::tenant::TenantConfig;

/// Commits read from the log per round.
const BATCH: u32 = 256;

pub async fn run(service: Arc<Service>, js: Context) {
    let Some(status) = service.nats().cloned() else {
        return;
    };
    let mut appended = service.watch_appended();
    let mut outbox = Outbox {
        prefix: status.prefix().to_string(),
        published: None,
        authority: None,
        tenants: None,
        stream_created: None,
    };
    let mut delay = Duration::from_millis(50);
    loop {
        // Only the lease holder publishes: a refused second writer never reaches readers.
        if status.lease() != Lease::Held {
            outbox.published = None;
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let result = match outbox.published {
            None => outbox.verify(&service, &js, &status).await,
            Some(_) => Ok(()),
        };
        let result = match result {
            Ok(()) => outbox.publish_pending(&service, &js, &status).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                status.set_error(None);
                delay = Duration::from_millis(50);
                // The next commit, or a look at the stream every second (purged, deleted).
                let next = tokio::time::timeout(Duration::from_secs(1), appended.changed());
                if next.await.is_err()
                    && let Err(e) = outbox.verify(&service, &js, &status).await
                {
                    outbox.failed(&status, e);
                }
            }
            Err(e) => {
                outbox.failed(&status, e);
                back_off(&mut delay, Duration::from_secs(1)).await;
            }
        }
    }
}

struct Outbox {
    prefix: String,
    /// Last commit the stream holds (`None`: read it from the stream first).
    published: Option<u64>,
    /// The log's identity: the id of its first commit.
    authority: Option<String>,
    /// Stored tenants as of `published` (`None`: fold them from the log first).
    tenants: Option<BTreeMap<String, TenantConfig>>,
    stream_created: Option<i128>,
}

impl Outbox {
    fn failed(&mut self, status: &NatsStatus, error: String) {
        tracing::warn!(error = %error, "publishing commits failed; retrying");
        metrics::counter!("ordo_outbox_errors_total").increment(1);
        status.set_error(Some(error));
        self.published = None;
        self.tenants = None;
    }

    /// Creates the stream if needed, notices a purge or a recreation, and reads which
    /// commit of this log the stream holds last.
    async fn verify(
        &mut self,
        service: &Service,
        js: &Context,
        status: &NatsStatus,
    ) -> Result<(), String> {
        let stream = js
            .get_or_create_stream(stream_config(&self.prefix))
            .await
            .map_err(|e| format!("stream {}: {e}", crate::sync::STREAM))?;
        let info = stream.cached_info();
        check_stream(info, &self.prefix)?;
        let created = created_of(info);
        let messages = info.state.messages;
        let last = info.state.last_sequence;
        if self.stream_created.is_some_and(|c| c != created) {
            tracing::warn!("stream recreated: publishing the log again");
            self.published = None;
        }
        self.stream_created = Some(created);
        let Some(store) = service.commit_log() else {
            return Err("the commit log is not attached yet".into());
        };
        let authority = match &self.authority {
            Some(a) => a.clone(),
            None => match first_commit(store).await? {
                Some(c) => {
                    self.authority = Some(c.id.clone());
                    c.id
                }
                // An empty log has nothing to publish.
                None => return Ok(()),
            },
        };
        let mut at = 0;
        if messages > 0 && last > 0 {
            match stream.get_raw_message(last).await {
                Ok(msg) => {
                    let header = |name: &str| {
                        msg.headers
                            .get(name)
                            .map(|v| v.as_str().to_string())
                            .unwrap_or_default()
                    };
                    if header(AUTHORITY_HEADER) == authority {
                        at = header(SEQ_HEADER).parse().unwrap_or(0);
                    }
                }
                // Deleted by hand: treat the stream as not holding this log.
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(format!("reading the stream's last message: {e}")),
            }
        }
        let head = *service.watch_appended().borrow();
        if let Some(published) = self.published {
            if at >= published {
                return Ok(());
            }
            // Messages this outbox saw acknowledged are gone: purged (or lost).
            tracing::warn!(
                published,
                stream = at,
                "the stream lost published commits (purged?): publishing them again"
            );
        }
        if at > head {
            return Err(format!(
                "the stream holds commit {at} of this log, which ends at {head}: the log lost commits; not publishing"
            ));
        }
        tracing::info!(published = at, head, "outbox position read from the stream");
        status.set_published(at);
        self.published = Some(at);
        self.tenants = None;
        Ok(())
    }

    /// Publishes every commit after `published`, in order, each acknowledged before the
    /// next.
    async fn publish_pending(
        &mut self,
        service: &Service,
        js: &Context,
        status: &NatsStatus,
    ) -> Result<(), String> {
        let Some(store) = service.commit_log() else {
            return Err("the commit log is not attached yet".into());
        };
        loop {
            let Some(published) = self.published else {
                return Ok(());
            };
            let head = *service.watch_appended().borrow();
            if published >= head {
                return Ok(());
            }
            let Some(authority) = self.authority.clone() else {
                // The first commit has just been made.
                self.published = None;
                return self.verify(service, js, status).await;
            };
            let mut tenants = match self.tenants.take() {
                Some(t) => t,
                None => tenants_at(store, published).await?,
            };
            let batch = match service.recent_after(published) {
                Some(batch) if !batch.is_empty() => batch,
                _ => store
                    .commits_after(published, BATCH, false)
                    .await
                    .map_err(|e| format!("reading the commit log: {e}"))?,
            };
            if batch.is_empty() {
                return Ok(());
            }
            for commit in &batch {
                fold_tenant(&mut tenants, commit);
                let list: Vec<TenantConfig> = tenants.values().cloned().collect();
                let envelope = Envelope::of(commit, &list, service.instance_id(), &authority);
                let started = std::time::Instant::now();
                publish(js, &self.prefix, &envelope).await?;
                metrics::histogram!("ordo_outbox_publish_seconds").record(started.elapsed());
                self.published = Some(commit.seq);
                status.set_published(commit.seq);
                metrics::counter!("ordo_outbox_published_total").increment(1);
            }
            self.tenants = Some(tenants);
        }
    }
}

/// Publishes one event and waits for the stream's acknowledgement. A message the
/// stream calls a duplicate, although it no longer holds it (published once, then
/// purged within the dedup window), is published again under a derived id.
async fn publish(js: &Context, prefix: &str, envelope: &Envelope) -> Result<(), String> {
    let payload = bytes_of(envelope)?;
    let ack = publish_as(js, prefix, envelope, &envelope.commit_id, payload.clone()).await?;
    if !ack.duplicate || stream_holds(js, envelope.seq).await? {
        return Ok(());
    }
    let id = format!("{}.{}", envelope.commit_id, crate::service::now_ms());
    publish_as(js, prefix, envelope, &id, payload).await?;
    Ok(())
}

fn bytes_of(envelope: &Envelope) -> Result<bytes::Bytes, String> {
    serde_json::to_vec(envelope)
        .map(Into::into)
        .map_err(|e| format!("encoding commit {}: {e}", envelope.seq))
}

async fn publish_as(
    js: &Context,
    prefix: &str,
    envelope: &Envelope,
    id: &str,
    payload: bytes::Bytes,
) -> Result<async_nats::jetstream::publish::PublishAck, String> {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers.insert(SEQ_HEADER, envelope.seq.to_string().as_str());
    headers.insert(AUTHORITY_HEADER, envelope.authority_id.as_str());
    let ack = js
        .publish_with_headers(envelope.subject(prefix), headers, payload)
        .await
        .map_err(|e| format!("publishing commit {}: {e}", envelope.seq))?;
    ack.await
        .map_err(|e| format!("commit {} not acknowledged: {e}", envelope.seq))
}

/// Whether the stream's last message is commit `seq` or a later one.
async fn stream_holds(js: &Context, seq: u64) -> Result<bool, String> {
    let stream = js
        .get_stream(crate::sync::STREAM)
        .await
        .map_err(|e| format!("stream {}: {e}", crate::sync::STREAM))?;
    let last = stream.cached_info().state.last_sequence;
    if last == 0 {
        return Ok(false);
    }
    match stream.get_raw_message(last).await {
        Ok(msg) => Ok(msg
            .headers
            .get(SEQ_HEADER)
            .and_then(|v| v.as_str().parse::<u64>().ok())
            .is_some_and(|at| at >= seq)),
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(false),
        Err(e) => Err(format!("reading the stream's last message: {e}")),
    }
}

async fn first_commit(store: &Store) -> Result<Option<Commit>, String> {
    let first = store
        .commits_after(0, 1, false)
        .await
        .map_err(|e| format!("reading the commit log: {e}"))?;
    Ok(first.into_iter().next())
}

/// The stored tenants as of commit `seq`, folded from the log's tenant commits.
async fn tenants_at(store: &Store, seq: u64) -> Result<BTreeMap<String, TenantConfig>, String> {
    let mut tenants = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = store
            .commits_after(after, 1000, true)
            .await
            .map_err(|e| format!("reading the commit log: {e}"))?;
        let Some(last) = page.last().map(|c| c.seq) else {
            return Ok(tenants);
        };
        for commit in page.iter().take_while(|c| c.seq <= seq) {
            fold_tenant(&mut tenants, commit);
        }
        if last >= seq {
            return Ok(tenants);
        }
        after = last;
    }
}

fn fold_tenant(tenants: &mut BTreeMap<String, TenantConfig>, commit: &Commit) {
    match &commit.change {
        Change::PutTenant(t) => {
            tenants.insert(t.id.clone(), t.clone());
        }
        Change::DeleteTenant { id } => {
            tenants.remove(id);
        }
        _ => {}
    }
}
