//! A reader following the stream. At start, and whenever its view may be incomplete
//! (an undecodable event, the stream deleted, purged or recreated, its consumer lost, a
//! disconnection longer than `nats_stale_after_secs`), it recreates its durable consumer
//! `ordo-{instance-id}` from the start of the stream, folds the stream's image into a
//! new catalog and swaps it in; meanwhile it keeps serving the last good catalog and is
//! not ready. Then it applies each new event strictly by `seq`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::context::{ConsumerInfoErrorKind, GetStreamErrorKind};
use async_nats::jetstream::{Context, Message};
use futures_util::StreamExt;

use super::{back_off, check_stream, created_of};
use crate::service::{Rebuild, Service};
use crate::sync::STREAM;
use crate::sync::event::{AUTHORITY_HEADER, Envelope, Event};
use crate::sync::status::NatsStatus;

/// A durable consumer unused for this long is removed by the server.
const CONSUMER_INACTIVE: Duration = Duration::from_secs(24 * 3600);

/// How long a rebuild may wait for the next message of the stream's image.
const REBUILD_STALL: Duration = Duration::from_secs(10);

pub async fn run(service: Arc<Service>, js: Context) {
    let Some(status) = service.nats().cloned() else {
        return;
    };
    let cached = service.cached_replica();
    let mut follower = Follower {
        authority: cached.as_ref().and_then(|c| c.authority.clone()),
        cached,
        service,
        js,
        status,
        created: None,
    };
    let mut delay = Duration::from_millis(100);
    loop {
        let started = std::time::Instant::now();
        let reason = follower.follow().await;
        follower.status.set_unfresh(reason);
        if started.elapsed() > Duration::from_secs(30) {
            delay = Duration::from_millis(100);
        }
        back_off(&mut delay, Duration::from_secs(5)).await;
    }
}

struct Follower {
    service: Arc<Service>,
    js: Context,
    status: Arc<NatsStatus>,
    /// The commit log the served catalog comes from.
    authority: Option<String>,
    /// The cache this reader started from: followed on from its durable consumer's
    /// position instead of rebuilt (once).
    cached: Option<crate::service::ReplicaState>,
    /// Creation time of the stream being followed.
    created: Option<i128>,
}

impl Follower {
    /// Rebuilds, then follows until freshness is lost; returns why.
    async fn follow(&mut self) -> String {
        let prefix = self.status.prefix().to_string();
        let stream = match self.js.get_stream(STREAM).await {
            Ok(s) => s,
            Err(e) => return format!("waiting for stream {STREAM} (the writer creates it): {e}"),
        };
        let info = stream.cached_info().clone();
        if let Err(e) = check_stream(&info, &prefix) {
            return e;
        }
        let created = created_of(&info);
        let target = info.state.last_sequence;
        let seen_messages = info.state.messages;
        let image_authority = if seen_messages > 0 {
            stream.get_raw_message(target).await.ok().and_then(|m| {
                m.headers
                    .get(AUTHORITY_HEADER)
                    .map(|v| v.as_str().to_string())
            })
        } else {
            None
        };

        let name = self.service.consumer_name();
        self.created = Some(created);
        let mut catching_up = false;
        let resumed = match self.cached.take() {
            Some(cache)
                if cache.stream_created == Some(created)
                    && cache.authority.is_some()
                    && (image_authority.is_none() || image_authority == cache.authority) =>
            {
                match stream.get_consumer::<pull::Config>(&name).await {
                    Ok(mut consumer) => {
                        let pending = consumer.info().await.map(|i| i.num_pending).unwrap_or(1);
                        match consumer.messages().await {
                            Ok(messages) => {
                                tracing::info!(
                                    seq = cache.seq,
                                    pending,
                                    "following on from the cached catalog"
                                );
                                catching_up = pending > 0;
                                Some(messages)
                            }
                            Err(_) => None,
                        }
                    }
                    Err(_) => None,
                }
            }
            _ => None,
        };
        let mut messages = match resumed {
            Some(messages) => {
                if catching_up {
                    self.status
                        .set_unfresh("catching up with the stream from the cached catalog".into());
                } else {
                    self.status.set_fresh();
                }
                messages
            }
            None => match self
                .rebuild(&stream, &name, target, seen_messages, image_authority)
                .await
            {
                Ok(messages) => messages,
                Err(reason) => return reason,
            },
        };
        self.live(
            &stream,
            &name,
            &mut messages,
            created,
            seen_messages,
            catching_up,
        )
        .await
    }

