//! The command line: subcommands, `-c/--config` files, and one flag per configuration key.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "ordo-server",
    version,
    about = "The Ordo rule engine server: stores rulesets durably and executes them over HTTP.",
    after_help = "Every key can also be set in a config file (-c) or an ORDO_* variable; see docs/configuration.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Config file (YAML, JSON or TOML by extension). Repeat for several; later ones win.
    #[arg(short = 'c', long = "config", global = true)]
    pub config_files: Vec<PathBuf>,
    #[command(flatten)]
    pub flags: Flags,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage the database schema (the commit log's tables) as a one-off process.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateAction {
    /// Apply every pending migration to the database of `database_url`.
    Up,
    /// List the migrations and whether each is applied; exit code 1 if any is pending.
    Status,
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the configuration's JSON Schema.
    Schema,
    /// Check the configuration (files, environment, flags) without starting.
    Validate,
    /// Print the effective configuration (tokens hidden).
    Show,
    /// Print the reference table of docs/configuration.md.
    Docs,
}

/// One flag per key: `--<key with dashes>`. Values are kept as text and converted by
/// the same rule as environment variables, so that every bad value of every source is
/// reported together. Unset flags leave lower sources alone.
#[derive(Debug, Clone, Default, Args)]
pub struct Flags {
    #[arg(long, global = true, value_name = "standalone|writer|reader")]
    pub role: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    pub writer_addr: Option<String>,
    #[arg(long, global = true, value_name = "ADDR")]
    pub host: Option<String>,
    #[arg(short = 'p', long, global = true)]
    pub port: Option<String>,
    #[arg(long, global = true, value_name = "PORT")]
    pub grpc_port: Option<String>,
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub grpc_addr: Option<String>,
    /// `--disable-grpc` alone means true.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub disable_grpc: Option<String>,
    /// `--disable-http` alone means true.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub disable_http: Option<String>,
    #[arg(long, global = true, value_name = "FILE")]
    pub grpc_tls_cert: Option<String>,
    #[arg(long, global = true, value_name = "FILE")]
    pub grpc_tls_key: Option<String>,
    #[arg(long, global = true, value_name = "FILE")]
    pub grpc_tls_client_ca: Option<String>,
    #[arg(long, global = true, value_name = "DIR")]
    pub rules_dir: Option<String>,
    /// `--watch-rules` alone means true.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub watch_rules: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// `--auto-migrate` alone means true.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub auto_migrate: Option<String>,
    /// `--multi-tenancy-enabled` alone means true; `=false` turns it off.
    #[arg(
        long,
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_name = "BOOL"
    )]
    pub multi_tenancy_enabled: Option<String>,
    #[arg(long, global = true, value_name = "ID")]
    pub default_tenant: Option<String>,
    #[arg(long, global = true, value_name = "N")]
    pub default_tenant_qps: Option<String>,
    #[arg(long, global = true, value_name = "N")]
    pub default_tenant_burst: Option<String>,
    #[arg(long, global = true, value_name = "MS")]
    pub default_tenant_timeout_ms: Option<String>,
    #[arg(long, global = true, value_name = "TOKEN[,TOKEN...]")]
    pub api_token: Option<String>,
    #[arg(long, global = true, value_name = "BYTES")]
    pub max_body_bytes: Option<String>,
    #[arg(long, global = true, value_name = "MS")]
    pub request_timeout_ms: Option<String>,
    #[arg(long, global = true, value_name = "SECS")]
    pub shutdown_timeout_secs: Option<String>,
    #[arg(long, global = true, value_name = "N")]
    pub worker_threads: Option<String>,
    #[arg(long, global = true, value_name = "URL")]
    pub nats_url: Option<String>,
    #[arg(long, global = true, value_name = "PREFIX")]
    pub nats_subject_prefix: Option<String>,
    #[arg(long, global = true, value_name = "SECS")]
    pub nats_stale_after_secs: Option<String>,
    #[arg(long, global = true, value_name = "SECS")]
    pub writer_lease_ttl_secs: Option<String>,
    #[arg(long, global = true, value_name = "ID")]
    pub instance_id: Option<String>,
    #[arg(long, global = true, value_name = "N")]
    pub log_executions_every: Option<String>,
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<String>,
}

impl Flags {
    /// The flags given, as `(key, text)`.
    pub fn given(&self) -> Vec<(&'static str, &str)> {
        let all: [(&'static str, &Option<String>); 33] = [
            ("role", &self.role),
            ("writer_addr", &self.writer_addr),
            ("host", &self.host),
            ("port", &self.port),
            ("grpc_port", &self.grpc_port),
            ("grpc_addr", &self.grpc_addr),
            ("disable_grpc", &self.disable_grpc),
            ("disable_http", &self.disable_http),
            ("grpc_tls_cert", &self.grpc_tls_cert),
            ("grpc_tls_key", &self.grpc_tls_key),
            ("grpc_tls_client_ca", &self.grpc_tls_client_ca),
            ("rules_dir", &self.rules_dir),
            ("watch_rules", &self.watch_rules),
            ("database_url", &self.database_url),
            ("auto_migrate", &self.auto_migrate),
            ("multi_tenancy_enabled", &self.multi_tenancy_enabled),
            ("default_tenant", &self.default_tenant),
            ("default_tenant_qps", &self.default_tenant_qps),
            ("default_tenant_burst", &self.default_tenant_burst),
            ("default_tenant_timeout_ms", &self.default_tenant_timeout_ms),
            ("api_token", &self.api_token),
            ("max_body_bytes", &self.max_body_bytes),
            ("request_timeout_ms", &self.request_timeout_ms),
            ("shutdown_timeout_secs", &self.shutdown_timeout_secs),
            ("worker_threads", &self.worker_threads),
            ("nats_url", &self.nats_url),
            ("nats_subject_prefix", &self.nats_subject_prefix),
            ("nats_stale_after_secs", &self.nats_stale_after_secs),
            ("writer_lease_ttl_secs", &self.writer_lease_ttl_secs),
            ("instance_id", &self.instance_id),
            ("log_executions_every", &self.log_executions_every),
            ("log_level", &self.log_level),
            ("log_format", &self.log_format),
        ];
        all.into_iter()
            .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
            .collect()
    }
}
