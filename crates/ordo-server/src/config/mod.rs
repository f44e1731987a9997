//! One typed configuration, its JSON Schema, and where values come from.
//!
//! Sources, lowest to highest: built-in defaults, config files (`-c/--config`, YAML, JSON
//! or TOML by extension, in the order given), `ORDO_*` environment variables, flags.
//! Every key can be set from each of them by one rule: key `max_body_bytes` is variable
//! `ORDO_MAX_BODY_BYTES` and flag `--max-body-bytes`. The merged result is validated
//! against the schema, then for combinations; every problem is reported at once.

mod cli;
mod load;
pub mod watch;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use cli::{Cli, Command, ConfigAction, Flags, MigrateAction};
pub use load::{
    ConfigError, Problem, docs_table, env_var, flag_name, generated_schema, keys, load, schema,
};

/// Keys that a configuration reload cannot change: they shape what was opened, bound or
/// started. A reload that changes one is refused as a whole.
pub const RESTART_KEYS: &[&str] = &[
    "role",
    "host",
    "port",
    "grpc_port",
    "grpc_addr",
    "disable_grpc",
    "disable_http",
    "grpc_tls_cert",
    "grpc_tls_key",
    "grpc_tls_client_ca",
    "rules_dir",
    "watch_rules",
    "database_url",
    "auto_migrate",
    "multi_tenancy_enabled",
    "default_tenant",
    "worker_threads",
    "instance_id",
    "log_format",
    "nats_url",
    "nats_subject_prefix",
    "writer_lease_ttl_secs",
    "rulesets.include",
    "rulesets.exclude",
    "queue.workers",
    "queue.buffer_size",
];

