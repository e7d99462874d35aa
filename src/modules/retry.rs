//! The per-webhook `retry` block: how often and how patiently a module is tried again.
//!
//! Keys and caps are the original's (`max_attempts` ≤ 20, `max_delay` ≤ 60 s,
//! `backoff_multiplier` 0.1–10). Only [`ModuleError::Retryable`] errors are retried; a
//! rejection ends the attempts at once.

use std::future::Future;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use super::ModuleError;

/// A validated retry policy.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Longest delay between attempts.
    pub max_delay: Duration,
    /// Factor applied to the delay after each attempt.
    pub backoff_multiplier: f64,
}

impl Default for RetryPolicy {
    /// No `retry` block: one attempt; the buffer's redelivery does the rest.
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
            backoff_multiplier: 2.0,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetryConfig {
    #[serde(default)]
    enabled: bool,
    #[serde(default = "default_attempts")]
    max_attempts: u32,
    #[serde(default = "default_initial")]
    initial_delay: f64,
    #[serde(default = "default_max_delay")]
    max_delay: f64,
    #[serde(default = "default_multiplier")]
    backoff_multiplier: f64,
    // The original names Python exception classes here; wcon classifies errors itself, so
    // these lists are accepted for compatibility and do not change behaviour.
    #[serde(default)]
    #[allow(dead_code)]
    retryable_errors: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    non_retryable_errors: Vec<String>,
}

fn default_attempts() -> u32 {
    3
}
fn default_initial() -> f64 {
    1.0
}
fn default_max_delay() -> f64 {
    60.0
}
fn default_multiplier() -> f64 {
    2.0
}

impl RetryPolicy {
    /// Reads a `retry` block; the error says which value is out of range.
    pub fn from_json(value: &Value) -> Result<Self, String> {
        let config: RetryConfig = serde_json::from_value(value.clone())
            .map_err(|e| crate::config::explain_serde_error(&e.to_string()))?;
        if !config.enabled {
            return Ok(Self::default());
        }
        if !(1..=20).contains(&config.max_attempts) {
            return Err("`max_attempts` must be between 1 and 20".into());
        }
        if !(0.0..=60.0).contains(&config.initial_delay) || !config.initial_delay.is_finite() {
            return Err("`initial_delay` must be between 0 and 60 seconds".into());
        }
        if !(0.0..=60.0).contains(&config.max_delay) || config.max_delay < config.initial_delay {
            return Err("`max_delay` must be between `initial_delay` and 60 seconds".into());
        }
        if !(0.1..=10.0).contains(&config.backoff_multiplier) {
            return Err("`backoff_multiplier` must be between 0.1 and 10".into());
        }
        Ok(Self {
            max_attempts: config.max_attempts,
            initial_delay: Duration::from_secs_f64(config.initial_delay),
            max_delay: Duration::from_secs_f64(config.max_delay),
            backoff_multiplier: config.backoff_multiplier,
        })
    }

    /// The delay after attempt `attempt` (1-based) failed.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let factor = self
            .backoff_multiplier
            .powi(attempt.saturating_sub(1) as i32);
        let secs = self.initial_delay.as_secs_f64() * factor;
        Duration::from_secs_f64(secs.min(self.max_delay.as_secs_f64()))
    }

    /// Runs `attempt` until it succeeds, is rejected, or the attempts are used up.
    pub async fn run<F, Fut>(&self, mut attempt: F) -> Result<(), ModuleError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), ModuleError>>,
    {
        let mut n = 1;
        loop {
            match attempt().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_retryable() && n < self.max_attempts => {
                    tokio::time::sleep(self.delay_after(n)).await;
                    n += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn defaults_and_caps_are_the_originals() {
        assert_eq!(RetryPolicy::from_json(&json!({})).unwrap().max_attempts, 1);
        let on = RetryPolicy::from_json(&json!({"enabled": true})).unwrap();
        assert_eq!(on.max_attempts, 3);
        assert_eq!(on.delay_after(1), Duration::from_secs(1));
        assert_eq!(on.delay_after(2), Duration::from_secs(2));
        assert_eq!(on.delay_after(10), Duration::from_secs(60));
        for bad in [
            json!({"enabled": true, "max_attempts": 21}),
            json!({"enabled": true, "max_delay": 61}),
            json!({"enabled": true, "backoff_multiplier": 11}),
            json!({"enabled": true, "tries": 2}),
        ] {
            assert!(RetryPolicy::from_json(&bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn retries_only_retryable_errors() {
        let policy = RetryPolicy::from_json(
            &json!({"enabled": true, "max_attempts": 4, "initial_delay": 0}),
        )
        .unwrap();
        let calls = AtomicU32::new(0);
        let result = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ModuleError::retryable("down"))
            })
            .await;
        assert!(result.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 4);

        calls.store(0, Ordering::SeqCst);
        let result = policy
            .run(|| async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(ModuleError::rejected("bad"))
            })
            .await;
        assert_eq!(result, Err(ModuleError::Rejected("bad".into())));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
