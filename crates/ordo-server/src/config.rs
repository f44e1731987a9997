//! Command-line flags and their `ORDO_*` environment variables.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "ordo-server",
    version,
    about = "The Ordo rule engine server: stores rulesets durably and executes them over HTTP."
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "ORDO_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// HTTP port (0 picks a free one).
    #[arg(short = 'p', long, env = "ORDO_PORT", default_value_t = 8080)]
    pub port: u16,

    /// Rules directory: rulesets are read from and written to it as files, and the
    /// commit log lives in DIR/.ordo/. Without it everything is kept in memory.
    #[arg(long, env = "ORDO_RULES_DIR")]
    pub rules_dir: Option<PathBuf>,

    /// Isolate rulesets per tenant (X-Tenant-ID header or ?tenant_id=).
    #[arg(long, env = "ORDO_MULTI_TENANCY_ENABLED")]
    pub multi_tenancy_enabled: bool,

    /// Tenant of requests that name none.
    #[arg(long, env = "ORDO_DEFAULT_TENANT", default_value = "default")]
    pub default_tenant: String,

    /// Executions per second allowed to the default tenant (unlimited when unset).
    #[arg(long, env = "ORDO_DEFAULT_TENANT_QPS")]
    pub default_tenant_qps: Option<u32>,

    /// Burst allowed to the default tenant above its QPS (defaults to the QPS).
    #[arg(long, env = "ORDO_DEFAULT_TENANT_BURST")]
    pub default_tenant_burst: Option<u32>,

    /// Time limit of each execution of the default tenant, in milliseconds.
    #[arg(long, env = "ORDO_DEFAULT_TENANT_TIMEOUT_MS")]
    pub default_tenant_timeout_ms: Option<u64>,

    /// API token required on /api/ routes (Authorization: Bearer or X-API-Token).
    /// Repeat or separate with commas to accept several.
    #[arg(
        long,
        env = "ORDO_API_TOKEN",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_token: Vec<String>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "ORDO_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Time limit of a whole request, in milliseconds (0: none).
    #[arg(long, env = "ORDO_REQUEST_TIMEOUT_MS", default_value_t = 30_000)]
    pub request_timeout_ms: u64,

    /// After SIGTERM/SIGINT, how long in-flight requests may take to finish, in seconds.
    #[arg(long, env = "ORDO_SHUTDOWN_TIMEOUT_SECS", default_value_t = 30)]
    pub shutdown_timeout_secs: u64,

    /// Threads serving requests (default: one per CPU core).
    #[arg(long, env = "ORDO_WORKER_THREADS")]
    pub worker_threads: Option<usize>,

    /// Log filter (error, warn, info, debug, trace, or a tracing directive).
    #[arg(long, env = "ORDO_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Log format: text or json.
    #[arg(long, env = "ORDO_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
}

impl Config {
    /// Checks what flags alone cannot express.
    pub fn validate(&self) -> Result<(), String> {
        ordo_core::validate_name(&self.default_tenant)
            .map_err(|e| format!("--default-tenant: {e}"))?;
        if self.default_tenant_qps == Some(0) {
            return Err("--default-tenant-qps must be at least 1 (omit it for no limit)".into());
        }
        if self.default_tenant_burst == Some(0) {
            return Err("--default-tenant-burst must be at least 1".into());
        }
        if self.default_tenant_burst.is_some() && self.default_tenant_qps.is_none() {
            return Err("--default-tenant-burst needs --default-tenant-qps".into());
        }
        if self.default_tenant_timeout_ms == Some(0) {
            return Err("--default-tenant-timeout-ms must be at least 1".into());
        }
        if self.api_token.iter().any(|t| t.trim().is_empty()) {
            return Err("--api-token must not be empty".into());
        }
        if self.worker_threads == Some(0) {
            return Err("--worker-threads must be at least 1".into());
        }
        if self.max_body_bytes < 1024 {
            return Err("--max-body-bytes must be at least 1024".into());
        }
        Ok(())
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