    /// Recreates the consumer from the start of the stream, folds the stream's image into
    /// a new catalog and serves it; returns the consumer's messages, to follow on.
    async fn rebuild(
        &mut self,
        stream: &async_nats::jetstream::stream::Stream,
        name: &str,
        target: u64,
        seen_messages: u64,
        image_authority: Option<String>,
    ) -> Result<pull::Stream, String> {
        let prefix = self.status.prefix().to_string();
        let _ = stream.delete_consumer(name).await;
        let consumer: PullConsumer = match stream
            .create_consumer(pull::Config {
                durable_name: Some(name.to_string()),
                description: Some("ordo-server reader".into()),
                deliver_policy: DeliverPolicy::All,
                ack_policy: AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                filter_subject: format!("{prefix}.>"),
                max_ack_pending: 10_000,
                // Readers come and go with their pods' names: a consumer nobody has
                // pulled from for a day is removed (its reader, if it returns, rebuilds).
                inactive_threshold: CONSUMER_INACTIVE,
                ..Default::default()
            })
            .await
        {
            Ok(c) => c,
            Err(e) => return Err(format!("cannot create consumer {name}: {e}")),
        };
        let mut messages = match consumer.messages().await {
            Ok(m) => m,
            Err(e) => return Err(format!("cannot consume with {name}: {e}")),
        };
        self.status.count_rebuild();

        // The stream's image, up to its last message as of now.
        let mut rebuild = Rebuild::default();
        if seen_messages > 0 && target > 0 {
            loop {
                let msg = match tokio::time::timeout(REBUILD_STALL, messages.next()).await {
                    Err(_) => return Err("rebuild stalled: the stream stopped delivering".into()),
                    Ok(None) => return Err("the consumer's message stream ended".into()),
                    Ok(Some(Err(e))) => match e.kind() {
                        pull::MessagesErrorKind::ConsumerDeleted => {
                            return Err("consumer deleted during the rebuild".into());
                        }
                        _ => continue,
                    },
                    Ok(Some(Ok(msg))) => msg,
                };
                let position = stream_seq(&msg);
                let env = match Envelope::decode(&msg.payload) {
                    Ok(env) => env,
                    Err(e) => return Err(format!("stream message {position}: {e}")),
                };
                // Leftovers of an earlier log are not part of the current image.
                if image_authority
                    .as_deref()
                    .is_none_or(|a| a == env.authority_id)
                {
                    rebuild.fold(&env);
                }
                let _ = msg.ack().await;
                if position >= target {
                    break;
                }
            }
        }
        // Within one log, never go back: a purged stream the writer has not filled
        // again yet is behind this catalog, not a newer truth.
        let served = self.service.catalog().seq;
        let same_log = image_authority.is_none() || image_authority == self.authority;
        if same_log && rebuild.seq() < served && self.authority.is_some() {
            return Err(format!(
                "the stream holds commits up to {} but this catalog is at {served}: waiting for the writer to publish again",
                rebuild.seq()
            ));
        }
        if image_authority.is_some() {
            self.authority = image_authority;
        }
        self.service.install_rebuild(rebuild).await;
        if self.service.is_cache() {
            self.service
                .persist_replica(self.authority.clone(), self.created, None)
                .await;
        }
        self.status.set_fresh();
        Ok(messages)
    }