/// What an instance does with writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// One instance, reading and writing.
    Standalone,
    /// The one instance that accepts writes for a deployment.
    Writer,
    /// Serves reads and executions; answers every write with 409 `read_only`.
    Reader,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Standalone => "standalone",
            Role::Writer => "writer",
            Role::Reader => "reader",
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// The server's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Instance role: standalone, writer, or reader.
    pub role: Role,
    /// Writer address included in reader 409 responses.
    #[schemars(length(min = 1))]
    pub writer_addr: Option<String>,
    /// Address to listen on.
    pub host: IpAddr,
    /// HTTP port (0 picks a free one).
    #[schemars(range(max = 65535))]
    pub port: u16,
    /// gRPC port (0 picks a free one), on `host`.
    #[schemars(range(max = 65535))]
    pub grpc_port: u16,
    /// gRPC listen address as HOST:PORT, instead of `host` and `grpc_port`.
    #[schemars(length(min = 1))]
    pub grpc_addr: Option<String>,
    /// Serve no gRPC.
    pub disable_grpc: bool,
    /// Serve no HTTP API (gRPC only).
    pub disable_http: bool,
    /// PEM certificate chain for gRPC over TLS (with `grpc_tls_key`).
    pub grpc_tls_cert: Option<PathBuf>,
    /// PEM private key for gRPC over TLS (with `grpc_tls_cert`).
    pub grpc_tls_key: Option<PathBuf>,
    /// PEM CA bundle: gRPC clients must present a certificate it signed (mutual TLS).
    pub grpc_tls_client_ca: Option<PathBuf>,
    /// Rules directory: rulesets are read from and written to it as files, and (unless
    /// `database_url` says otherwise) the commit log lives in DIR/.ordo/.
    pub rules_dir: Option<PathBuf>,
    /// Watch the rules directory and reload on change: a reader follows the writer's
    /// files, a writer or standalone instance turns hand edits into commits. A 30 s poll
    /// backs the watcher up (and replaces it where it cannot run).
    pub watch_rules: bool,
    /// Where the commit log lives: `sqlite:PATH` or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB`. Unset: `sqlite:DIR/.ordo/ordo.db` with a
    /// rules directory, otherwise in memory.
    pub database_url: Option<String>,
    /// Apply pending PostgreSQL schema migrations at start. Without it a server facing
    /// pending migrations stays not ready until `ordo-server migrate up` has run. (The
    /// embedded SQLite always migrates itself.)
    pub auto_migrate: bool,
    /// Isolate rulesets per tenant (X-Tenant-ID header or ?tenant_id=).
    pub multi_tenancy_enabled: bool,
    /// Tenant of requests that name none: letters, digits, `.`, `_` and `-`, not starting
    /// with `.`, no `..`.
    #[schemars(length(min = 1, max = 128), extend("format" = "tenant-id"))]
    pub default_tenant: String,
    /// Executions per second allowed to the default tenant (unlimited when unset).
    #[schemars(range(min = 1))]
    pub default_tenant_qps: Option<u32>,
    /// Burst allowed to the default tenant above its QPS (defaults to the QPS).
    #[schemars(range(min = 1))]
    pub default_tenant_burst: Option<u32>,
    /// Time limit of each execution of the default tenant, in milliseconds.
    #[schemars(range(min = 1))]
    pub default_tenant_timeout_ms: Option<u64>,
    /// API tokens accepted on /api/ routes (Authorization: Bearer or X-API-Token). Empty:
    /// no token needed. As a variable or flag: comma-separated.
    pub api_token: Vec<String>,
    /// Largest accepted request body, in bytes.
    #[schemars(range(min = 1024))]
    pub max_body_bytes: u64,
    /// Time limit of a whole request, in milliseconds (0: none).
    pub request_timeout_ms: u64,
    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Threads serving requests (default: one per CPU core).
    #[schemars(range(min = 1, max = 1024))]
    pub worker_threads: Option<u32>,
    /// NATS server URL (e.g. nats://localhost:4222; several, comma-separated, for a
    /// cluster). A writer publishes every commit to the JetStream stream `ordo-rules`; a
    /// reader follows it. Needs the `nats-sync` build feature (on by default).
    #[schemars(length(min = 1))]
    pub nats_url: Option<String>,
    /// Subject prefix for sync events: `{prefix}.{tenant_id}.{name}` and
    /// `{prefix}.tenants`.
    #[schemars(length(min = 1))]
    pub nats_subject_prefix: String,
    /// A reader cut off from NATS for longer than this many seconds stops reporting
    /// ready (it keeps serving its catalog) and rebuilds from the stream on return.
    #[schemars(range(min = 1))]
    pub nats_stale_after_secs: u64,
    /// How long the writer lease (NATS KV) outlives its holder; renewed every third of
    /// it. A second writer takes over no sooner than this after the first one stops.
    #[schemars(range(min = 3, max = 3600))]
    pub writer_lease_ttl_secs: u64,
    /// This instance's id, shown in /health and logs, naming its NATS consumer
    /// (`ordo-{instance-id}`) and marking the events it publishes. Unset: a random id per
    /// start. Letters, digits, `.`, `_` and `-`.
    #[schemars(length(min = 1, max = 128), extend("format" = "instance-id"))]
    pub instance_id: Option<String>,
    /// Log one execution in every N (with its request id, ruleset, result and time);
    /// 0 logs none.
    pub log_executions_every: u64,
    /// Log filter: error, warn, info, debug, trace, or tracing directives.
    #[schemars(length(min = 1))]
    pub log_level: String,
    /// Log line format.
    pub log_format: LogFormat,
    /// Platform rate limits: a token bucket per client IP on the API routes.
    pub rate_limit: RateLimitConfig,
    /// Proxies (IP addresses or CIDR blocks) whose `X-Forwarded-For` is believed: the
    /// client is the rightmost address not in this list. Empty: the socket's peer is the
    /// client and `X-Forwarded-For` is ignored.
    pub trusted_proxies: Vec<String>,
    /// Executions (single, batch, async) running at once on this instance; more are shed
    /// with 503 `OVERLOADED`. 0: no bound.
    pub max_concurrent_executions: u32,
    /// Which rulesets this instance serves (executes and shows); others are 404 here.
    pub rulesets: RulesetFilter,
    /// Async executions: the job queue, its workers and the dead-letter queue.
    pub queue: QueueConfig,
}

