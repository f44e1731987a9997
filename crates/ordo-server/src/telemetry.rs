//! Logs (to stdout, text or JSON, one event per line) and the Prometheus recorder.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Registry, reload};

/// Changes the log filter of the running process (configuration reload).
static LOG_FILTER: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global log subscriber. `RUST_LOG`, when set, overrides `level` at start.
pub fn init_logs(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let result = if json {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt.json())
            .try_init()
    } else {
        tracing_subscriber::registry()
            .with(filter)
            .with(fmt)
            .try_init()
    };
    match result {
        Ok(()) => {
            let _ = LOG_FILTER.set(handle);
        }
        Err(e) => eprintln!("ordo-server: logging already initialised: {e}"),
    }
}

/// Replaces the log filter.
pub fn set_log_level(level: &str) -> Result<(), String> {
    let filter = EnvFilter::try_new(level).map_err(|e| e.to_string())?;
    match LOG_FILTER.get() {
        Some(handle) => handle.reload(filter).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// Installs the global metrics recorder and returns the handle `/metrics` renders.
pub fn init_metrics() -> Option<PrometheusHandle> {
    match PrometheusBuilder::new()
        .set_buckets(&[
            0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05,
            0.1, 0.5, 1.0, 5.0,
        ])
        .and_then(|b| b.install_recorder())
    {
        Ok(handle) => {
            metrics::gauge!("ordo_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            Some(handle)
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled");
            None
        }
    }
}
