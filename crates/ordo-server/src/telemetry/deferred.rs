//! The global metrics recorder, installed before the Prometheus recorder it hands every
//! registration to is built, and never waiting for it.
//!
//! Building that recorder calibrates the cycle counter its clock reads (quanta): a busy
//! loop of 0.6 ms at best, which on a virtual machine runs to its 200 ms deadline now
//! and then. It is built on a thread of its own; a metric registered before it is in
//! gets a handle that keeps what it records and hands that over when it is, so neither
//! a start nor a request ever waits for the calibration.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Level, Metadata,
    Recorder, SharedString, Unit,
};
use metrics_exporter_prometheus::PrometheusRecorder;

/// The Prometheus recorder ignores metadata; handed-over handles get this.
const METADATA: Metadata<'static> = Metadata::new("ordo", Level::INFO, None);

/// What was registered or described before the recorder was built: one handle per
/// key, however often it is registered meanwhile.
#[derive(Default)]
struct Early {
    counters: HashMap<Key, Arc<EarlyHandle<Counter, CounterOps>>>,
    gauges: HashMap<Key, Arc<EarlyHandle<Gauge, GaugeOps>>>,
    histograms: HashMap<Key, Arc<EarlyHandle<Histogram, Vec<f64>>>>,
    descriptions: Vec<(Kind, KeyName, Option<Unit>, SharedString)>,
}

#[derive(Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// The global recorder: the Prometheus recorder once `built` holds it.
pub(super) struct Deferred {
    built: OnceLock<PrometheusRecorder>,
    early: Mutex<Early>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `direct` on what `real` holds once it is set, else `keep` on what is pending. `real`
/// is set before (or while) the lock on `pending` is taken to hand it over, and checked
/// again under that lock here: nothing is kept after the hand-over took what was pending.
fn set_or_pending<R, P, T>(
    real: &OnceLock<R>,
    pending: &Mutex<P>,
    direct: impl FnOnce(&R) -> T,
    keep: impl FnOnce(&mut P) -> T,
) -> T {
    if let Some(real) = real.get() {
        return direct(real);
    }
    let mut pending = lock(pending);
    match real.get() {
        Some(real) => {
            drop(pending);
            direct(real)
        }
        None => keep(&mut pending),
    }
}

impl Deferred {
    pub(super) fn new() -> Deferred {
        Deferred {
            built: OnceLock::new(),
            early: Mutex::new(Early::default()),
        }
    }

    /// Builds the recorder with `make` (once) and hands it what was registered so far.
    pub(super) fn build(&self, make: impl FnOnce() -> PrometheusRecorder) -> &PrometheusRecorder {
        let recorder = self.built.get_or_init(make);
        self.hand_over(recorder);
        recorder
    }

    /// Hands what was registered so far over to `recorder`, which `built` now holds.
    fn hand_over(&self, recorder: &PrometheusRecorder) {
        // Taken after `built` was set: whoever registers from here on finds it there.
        let early = std::mem::take(&mut *lock(&self.early));
        for (kind, name, unit, text) in early.descriptions {
            match kind {
                Kind::Counter => recorder.describe_counter(name, unit, text),
                Kind::Gauge => recorder.describe_gauge(name, unit, text),
                Kind::Histogram => recorder.describe_histogram(name, unit, text),
            }
        }
        for (key, handle) in early.counters {
            handle.hand_over(recorder.register_counter(&key, &METADATA), |c, ops| {
                if ops.at_least > 0 {
                    c.absolute(ops.at_least);
                }
                if ops.added > 0 {
                    c.increment(ops.added);
                }
            });
        }
        for (key, handle) in early.gauges {
            handle.hand_over(
                recorder.register_gauge(&key, &METADATA),
                |g, ops| match ops.set {
                    Some(value) => g.set(value + ops.added),
                    None if ops.added != 0.0 => g.increment(ops.added),
                    None => {}
                },
            );
        }
        for (key, handle) in early.histograms {
            handle.hand_over(recorder.register_histogram(&key, &METADATA), |h, values| {
                for value in values {
                    h.record(value);
                }
            });
        }
    }

    /// `direct` on the recorder when it is built, else `early` on what waits for it.
    fn with<T>(
        &self,
        direct: impl FnOnce(&PrometheusRecorder) -> T,
        early: impl FnOnce(&mut Early) -> T,
    ) -> T {
        set_or_pending(&self.built, &self.early, direct, early)
    }

