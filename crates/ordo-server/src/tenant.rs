//! Tenants: their stored configuration and the rate limiter each one carries.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::{Deserialize, Serialize};

/// A tenant as stored in the commit log and shown by the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "enabled_default")]
    pub enabled: bool,
    /// Sustained executions per second; absent means unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qps_limit: Option<u32>,
    /// Requests allowed at once above the sustained rate; defaults to `qps_limit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_limit: Option<u32>,
    /// Upper bound on each execution's time, whatever the ruleset's own `timeout_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_timeout_ms: Option<u64>,
    /// Most rulesets the tenant may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rules: Option<u32>,
}

fn enabled_default() -> bool {
    true
}

impl TenantConfig {
    /// Checks the values a client may send.
    pub fn validate(&self) -> Result<(), String> {
        ordo_core::validate_name(&self.id).map_err(|e| format!("tenant id: {e}"))?;
        if self.qps_limit == Some(0) {
            return Err("qps_limit must be at least 1 (omit it for no limit)".into());
        }
        if self.burst_limit == Some(0) {
            return Err("burst_limit must be at least 1".into());
        }
        if self.burst_limit.is_some() && self.qps_limit.is_none() {
            return Err("burst_limit needs qps_limit".into());
        }
        if self.execution_timeout_ms == Some(0) {
            return Err("execution_timeout_ms must be at least 1 (omit it for no limit)".into());
        }
        Ok(())
    }

    /// The execution time cap, if any.
    pub fn execution_timeout(&self) -> Option<Duration> {
        self.execution_timeout_ms.map(Duration::from_millis)
    }

    fn quota(&self) -> Option<(NonZeroU32, NonZeroU32)> {
        let qps = NonZeroU32::new(self.qps_limit?)?;
        let burst = self.burst_limit.and_then(NonZeroU32::new).unwrap_or(qps);
        Some((qps, burst))
    }
}

/// A tenant's token bucket. Kept across catalog changes while the quota is unchanged,
/// so rewriting a tenant or reloading rules never refills a drained bucket.
pub struct Limiter {
    quota: (NonZeroU32, NonZeroU32),
    bucket: DefaultDirectRateLimiter,
    /// `ordo_rate_limited_total{tenant}`, registered once rather than per refusal.
    refused: metrics::Counter,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("quota", &self.quota)
            .finish()
    }
}

impl Limiter {
    /// Builds the limiter for `config`, reusing `previous` when its quota is the same.
    pub fn for_config(
        config: &TenantConfig,
        previous: Option<&Arc<Limiter>>,
    ) -> Option<Arc<Limiter>> {
        let quota = config.quota()?;
        if let Some(prev) = previous
            && prev.quota == quota
        {
            return Some(prev.clone());
        }
        let (qps, burst) = quota;
        let bucket = RateLimiter::direct(Quota::per_second(qps).allow_burst(burst));
        let refused = metrics::counter!("ordo_rate_limited_total", "tenant" => config.id.clone());
        Some(Arc::new(Limiter {
            quota,
            bucket,
            refused,
        }))
    }

    /// Takes one token, or says in how many whole seconds to retry.
    pub fn check(&self) -> Result<(), u64> {
        self.bucket.check().map_err(|not_until| {
            self.refused.increment(1);
            crate::traffic::retry_after_secs(not_until.wait_time_from(self.bucket.clock().now()))
        })
    }
}
