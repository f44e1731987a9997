//! Logs (to stdout, text or JSON, one event per line) and the Prometheus recorder.

mod deferred;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

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

/// Histogram buckets, in seconds: from a microsecond (an engine execution) to seconds.
const BUCKETS: &[f64] = &[
    0.000_001, 0.000_005, 0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
    1.0, 5.0,
];

/// How often histograms are drained: they accumulate samples until then, so memory
/// stays flat under load, and no request waits for a drain.
const UPKEEP_EVERY: Duration = Duration::from_millis(250);

/// The Prometheus recorder, once built; what `/metrics` renders.
#[derive(Clone)]
pub struct Metrics {
    deferred: Arc<deferred::Deferred>,
    building: Arc<std::sync::Once>,
    /// Set once what was recorded before the recorder was built has been handed to it.
    complete: Arc<OnceLock<PrometheusHandle>>,
}

impl Metrics {
    /// The metrics in Prometheus' text format. Waits (off the async workers) while the
    /// recorder is still being built, which a first call starts if nothing has yet.
    pub async fn render(&self) -> String {
        if let Some(handle) = self.complete.get() {
            return handle.render();
        }
        self.build_in_background();
        let complete = self.complete.clone();
        tokio::task::spawn_blocking(move || complete.wait().render())
            .await
            .unwrap_or_default()
    }

    /// Builds the Prometheus recorder (once), then drains its histograms, on a thread of
    /// its own. The server calls this once its start is over: building the recorder
    /// spins on a core for 0.6 ms at best, up to 200 ms on a virtual machine, which a
    /// start on two cores would share; what is recorded meanwhile waits in `deferred`.
    pub fn build_in_background(&self) {
        self.building.call_once(|| {
            let build = {
                let (deferred, complete) = (self.deferred.clone(), self.complete.clone());
                move || {
                    let recorder = deferred.build(|| {
                        PrometheusBuilder::new()
                            .set_buckets(BUCKETS)
                            .map(PrometheusBuilder::build_recorder)
                            // `set_buckets` refuses only an empty list.
                            .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder())
                    });
                    metrics::gauge!("ordo_build_info", "version" => env!("CARGO_PKG_VERSION"))
                        .set(1.0);
                    complete.get_or_init(|| recorder.handle()).clone()
                }
            };
            let build_then_drain = {
                let build = build.clone();
                move || {
                    let handle = build();
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        handle.run_upkeep();
                    }
                }
            };
            let spawned = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(build_then_drain);
            if let Err(e) = spawned {
                // Without the thread: built here, and histograms are not drained.
                tracing::warn!(error = %e, "cannot start the metrics thread");
                build();
            }
        });
    }
}

/// Installs the global metrics recorder and returns what `/metrics` renders. What is
/// recorded before `Metrics::build_in_background` has built the Prometheus recorder
/// waits for it in `deferred`; nothing else does.
pub fn init_metrics() -> Option<Metrics> {
    let deferred = Arc::new(deferred::Deferred::new());
    if let Err(e) = metrics::set_global_recorder(deferred.clone()) {
        tracing::warn!(error = %e, "metrics disabled");
        return None;
    }
    Some(Metrics {
        deferred,
        building: Arc::new(std::sync::Once::new()),
        complete: Arc::new(OnceLock::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics::{Key, Level, Metadata, Recorder};

    /// A scrape that comes before the recorder is built starts the build and answers
    /// with everything recorded until then: it waits for the hand-over, not merely for
    /// the recorder (thousands of early series make that window wide).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_before_the_build_sees_what_was_recorded_early() {
        let metrics = Metrics {
            deferred: Arc::new(deferred::Deferred::new()),
            building: Arc::new(std::sync::Once::new()),
            complete: Arc::new(OnceLock::new()),
        };
        let metadata = Metadata::new("test", Level::INFO, None);
        for i in 0..3_000 {
            let key = Key::from_parts("early_total", vec![metrics::Label::new("n", i.to_string())]);
            metrics
                .deferred
                .register_counter(&key, &metadata)
                .increment(1);
        }
        let text = metrics.render().await;
        let series = text
            .lines()
            .filter(|l| l.starts_with("early_total{"))
            .count();
        assert_eq!(series, 3_000, "{}", &text[..text.len().min(2_000)]);
    }
}