    fn describe(&self, kind: Kind, name: KeyName, unit: Option<Unit>, text: SharedString) {
        self.with(
            |r| match kind {
                Kind::Counter => r.describe_counter(name.clone(), unit, text.clone()),
                Kind::Gauge => r.describe_gauge(name.clone(), unit, text.clone()),
                Kind::Histogram => r.describe_histogram(name.clone(), unit, text.clone()),
            },
            |early| {
                early
                    .descriptions
                    .push((kind, name.clone(), unit, text.clone()))
            },
        )
    }
}

impl Recorder for Deferred {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Counter, key, unit, description);
    }
    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Gauge, key, unit, description);
    }
    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(Kind::Histogram, key, unit, description);
    }
    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        self.with(
            |r| r.register_counter(key, metadata),
            |early| Counter::from_arc(early.counters.entry(key.clone()).or_default().clone()),
        )
    }
    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        self.with(
            |r| r.register_gauge(key, metadata),
            |early| Gauge::from_arc(early.gauges.entry(key.clone()).or_default().clone()),
        )
    }
    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        self.with(
            |r| r.register_histogram(key, metadata),
            |early| Histogram::from_arc(early.histograms.entry(key.clone()).or_default().clone()),
        )
    }
}

/// A handle given out before the recorder was built: it keeps what it records in
/// `pending` until `real` is set, then forwards everything there.
struct EarlyHandle<H, P> {
    real: OnceLock<H>,
    pending: Mutex<P>,
}

impl<H, P: Default> Default for EarlyHandle<H, P> {
    fn default() -> Self {
        EarlyHandle {
            real: OnceLock::new(),
            pending: Mutex::new(P::default()),
        }
    }
}

impl<H, P: Default> EarlyHandle<H, P> {
    fn apply(&self, direct: impl FnOnce(&H), keep: impl FnOnce(&mut P)) {
        set_or_pending(&self.real, &self.pending, direct, keep);
    }

    /// Replays what was pending on `real`, then sets it, under the lock on `pending`.
    fn hand_over(&self, real: H, replay: impl FnOnce(&H, P)) {
        let mut pending = lock(&self.pending);
        replay(&real, std::mem::take(&mut *pending));
        let _ = self.real.set(real);
    }
}

#[derive(Default)]
struct CounterOps {
    added: u64,
    at_least: u64,
}

#[derive(Default)]
struct GaugeOps {
    set: Option<f64>,
    added: f64,
}

impl CounterFn for EarlyHandle<Counter, CounterOps> {
    fn increment(&self, value: u64) {
        self.apply(|c| c.increment(value), |ops| ops.added += value);
    }
    fn absolute(&self, value: u64) {
        self.apply(
            |c| c.absolute(value),
            |ops| ops.at_least = ops.at_least.max(value),
        );
    }
}

impl GaugeFn for EarlyHandle<Gauge, GaugeOps> {
    fn increment(&self, value: f64) {
        self.apply(|g| g.increment(value), |ops| ops.added += value);
    }
    fn decrement(&self, value: f64) {
        self.apply(|g| g.decrement(value), |ops| ops.added -= value);
    }
    fn set(&self, value: f64) {
        self.apply(
            |g| g.set(value),
            |ops| {
                ops.set = Some(value);
                ops.added = 0.0;
            },
        );
    }
}

impl HistogramFn for EarlyHandle<Histogram, Vec<f64>> {
    fn record(&self, value: f64) {
        self.apply(|h| h.record(value), |values| values.push(value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    fn key(name: &'static str) -> Key {
        Key::from_static_name(name)
    }

    #[test]
    fn what_is_recorded_before_the_recorder_is_built_is_handed_over() {
        let deferred = Deferred::new();
        let counter = deferred.register_counter(&key("early_total"), &METADATA);
        // Registered again before the build (as a macro does at every call): the same
        // series, not a second one lost at the hand-over.
        deferred
            .register_counter(&key("early_total"), &METADATA)
            .increment(4);
        let gauge = deferred.register_gauge(&key("early_gauge"), &METADATA);
        let histogram = deferred.register_histogram(&key("early_seconds"), &METADATA);
        deferred.describe_counter("early_total".into(), None, "Counted early.".into());
        counter.increment(2);
        counter.increment(3);
        gauge.set(10.0);
        gauge.increment(2.5);
        gauge.decrement(0.5);
        histogram.record(0.25);
        histogram.record(0.75);

        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        deferred.build(|| recorder);
        // Handles given out early now record straight into the recorder.
        counter.increment(1);
        gauge.increment(1.0);
        histogram.record(1.0);
        // And registrations after the hand-over go to it directly.
        deferred
            .register_counter(&key("late_total"), &METADATA)
            .increment(7);

        let text = handle.render();
        for line in [
            "# HELP early_total Counted early.",
            "early_total 10",
            "early_gauge 13",
            "early_seconds_count 3",
            "early_seconds_sum 2",
            "late_total 7",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn records_racing_the_hand_over_are_counted_once() {
        let deferred = Deferred::new();
        let counter = deferred.register_counter(&key("raced_total"), &METADATA);
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let counter = counter.clone();
                s.spawn(move || {
                    for _ in 0..10_000 {
                        counter.increment(1);
                    }
                });
            }
            deferred.build(|| recorder);
        });
        assert!(
            handle.render().lines().any(|l| l == "raced_total 40000"),
            "{}",
            handle.render()
        );
    }
}