/// Async executions (`POST /api/v1/execute/{name}/async`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Jobs run at once.
    #[schemars(range(min = 1, max = 1024))]
    pub workers: u32,
    /// Jobs waiting to run; a submission beyond it is refused with 503 at once.
    #[schemars(range(min = 1))]
    pub buffer_size: u32,
    /// Time limit of one job (a whole batch), in milliseconds.
    #[schemars(range(min = 1))]
    pub processing_timeout_ms: u64,
    /// Largest result a job may produce, in bytes (as JSON); a larger one fails it.
    #[schemars(range(min = 1024))]
    pub max_result_size_bytes: u64,
    /// Bytes of input the waiting jobs may hold; a submission beyond it is refused with
    /// 503 at once.
    #[schemars(range(min = 1024))]
    pub max_queue_memory_bytes: u64,
    /// Retry failed jobs from the dead-letter queue.
    pub dlq_retry_enabled: bool,
    /// Retries of a failed job before it is marked `exhausted`.
    pub dlq_max_retries: u32,
    /// How often the dead-letter queue is polled for due retries, in seconds; retry n
    /// of a job is due `dlq_poll_interval_secs * 2^(n-1)` seconds after its failure.
    #[schemars(range(min = 1))]
    pub dlq_poll_interval_secs: u64,
    /// Completed and failed jobs older than this many hours are deleted (0: kept;
    /// fractions allowed).
    #[schemars(range(min = 0.0))]
    pub trace_retention_hours: f64,
    /// How often old jobs are deleted, in seconds.
    #[schemars(range(min = 1))]
    pub trace_cleanup_interval_secs: u64,
}

impl Default for QueueConfig {
    fn default() -> QueueConfig {
        QueueConfig {
            workers: 4,
            buffer_size: 1000,
            processing_timeout_ms: 60_000,
            max_result_size_bytes: 1024 * 1024,
            max_queue_memory_bytes: 100 * 1024 * 1024,
            dlq_retry_enabled: true,
            dlq_max_retries: 5,
            dlq_poll_interval_secs: 30,
            trace_retention_hours: 72.0,
            trace_cleanup_interval_secs: 3600,
        }
    }
}

/// Platform rate limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Limit each client (by IP) on the API routes. Per-tenant and per-ruleset limits
    /// apply whether or not this is on.
    pub enabled: bool,
    /// Requests per second each client may make, sustained.
    #[schemars(range(min = 1))]
    pub default_rps: u32,
    /// Requests a client may make at once above the sustained rate.
    #[schemars(range(min = 1))]
    pub default_burst: u32,
    /// Per endpoint group: instead of `default_rps` for that group's routes.
    pub endpoints: EndpointLimits,
    /// Keys (clients, or a ruleset's `key_logic` keys) a limiter tracks before idle ones
    /// are dropped at once rather than at the next sweep (every 10 s). A key is idle when
    /// its bucket has refilled: dropping it loses nothing.
    #[schemars(range(min = 1000))]
    pub max_keys: u32,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            enabled: false,
            default_rps: 100,
            default_burst: 50,
            endpoints: EndpointLimits::default(),
            max_keys: 100_000,
        }
    }
}

/// Rate limits of the endpoint groups: `admin` (ruleset, tenant and DLQ management) and
/// `execute` (executions, batches, async submissions, evaluation).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointLimits {
    /// Requests per second per client on admin routes (default: `default_rps`).
    #[schemars(range(min = 1))]
    pub admin_rps: Option<u32>,
    /// Burst on admin routes (default: `default_burst`).
    #[schemars(range(min = 1))]
    pub admin_burst: Option<u32>,
    /// Requests per second per client on execute routes (default: `default_rps`).
    #[schemars(range(min = 1))]
    pub execute_rps: Option<u32>,
    /// Burst on execute routes (default: `default_burst`).
    #[schemars(range(min = 1))]
    pub execute_burst: Option<u32>,
}

/// Which rulesets an instance serves, by name globs (`*`, `?`, `[a-z]`, `{a,b}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RulesetFilter {
    /// Serve only rulesets matching one of these (empty: all).
    pub include: Vec<String>,
    /// Never serve rulesets matching one of these (wins over `include`).
    pub exclude: Vec<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            role: Role::Standalone,
            writer_addr: None,
            host: IpAddr::from([0, 0, 0, 0]),
            port: 8080,
            grpc_port: 50051,
            grpc_addr: None,
            disable_grpc: false,
            disable_http: false,
            grpc_tls_cert: None,
            grpc_tls_key: None,
            grpc_tls_client_ca: None,
            rules_dir: None,
            watch_rules: false,
            database_url: None,
            auto_migrate: false,
            multi_tenancy_enabled: false,
            default_tenant: "default".to_string(),
            default_tenant_qps: None,
            default_tenant_burst: None,
            default_tenant_timeout_ms: None,
            api_token: Vec::new(),
            max_body_bytes: 10 * 1024 * 1024,
            request_timeout_ms: 30_000,
            shutdown_timeout_secs: 30,
            worker_threads: None,
            nats_url: None,
            nats_subject_prefix: "ordo.rules".to_string(),
            nats_stale_after_secs: 30,
            writer_lease_ttl_secs: 10,
            instance_id: None,
            log_executions_every: 1000,
            log_level: "info".to_string(),
            log_format: LogFormat::Text,
            rate_limit: RateLimitConfig::default(),
            trusted_proxies: Vec::new(),
            max_concurrent_executions: 0,
            rulesets: RulesetFilter::default(),
            queue: QueueConfig::default(),
        }
    }
}

