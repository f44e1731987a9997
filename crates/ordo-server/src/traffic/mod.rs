//! Traffic control: who is calling (the client IP, believing `X-Forwarded-For` only
//! from trusted proxies), platform rate limits per client and endpoint group, a
//! ruleset's own rate limit and concurrency bound, the instance's execution bound,
//! and which rulesets the instance serves.
//!
//! Every bucket and counter outlives the catalog entry it serves: a reload of rules or
//! configuration keeps them while their rate is unchanged, so it never refills a
//! drained bucket.

mod key_logic;
mod limiter;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use ipnet::IpNet;
use ordo_core::RuleSet;

use crate::config::Config;
use crate::error::Error;
pub use key_logic::KeyLogic;
pub use limiter::{Keyed, Rate, rate, retry_after_secs};

/// How often idle keys are swept from every limiter.
pub const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Parses an IP address or CIDR block.
pub fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "not an IP address or CIDR block (as in 10.0.0.0/8)".to_string())
}

/// The endpoint group a route belongs to, for the platform limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Ruleset, tenant and queue management.
    Admin,
    /// Executions, batches, async submissions, evaluation.
    Execute,
}

impl Group {
    pub fn as_str(self) -> &'static str {
        match self {
            Group::Admin => "admin",
            Group::Execute => "execute",
        }
    }
}

/// Headers a key rule may read, from HTTP or gRPC.
pub trait Headers {
    fn each(&self, f: &mut dyn FnMut(&str, &str));
}

impl Headers for http::HeaderMap {
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        for (name, value) in self {
            if let Ok(value) = value.to_str() {
                f(name.as_str(), value);
            }
        }
    }
}

impl Headers for tonic::metadata::MetadataMap {
    fn each(&self, f: &mut dyn FnMut(&str, &str)) {
        for entry in self.iter() {
            if let tonic::metadata::KeyAndValueRef::Ascii(name, value) = entry
                && let Ok(value) = value.to_str()
            {
                f(name.as_str(), value);
            }
        }
    }
}

/// Who is calling.
pub struct Caller<'a> {
    pub ip: IpAddr,
    pub headers: &'a dyn Headers,
}

/// A ruleset's traffic settings, compiled with it.
#[derive(Debug)]
pub struct RulesetTraffic {
    rate: Option<Rate>,
    key_logic: Option<KeyLogic>,
    max_concurrent: u32,
}

impl RulesetTraffic {
    /// The settings of `model`, or `None` when it has none. A key rule that does not
    /// compile is an error.
    pub fn of(model: &RuleSet) -> Result<Option<Arc<RulesetTraffic>>, String> {
        let config = &model.config;
        if config.rate_limit.is_none() && config.backpressure.is_none() {
            return Ok(None);
        }
        let (rate, key_logic) = match &config.rate_limit {
            Some(limit) => {
                let burst = limit.burst.unwrap_or(limit.requests_per_second);
                let key_logic = match &limit.key_logic {
                    Some(rule) => {
                        let json = serde_json::to_value(rule).map_err(|e| e.to_string())?;
                        Some(KeyLogic::compile(&json).map_err(|e| {
                            format!("config.rate_limit.key_logic: not valid JSONLogic: {e}")
                        })?)
                    }
                    None => None,
                };
                (Some(rate(limit.requests_per_second, burst)), key_logic)
            }
            None => (None, None),
        };
        Ok(Some(Arc::new(RulesetTraffic {
            rate,
            key_logic,
            max_concurrent: config.backpressure.as_ref().map_or(0, |b| b.max_concurrent),
        })))
    }
}

/// What a ruleset's bucket is chosen by: its key rule's result, or the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateKey {
    Ip(IpAddr),
    Key(Box<str>),
}

/// The state of one ruleset's controls, shared by its catalog entries over time.
#[derive(Debug)]
pub struct Controls {
    served: bool,
    settings: Option<Arc<RulesetTraffic>>,
    limiter: Option<Arc<Keyed<RateKey>>>,
    inflight: Arc<AtomicU32>,
}

impl Controls {
    pub fn served(&self) -> bool {
        self.served
    }
}

