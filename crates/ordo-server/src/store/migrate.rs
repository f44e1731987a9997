//! Schema migrations, embedded in the binary: one list per database.
//!
//! The embedded SQLite migrates itself at open. PostgreSQL is shared by several
//! processes and upgraded on the operator's schedule, so it is migrated by
//! `ordo-server migrate up` (or `--auto-migrate`), and a server in front of pending
//! migrations stays not ready instead of writing to a schema it does not know.

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use sqlx::migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator};

use super::StoreError;

type Embedded = &'static [(i64, &'static str, &'static str)];

pub(super) const SQLITE: Embedded = &[
    (
        1,
        "commit log",
        include_str!("../../migrations/sqlite/0001_commit_log.sql"),
    ),
    (
        2,
        "file cache",
        include_str!("../../migrations/sqlite/0002_file_cache.sql"),
    ),
    (
        3,
        "file cache stat",
        include_str!("../../migrations/sqlite/0003_file_cache_stat.sql"),
    ),
    (
        4,
        "files done",
        include_str!("../../migrations/sqlite/0004_files_done.sql"),
    ),
    (
        5,
        "traces",
        include_str!("../../migrations/sqlite/0005_traces.sql"),
    ),
    (
        6,
        "rulesets info",
        include_str!("../../migrations/sqlite/0006_rulesets_info.sql"),
    ),
    (
        7,
        "file cache snapshot",
        include_str!("../../migrations/sqlite/0007_file_cache_snapshot.sql"),
    ),
    (
        8,
        "rulesets without content",
        include_str!("../../migrations/sqlite/0008_rulesets_without_content.sql"),
    ),
];

pub(super) const POSTGRES: Embedded = &[
    (
        1,
        "commit log",
        include_str!("../../migrations/postgres/0001_commit_log.sql"),
    ),
    (
        2,
        "files done",
        include_str!("../../migrations/postgres/0002_files_done.sql"),
    ),
    (
        3,
        "traces",
        include_str!("../../migrations/postgres/0003_traces.sql"),
    ),
    (
        4,
        "rulesets without content",
        include_str!("../../migrations/postgres/0004_rulesets_without_content.sql"),
    ),
];

/// A migration list as a sqlx source.
#[derive(Debug)]
struct Source(Embedded);

impl MigrationSource<'static> for Source {
    fn resolve(
        self,
    ) -> Pin<
        Box<dyn Future<Output = Result<Vec<Migration>, sqlx::error::BoxDynError>> + Send + 'static>,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// The migrator of a list. Migrations applied by a newer binary are tolerated: they
/// only add to the schema, so an older server in a rolling upgrade keeps working.
pub(super) async fn migrator(list: Embedded) -> Result<Migrator, StoreError> {
    let mut migrator = Migrator::new(Source(list)).await?;
    migrator.set_ignore_missing(true);
    Ok(migrator)
}

/// Where one migration stands in a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but from different SQL than this binary holds.
    Modified,
    /// Applied by another (newer) binary; unknown to this one.
    Unknown,
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrationInfo {
    pub version: i64,
    pub description: String,
    pub state: MigrationState,
}

/// The schema's state: every migration this binary knows or the database has applied.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationStatus {
    pub migrations: Vec<MigrationInfo>,
    /// A migration that failed half-way (only possible outside a transaction).
    pub dirty: Option<i64>,
}

impl MigrationStatus {
    pub fn pending(&self) -> usize {
        self.count(MigrationState::Pending)
    }

    pub fn count(&self, state: MigrationState) -> usize {
        self.migrations.iter().filter(|m| m.state == state).count()
    }

    /// Why the server must not use this schema, if it must not.
    pub fn blocker(&self) -> Option<String> {
        if let Some(v) = self.dirty {
            return Some(format!("migration {v} failed part-way; repair the schema"));
        }
        let modified: Vec<String> = self
            .migrations
            .iter()
            .filter(|m| m.state == MigrationState::Modified)
            .map(|m| m.version.to_string())
            .collect();
        if !modified.is_empty() {
            return Some(format!(
                "applied migration(s) {} differ from this binary's",
                modified.join(", ")
            ));
        }
        match self.pending() {
            0 => None,
            n => Some(format!(
                "{n} schema migration(s) pending: run `ordo-server migrate up` or start with --auto-migrate"
            )),
        }
    }
}

/// Reads the migration state of the database behind `conn` without changing it
/// (`None`: a database without the migrations table, where everything is pending).
pub(super) async fn status<C>(
    list: Embedded,
    conn: Option<&mut C>,
) -> Result<MigrationStatus, StoreError>
where
    C: Migrate + Send,
{
    let migrator = migrator(list).await?;
    let (applied, dirty) = match conn {
        Some(conn) => (
            conn.list_applied_migrations().await?,
            conn.dirty_version().await?,
        ),
        None => (Vec::new(), None),
    };
    let mut migrations: Vec<MigrationInfo> = migrator
        .iter()
        .map(|m| {
            let state = match applied.iter().find(|a| a.version == m.version) {
                None => MigrationState::Pending,
                Some(a) if a.checksum == m.checksum => MigrationState::Applied,
                Some(_) => MigrationState::Modified,
            };
            MigrationInfo {
                version: m.version,
                description: m.description.to_string(),
                state,
            }
        })
        .collect();
    for a in &applied {
        if !migrator.version_exists(a.version) {
            migrations.push(MigrationInfo {
                version: a.version,
                description: String::new(),
                state: MigrationState::Unknown,
            });
        }
    }
    migrations.sort_by_key(|m| m.version);
    Ok(MigrationStatus { migrations, dirty })
}