impl Config {
    /// Checks what the schema cannot express: combinations and the name rule.
    pub fn check(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut bad = |key: &str, value: String, reason: String| {
            problems.push(Problem {
                key: key.to_string(),
                value: Some(value),
                source: None,
                reason,
            })
        };
        if let Err(reason) = self.store_location() {
            let url = self.database_url.as_deref().unwrap_or_default();
            bad(
                "database_url",
                format!("{:?}", crate::store::redact_url(url)),
                reason,
            );
        }
        if let Some(addr) = &self.writer_addr
            && !matches!(url::Url::parse(addr), Ok(u) if matches!(u.scheme(), "http" | "https"))
        {
            bad(
                "writer_addr",
                format!("{addr:?}"),
                "must be an http:// or https:// URL, as in http://writer:8080".into(),
            );
        }
        if self.role == Role::Reader && self.database_url.is_some() {
            bad(
                "database_url",
                format!(
                    "{:?}",
                    crate::store::redact_url(self.database_url.as_deref().unwrap_or_default())
                ),
                "a reader has no store of its own: its catalog follows the writer".into(),
            );
        }
        if self.watch_rules && self.rules_dir.is_none() {
            bad(
                "watch_rules",
                "true".into(),
                "needs rules_dir (the directory to watch)".into(),
            );
        }
        if self.disable_grpc && self.disable_http {
            bad(
                "disable_http",
                "true".into(),
                "with disable_grpc too, the server would serve nothing".into(),
            );
        }
        if let Some(addr) = &self.grpc_addr
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            bad(
                "grpc_addr",
                format!("{addr:?}"),
                "must be HOST:PORT with an IP address, as in 0.0.0.0:50051".into(),
            );
        }
        match (&self.grpc_tls_cert, &self.grpc_tls_key) {
            (Some(_), None) => bad(
                "grpc_tls_key",
                "(unset)".into(),
                "grpc_tls_cert needs grpc_tls_key".into(),
            ),
            (None, Some(_)) => bad(
                "grpc_tls_cert",
                "(unset)".into(),
                "grpc_tls_key needs grpc_tls_cert".into(),
            ),
            _ => {}
        }
        if self.grpc_tls_client_ca.is_some() && self.grpc_tls_cert.is_none() {
            bad(
                "grpc_tls_client_ca",
                "(set)".into(),
                "client certificates (mutual TLS) need grpc_tls_cert and grpc_tls_key".into(),
            );
        }
        self.check_nats(cfg!(feature = "nats-sync"), &mut bad);
        if let Err(e) = ordo_core::validate_name(&self.default_tenant) {
            bad("default_tenant", self.default_tenant.clone(), e);
        }
        if let (Some(burst), None) = (self.default_tenant_burst, self.default_tenant_qps) {
            bad(
                "default_tenant_burst",
                burst.to_string(),
                "needs default_tenant_qps".into(),
            );
        }
        if self.api_token.iter().any(|t| t.trim().is_empty()) {
            bad(
                "api_token",
                "(hidden)".into(),
                "a token must not be empty".into(),
            );
        }
        for (i, proxy) in self.trusted_proxies.iter().enumerate() {
            if let Err(e) = crate::traffic::parse_net(proxy) {
                bad(&format!("trusted_proxies.{i}"), format!("{proxy:?}"), e);
            }
        }
        for (key, globs) in [
            ("rulesets.include", &self.rulesets.include),
            ("rulesets.exclude", &self.rulesets.exclude),
        ] {
            for (i, glob) in globs.iter().enumerate() {
                if let Err(e) = globset::Glob::new(glob) {
                    bad(&format!("{key}.{i}"), format!("{glob:?}"), e.to_string());
                }
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            bad(
                "log_level",
                self.log_level.clone(),
                "not a log level or filter directive".into(),
            );
        }
        problems
    }

