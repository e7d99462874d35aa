//! A webhook's `rate_limit`: `max_requests` per `window_seconds`.
//!
//! Counted per webhook, or per sender address with `per_ip: true` (a wcon addition), by
//! `governor`'s GCRA limiter, a smooth form of the sliding window: a burst of up to
//! `max_requests` is admitted at once, then capacity returns at one request per
//! `window_seconds / max_requests`, so over any longer stretch the rate is `max_requests` per
//! window (right after an idle window, at most twice that within one window). A refusal is
//! 429 with `Retry-After` (the original answered 401).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;
use serde_json::Value;

/// The `rate_limit` block.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitConfig {
    #[serde(default = "default_max")]
    max_requests: u32,
    #[serde(default = "default_window")]
    window_seconds: u64,
    #[serde(default)]
    per_ip: bool,
}

fn default_max() -> u32 {
    100
}
fn default_window() -> u64 {
    60
}

enum Limiter {
    Webhook(DefaultDirectRateLimiter),
    PerIp(DefaultKeyedRateLimiter<IpAddr>),
}

/// A webhook's limiter.
pub struct RateLimit {
    limiter: Limiter,
    max_requests: u32,
    window: Duration,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("max_requests", &self.max_requests)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// Reads a `rate_limit` block; the error names what is out of range.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let config: RateLimitConfig = serde_json::from_value(value.clone())
            .map_err(|e| crate::config::explain_serde_error(&e.to_string()))?;
        let max =
            NonZeroU32::new(config.max_requests).ok_or("`max_requests` must be greater than 0")?;
        if !(1..=86_400).contains(&config.window_seconds) {
            return Err("`window_seconds` must be between 1 and 86400".into());
        }
        let window = Duration::from_secs(config.window_seconds);
        let quota = Quota::with_period(window / max.get())
            .ok_or("`window_seconds` / `max_requests` is too small")?
            .allow_burst(max);
        let limiter = if config.per_ip {
            Limiter::PerIp(RateLimiter::keyed(quota))
        } else {
            Limiter::Webhook(RateLimiter::direct(quota))
        };
        Ok(Self {
            limiter,
            max_requests: max.get(),
            window,
        })
    }

    /// Takes one request from `source`; `Err` is how long until one would be admitted.
    pub fn check(&self, source: IpAddr) -> Result<(), Duration> {
        let outcome = match &self.limiter {
            Limiter::Webhook(l) => l.check(),
            Limiter::PerIp(l) => {
                // Bound the memory of the per-address table under a spray of addresses.
                if l.len() > 100_000 {
                    l.retain_recent();
                }
                l.check_key(&source)
            }
        };
        outcome.map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// The text of a refusal.
    pub fn describe(&self) -> String {
        format!(
            "rate limit of {} requests per {}s exceeded",
            self.max_requests,
            self.window.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admits_max_requests_then_refuses_with_a_wait() {
        let limit =
            RateLimit::from_json(&json!({"max_requests": 3, "window_seconds": 60})).unwrap();
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limit.check(ip).is_ok());
        }
        let wait = limit.check(ip).unwrap_err();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
    }

    #[test]
    fn per_ip_counts_each_sender() {
        let limit =
            RateLimit::from_json(&json!({"max_requests": 1, "window_seconds": 60, "per_ip": true}))
                .unwrap();
        assert!(limit.check("203.0.113.1".parse().unwrap()).is_ok());
        assert!(limit.check("203.0.113.1".parse().unwrap()).is_err());
        assert!(limit.check("203.0.113.2".parse().unwrap()).is_ok());
    }

    #[test]
    fn bad_blocks_are_refused() {
        for bad in [
            json!({"max_requests": 0}),
            json!({"window_seconds": 0}),
            json!({"max": 3}),
        ] {
            assert!(RateLimit::from_json(&bad).is_err(), "{bad}");
        }
    }
}