/// Executions in flight, counted while it lives.
#[must_use = "the execution counts as running while the permit lives"]
pub struct Permit {
    counters: [Option<Arc<AtomicU32>>; 2],
}

impl Drop for Permit {
    fn drop(&mut self) {
        for counter in self.counters.iter().flatten() {
            counter.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Takes a slot of `counter` unless `limit` (0: none) are taken.
fn take_slot(counter: &Arc<AtomicU32>, limit: u32) -> Option<Arc<AtomicU32>> {
    let before = counter.fetch_add(1, Ordering::AcqRel);
    if limit > 0 && before >= limit {
        counter.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    Some(counter.clone())
}

/// The platform limiters: one keyed bucket per client IP and endpoint group.
struct Platform {
    enabled: bool,
    admin: Arc<Keyed<IpAddr>>,
    execute: Arc<Keyed<IpAddr>>,
}

impl Platform {
    fn of(config: &Config, previous: Option<&Platform>) -> Platform {
        let rl = &config.rate_limit;
        let group_rate = |rps: Option<u32>, burst: Option<u32>| {
            rate(
                rps.unwrap_or(rl.default_rps),
                burst.unwrap_or(rl.default_burst),
            )
        };
        let keep = |rate: Rate, old: Option<&Arc<Keyed<IpAddr>>>| match old {
            Some(old) if old.rate() == rate => old.clone(),
            _ => Arc::new(Keyed::new(rate, rl.max_keys)),
        };
        let e = &rl.endpoints;
        Platform {
            enabled: rl.enabled,
            admin: keep(
                group_rate(e.admin_rps, e.admin_burst),
                previous.map(|p| &p.admin),
            ),
            execute: keep(
                group_rate(e.execute_rps, e.execute_burst),
                previous.map(|p| &p.execute),
            ),
        }
    }
}

/// Which rulesets this instance serves.
struct Filter {
    include: Option<globset::GlobSet>,
    exclude: Option<globset::GlobSet>,
}

impl Filter {
    fn of(config: &Config) -> Filter {
        let set = |globs: &[String]| {
            if globs.is_empty() {
                return None;
            }
            let mut builder = globset::GlobSetBuilder::new();
            for glob in globs {
                // Checked with the configuration; a bad one cannot get here.
                if let Ok(glob) = globset::Glob::new(glob) {
                    builder.add(glob);
                }
            }
            builder.build().ok()
        };
        Filter {
            include: set(&config.rulesets.include),
            exclude: set(&config.rulesets.exclude),
        }
    }

    fn serves(&self, name: &str) -> bool {
        self.include.as_ref().is_none_or(|s| s.is_match(name))
            && !self.exclude.as_ref().is_some_and(|s| s.is_match(name))
    }

    fn is_open(&self) -> bool {
        self.include.is_none() && self.exclude.is_none()
    }
}

/// The instance's traffic state.
pub struct Traffic {
    platform: ArcSwap<Platform>,
    proxies: ArcSwap<Vec<IpNet>>,
    filter: Filter,
    inflight: Arc<AtomicU32>,
    controls: Mutex<HashMap<(String, String), Arc<Controls>>>,
}

impl Traffic {
    pub fn new(config: &Config) -> Traffic {
        Traffic {
            platform: ArcSwap::from_pointee(Platform::of(config, None)),
            proxies: ArcSwap::from_pointee(proxies(config)),
            filter: Filter::of(config),
            inflight: Arc::new(AtomicU32::new(0)),
            controls: Mutex::new(HashMap::new()),
        }
    }

    /// Follows a configuration reload; buckets whose rate is unchanged are kept.
    pub fn apply(&self, config: &Config) {
        let previous = self.platform.load();
        self.platform
            .store(Arc::new(Platform::of(config, Some(&previous))));
        self.proxies.store(Arc::new(proxies(config)));
    }

    /// The client of a request from `peer`: `peer` itself unless it is a trusted
    /// proxy, in which case the rightmost `X-Forwarded-For` address that is not one.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        let proxies = self.proxies.load();
        let trusted = |ip: &IpAddr| proxies.iter().any(|net| net.contains(ip));
        if !trusted(&peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                // A malformed hop ends what can be believed.
                Err(_) => break,
            }
        }
        client
    }

    /// The platform limit of `group` for `ip`.
    pub fn check_platform(&self, group: Group, ip: IpAddr) -> Result<(), Error> {
        let platform = self.platform.load();
        if !platform.enabled {
            return Ok(());
        }
        let limiter = match group {
            Group::Admin => &platform.admin,
            Group::Execute => &platform.execute,
        };
        limiter.check(&ip).map_err(|retry_after_secs| {
            rejected("rate_limit_platform");
            Error::RateLimited {
                message: format!(
                    "client {ip} is over the {} rate limit of {} requests per second",
                    group.as_str(),
                    limiter.rate().0
                ),
                retry_after_secs,
            }
        })
    }

    /// Whether this instance serves every ruleset (no include or exclude filter).
    #[inline]
    pub fn serves_all(&self) -> bool {
        self.filter.is_open()
    }

    /// Whether this instance serves ruleset `name`.
    pub fn serves(&self, name: &str) -> bool {
        self.filter.is_open() || self.filter.serves(name)
    }

    /// The controls of ruleset `name` of `tenant` with `settings`: the existing ones
    /// when their rate is unchanged, so that a new version keeps its buckets.
    pub fn controls(
        &self,
        tenant: &str,
        name: &str,
        settings: Option<Arc<RulesetTraffic>>,
        max_keys: u32,
    ) -> Arc<Controls> {
        let key = (tenant.to_string(), name.to_string());
        let mut all = self
            .controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = all.get(&key);
        let wanted = settings.as_ref().and_then(|s| s.rate);
        let limiter = match (wanted, old.and_then(|o| o.limiter.as_ref())) {
            (None, _) => None,
            (Some(rate), Some(old)) if old.rate() == rate => Some(old.clone()),
            (Some(rate), _) => Some(Arc::new(Keyed::new(rate, max_keys))),
        };
        let controls = Arc::new(Controls {
            served: self.serves(name),
            settings,
            limiter,
            inflight: old.map_or_else(|| Arc::new(AtomicU32::new(0)), |o| o.inflight.clone()),
        });
        all.insert(key, controls.clone());
        controls
    }

    /// A ruleset's rate limit, then the instance's and the ruleset's execution bounds.
    pub fn admit(
        &self,
        controls: &Controls,
        tenant: &str,
        ruleset: &str,
        caller: &Caller<'_>,
        max_concurrent: u32,
    ) -> Result<Permit, Error> {
        if let (Some(limiter), Some(settings)) = (&controls.limiter, &controls.settings) {
            let key = settings
                .key_logic
                .as_ref()
                .and_then(|logic| {
                    let mut headers = serde_json::Map::new();
                    caller.headers.each(&mut |k, v| {
                        headers.insert(k.to_string(), serde_json::Value::String(v.to_string()));
                    });
                    let ip = caller.ip.to_string();
                    logic.key(&key_logic::context(&ip, tenant, ruleset, headers))
                })
                .map_or(RateKey::Ip(caller.ip), |k| RateKey::Key(k.into()));
            if let Err(retry_after_secs) = limiter.check(&key) {
                rejected("rate_limit_ruleset");
                return Err(Error::RateLimited {
                    message: format!(
                        "ruleset '{ruleset}' is over its rate limit of {} requests per second",
                        limiter.rate().0
                    ),
                    retry_after_secs,
                });
            }
        }
        let Some(global) = take_slot(&self.inflight, max_concurrent) else {
            rejected("overloaded_instance");
            return Err(Error::Overloaded(format!(
                "this instance is running its limit of {max_concurrent} executions; retry shortly"
            )));
        };
        let own_limit = controls.settings.as_ref().map_or(0, |s| s.max_concurrent);
        let own = if own_limit > 0 {
            let Some(slot) = take_slot(&controls.inflight, own_limit) else {
                drop(Permit {
                    counters: [Some(global), None],
                });
                rejected("overloaded_ruleset");
                return Err(Error::Overloaded(format!(
                    "ruleset '{ruleset}' is running its limit of {own_limit} executions; retry shortly"
                )));
            };
            Some(slot)
        } else {
            None
        };
        Ok(Permit {
            counters: [Some(global), own],
        })
    }

    /// Executions running now.
    pub fn inflight(&self) -> u32 {
        self.inflight.load(Ordering::Relaxed)
    }

    /// Drops idle keys from every limiter (run every [`SWEEP_EVERY`]).
    pub fn sweep(&self) {
        let platform = self.platform.load();
        platform.admin.evict_idle();
        platform.execute.evict_idle();
        let limiters: Vec<Arc<Keyed<RateKey>>> = self
            .controls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .filter_map(|c| c.limiter.clone())
            .collect();
        for limiter in limiters {
            limiter.evict_idle();
        }
    }
}

fn proxies(config: &Config) -> Vec<IpNet> {
    config
        .trusted_proxies
        .iter()
        .filter_map(|p| parse_net(p).ok())
        .collect()
}

/// Why requests are refused, as counted in `ordo_rejected_total{reason}`.
const REASONS: [&str; 7] = [
    "rate_limit_platform",
    "rate_limit_tenant",
    "rate_limit_ruleset",
    "overloaded_instance",
    "overloaded_ruleset",
    "queue_full",
    "queue_memory",
];

/// Counts a refused request by reason. The counters are registered once: a refusal
/// under overload must cost less than serving, and a labelled lookup in the registry
/// per refusal cost more than an execution.
pub fn rejected(reason: &'static str) {
    static COUNTERS: std::sync::OnceLock<Vec<metrics::Counter>> = std::sync::OnceLock::new();
    let counters = COUNTERS.get_or_init(|| {
        REASONS
            .iter()
            .map(|r| metrics::counter!("ordo_rejected_total", "reason" => *r))
            .collect()
    });
    match REASONS.iter().position(|r| *r == reason) {
        Some(i) => {
            if let Some(counter) = counters.get(i) {
                counter.increment(1);
            }
        }
        None => metrics::counter!("ordo_rejected_total", "reason" => reason).increment(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn traffic(proxies: &[&str]) -> Traffic {
        Traffic::new(&Config {
            trusted_proxies: proxies.iter().map(|p| p.to_string()).collect(),
            ..Config::default()
        })
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let t = traffic(&["10.0.0.0/8", "192.168.1.1"]);
        // An untrusted peer's header is ignored, whatever it claims.
        assert_eq!(
            t.client_ip(ip("203.0.113.9"), Some("1.2.3.4")),
            ip("203.0.113.9")
        );
        // Through a trusted proxy: the rightmost address it did not add itself.
        assert_eq!(
            t.client_ip(ip("10.1.2.3"), Some("1.2.3.4, 198.51.100.7")),
            ip("198.51.100.7")
        );
        // Trusted hops are skipped; a forged left part is not reached.
        assert_eq!(
            t.client_ip(ip("10.1.2.3"), Some("6.6.6.6, 198.51.100.7, 192.168.1.1")),
            ip("198.51.100.7")
        );
        assert_eq!(t.client_ip(ip("10.1.2.3"), None), ip("10.1.2.3"));
        assert_eq!(t.client_ip(ip("10.1.2.3"), Some("garbage")), ip("10.1.2.3"));
        // No trusted proxies: the header never counts.
        let none = traffic(&[]);
        assert_eq!(
            none.client_ip(ip("10.1.2.3"), Some("1.2.3.4")),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn a_permit_holds_its_slots_until_dropped() {
        let counter = Arc::new(AtomicU32::new(0));
        let first = take_slot(&counter, 2);
        let second = take_slot(&counter, 2);
        assert!(first.is_some() && second.is_some());
        assert!(take_slot(&counter, 2).is_none());
        assert_eq!(counter.load(Ordering::Relaxed), 2);
        drop(Permit {
            counters: [first, None],
        });
        assert_eq!(counter.load(Ordering::Relaxed), 1);
        assert!(take_slot(&counter, 0).is_some(), "0 means no bound");
    }

    #[test]
    fn parse_net_takes_addresses_and_blocks() {
        assert!(parse_net("10.0.0.0/8").is_ok());
        assert!(parse_net("::1").is_ok());
        assert!(parse_net("192.168.0.1").is_ok());
        assert!(parse_net("10.0.0.0/33").is_err());
        assert!(parse_net("proxy.local").is_err());
    }
}
