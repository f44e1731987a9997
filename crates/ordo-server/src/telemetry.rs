//! Logs (to stdout, text or JSON, one event per line) and the Prometheus recorder.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};
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
pub struct Metrics(Arc<OnceLock<PrometheusRecorder>>);

impl Metrics {
    /// The metrics in Prometheus' text format. Waits (off the async workers) in the
    /// moment after a start when the recorder is still being built.
    pub async fn render(&self) -> String {
        if let Some(recorder) = self.0.get() {
            return recorder.handle().render();
        }
        let cell = self.0.clone();
        tokio::task::spawn_blocking(move || cell.wait().handle().render())
            .await
            .unwrap_or_default()
    }
}

/// The global recorder: hands every registration to the Prometheus recorder, waiting
/// for it in the moment after a start when it is still being built.
///
/// Building it calibrates the cycle counter its clock reads (quanta), a busy loop of
/// 0.6 ms at best that on a virtual machine takes up to 200 ms (its deadline) in about
/// one start in a hundred. It is built on a thread of its own, so a start does not wait
/// for it unless it records a metric before the calibration is done.
struct Deferred(Arc<OnceLock<PrometheusRecorder>>);

impl Deferred {
    fn recorder(&self) -> &PrometheusRecorder {
        self.0.wait()
    }
}

impl metrics::Recorder for Deferred {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.recorder().describe_counter(key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.recorder().describe_gauge(key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.recorder().describe_histogram(key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.recorder().register_counter(key, metadata)
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.recorder().register_gauge(key, metadata)
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.recorder().register_histogram(key, metadata)
    }
}

/// Installs the global metrics recorder and returns what `/metrics` renders. The
/// recorder is built, and its histograms drained, on a thread of its own.
pub fn init_metrics() -> Option<Metrics> {
    let cell = Arc::new(OnceLock::new());
    if let Err(e) = metrics::set_global_recorder(Deferred(cell.clone())) {
        tracing::warn!(error = %e, "metrics disabled");
        return None;
    }
    let build = {
        let cell = cell.clone();
        move || {
            let recorder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                // `set_buckets` refuses only an empty list.
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            let _ = cell.set(recorder);
            metrics::gauge!("ordo_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            handle
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
    Some(Metrics(cell))
}