    /// The NATS keys against the rest: a URL each part of which is `nats://` or
    /// `tls://`, a role that syncs, a writer with a durable log of its own, a binary that
    /// can do it.
    fn check_nats(&self, built_with_nats: bool, bad: &mut impl FnMut(&str, String, String)) {
        if let Err(e) = crate::sync::event::check_prefix(&self.nats_subject_prefix) {
            bad(
                "nats_subject_prefix",
                format!("{:?}", self.nats_subject_prefix),
                e,
            );
        }
        let Some(url) = &self.nats_url else {
            return;
        };
        let shown = format!("{:?}", crate::store::redact_url(url));
        if !built_with_nats {
            bad(
                "nats_url",
                shown,
                "this binary was built without the nats-sync feature: rebuild with \
                 `--features nats-sync` (on by default) or leave nats_url unset"
                    .into(),
            );
            return;
        }
        let parts_ok = url.split(',').all(|part| {
            matches!(url::Url::parse(part.trim()), Ok(u) if matches!(u.scheme(), "nats" | "tls") && u.host().is_some())
        });
        if !parts_ok {
            bad(
                "nats_url",
                shown,
                "must be nats://HOST:PORT or tls://HOST:PORT (several comma-separated)".into(),
            );
            return;
        }
        match self.role {
            Role::Standalone => bad(
                "nats_url",
                shown,
                "a standalone instance does not sync: set role to writer (publishes) or reader (follows)"
                    .into(),
            ),
            Role::Writer if self.store_location() == Ok(crate::store::Location::Memory) => bad(
                "nats_url",
                shown,
                "a writer publishing to NATS needs a durable commit log to publish from: set \
                 rules_dir or database_url"
                    .into(),
            ),
            Role::Reader if self.watch_rules => bad(
                "watch_rules",
                "true".into(),
                "a reader following NATS keeps its own copy of the catalog in rules_dir (its \
                 cache); follow a shared directory (watch_rules, no nats_url) or NATS, not both"
                    .into(),
            ),
            _ => {}
        }
    }

    /// Where the commit log lives.
    pub fn store_location(&self) -> Result<crate::store::Location, String> {
        if self.role == Role::Reader {
            // A reader's state follows the writer; its rules directory is the writer's.
            return Ok(crate::store::Location::Memory);
        }
        crate::store::Location::new(self.database_url.as_deref(), self.rules_dir.as_deref())
    }

    /// The configuration as it may be shown: tokens hidden, URL passwords masked.
    pub fn redacted(&self) -> Config {
        let mut shown = self.clone();
        shown.api_token = vec!["(hidden)".into(); self.api_token.len()];
        shown.database_url = self.database_url.as_deref().map(crate::store::redact_url);
        shown.nats_url = self.nats_url.as_deref().map(crate::store::redact_url);
        shown
    }

    pub fn max_body_bytes(&self) -> usize {
        usize::try_from(self.max_body_bytes).unwrap_or(usize::MAX)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs)
    }

    pub fn request_timeout(&self) -> Option<Duration> {
        (self.request_timeout_ms > 0).then(|| Duration::from_millis(self.request_timeout_ms))
    }

    /// The default tenant's configuration when none is stored.
    pub fn default_tenant_config(&self) -> crate::tenant::TenantConfig {
        crate::tenant::TenantConfig {
            id: self.default_tenant.clone(),
            name: "Default tenant".to_string(),
            enabled: true,
            qps_limit: self.default_tenant_qps,
            burst_limit: self.default_tenant_burst,
            execution_timeout_ms: self.default_tenant_timeout_ms,
            max_rules: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nats_problems(config: &Config, built_with_nats: bool) -> Vec<String> {
        let mut problems = Vec::new();
        config.check_nats(built_with_nats, &mut |key, _, reason| {
            if key == "nats_url" {
                problems.push(reason);
            }
        });
        problems
    }

    #[test]
    fn nats_url_is_refused_by_a_build_without_nats() {
        let config = Config {
            role: Role::Reader,
            nats_url: Some("nats://127.0.0.1:4222".into()),
            ..Config::default()
        };
        assert!(nats_problems(&config, true).is_empty());
        // Never silently ignored: the start is refused, saying why.
        let problems = nats_problems(&config, false);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems
                .iter()
                .all(|p| p.contains("without the nats-sync feature"))
        );
        // This build is the one `check` describes.
        let from_check = config.check().iter().any(|p| p.key == "nats_url");
        assert_eq!(from_check, !cfg!(feature = "nats-sync"));
    }
}
