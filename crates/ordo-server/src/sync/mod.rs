//! Keeping instances in step: the rules-directory watcher (a reader follows the
//! writer's files; a writer turns hand edits into commits).

pub mod rules_watch;
