//! Logs (to stdout, text or JSON) and the Prometheus metrics recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

/// Installs the global log subscriber. `RUST_LOG` overrides `level` when set.
pub fn init_logs(level: &str, json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_writer(std::io::stdout);
    let result = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    if let Err(e) = result {
        eprintln!("ordo-server: logging already initialised: {e}");
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
        Ok(handle) => Some(handle),
        Err(e) => {
            tracing::warn!(error = %e, "metrics disabled");
            None
        }
    }
}