    /// Applies new events as they come, and watches freshness; returns why it stopped.
    async fn live(
        &mut self,
        stream: &async_nats::jetstream::stream::Stream,
        name: &str,
        messages: &mut pull::Stream,
        created: i128,
        mut seen_messages: u64,
        mut catching_up: bool,
    ) -> String {
        let stale_after = Duration::from_secs(self.service.config().nats_stale_after_secs);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut cut_off = false;
        loop {
            tokio::select! {
                next = messages.next() => {
                    let msg = match next {
                        None => return "the consumer's message stream ended".into(),
                        Some(Err(e)) => match e.kind() {
                            pull::MessagesErrorKind::ConsumerDeleted => return "consumer deleted".into(),
                            kind => {
                                tracing::debug!(error = %e, ?kind, "consumer hiccup");
                                continue;
                            }
                        },
                        Some(Ok(msg)) => msg,
                    };
                    if let Err(reason) = self.apply(&msg).await {
                        return reason;
                    }
                    if catching_up && msg.info().is_ok_and(|i| i.pending == 0) {
                        catching_up = false;
                        self.status.set_fresh();
                    }
                }
                _ = tick.tick() => {
                    if let Some(down) = self.status.down_for() {
                        if down > stale_after {
                            cut_off = true;
                            self.status.set_unfresh(format!(
                                "cut off from NATS for {}s (nats_stale_after_secs is {})",
                                down.as_secs(), stale_after.as_secs()
                            ));
                        }
                        continue;
                    }
                    if cut_off {
                        return "reconnected after a disconnection longer than nats_stale_after_secs".into();
                    }
                    match self.js.get_stream(STREAM).await {
                        Ok(s) => {
                            let now = s.cached_info();
                            if created_of(now) != created {
                                return "stream recreated".into();
                            }
                            if now.state.messages < seen_messages {
                                return "stream purged".into();
                            }
                            seen_messages = now.state.messages;
                        }
                        Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND) => {
                            return "stream deleted".into();
                        }
                        Err(_) => continue,
                    }
                    match stream.consumer_info(name).await {
                        Err(e) if matches!(e.kind(), ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound) => {
                            return format!("consumer {name} lost");
                        }
                        Ok(info) if catching_up && info.num_pending == 0 && info.num_ack_pending == 0 => {
                            catching_up = false;
                            self.status.set_fresh();
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Applies one live event; an error means freshness is lost.
    async fn apply(&mut self, msg: &Message) -> Result<(), String> {
        let position = stream_seq(msg);
        let env = Envelope::decode(&msg.payload)
            .map_err(|e| format!("stream message {position}: {e}"))?;
        if env.instance_id == self.service.instance_id() {
            // Echo suppression: this instance's own event.
            let _ = msg.ack().await;
            return Ok(());
        }
        match &self.authority {
            Some(a) if *a != env.authority_id => {
                return Err(format!(
                    "events from another commit log (authority {})",
                    env.authority_id
                ));
            }
            Some(_) => {}
            None => self.authority = Some(env.authority_id.clone()),
        }
        let first_delivery = msg.info().map(|i| i.delivered <= 1).unwrap_or(true);
        let served = self.service.catalog().seq;
        if env.seq <= served && first_delivery {
            // A commit already applied, delivered for the first time: the log is being
            // published again, so the stream was reset under this consumer.
            return Err(format!(
                "the stream replays commit {} (this catalog is at {served}): it was purged or recreated",
                env.seq
            ));
        }
        let started = std::time::Instant::now();
        if self.service.apply_event(&env).await {
            metrics::counter!("ordo_sync_events_applied_total").increment(1);
            metrics::histogram!("ordo_sync_apply_seconds").record(started.elapsed());
            if self.service.is_cache() {
                // On disk before the ack: an event not yet kept is delivered again.
                let changed = match &env.event {
                    Event::RulePut {
                        tenant_id, name, ..
                    }
                    | Event::RuleDeleted { tenant_id, name } => {
                        vec![(tenant_id.clone(), name.clone())]
                    }
                    Event::TenantConfigChanged { .. } => Vec::new(),
                };
                self.service
                    .persist_replica(self.authority.clone(), self.created, Some(changed))
                    .await;
            }
        }
        let _ = msg.ack().await;
        Ok(())
    }
}

fn stream_seq(msg: &Message) -> u64 {
    msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}
