//! Keeping instances in step: the rules-directory watcher (a reader follows the
//! writer's files; a writer turns hand edits into commits) and NATS JetStream (the writer
//! publishes its log; readers follow the stream).

pub mod event;
#[cfg(feature = "nats-sync")]
pub mod nats;
pub mod rules_watch;
pub mod status;

/// The JetStream stream sync events live in.
pub const STREAM: &str = "ordo-rules";
