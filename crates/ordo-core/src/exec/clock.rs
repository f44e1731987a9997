//! The clock that enforces execution time limits.
//!
//! Limits are in milliseconds, so a coarse clock will do, and it is the cheapest one to
//! read: on Linux `CLOCK_MONOTONIC_COARSE` costs a few nanoseconds through the vDSO, with
//! the kernel tick (1 to 4 ms) as resolution. Elsewhere the standard monotonic clock.
//! (rustix goes through libc here: its own vDSO reader does not run under valgrind.)

/// Nanoseconds on a monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u64);

impl Stamp {
    pub(crate) fn after_ms(self, ms: u64) -> Stamp {
        Stamp(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }
}

#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn now() -> Stamp {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    Stamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
}

#[cfg(not(target_os = "linux"))]
#[inline]
pub(crate) fn now() -> Stamp {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    Stamp(u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX))
}
