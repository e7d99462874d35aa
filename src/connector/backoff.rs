//! Capped exponential backoff with jitter, for reconnects and delivery retries.

use std::time::Duration;

/// Delays that grow by `multiplier` from `initial` up to `max`, each stretched by up to 30 %
/// at random so that many connectors do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    next: Duration,
}

impl Backoff {
    /// A backoff starting at `initial`.
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            max,
            multiplier: multiplier.max(1.0),
            next: initial,
        }
    }

    /// The next delay (with jitter), and grows the one after.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.next.min(self.max);
        self.next = self.next.mul_f64(self.multiplier).min(self.max);
        let jitter = base.mul_f64(rand::random::<f64>() * 0.3);
        (base + jitter).min(self.max.max(base))
    }

    /// The largest delay, used after an authentication failure.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// Back to the initial delay.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5), 2.0);
        let d: Vec<Duration> = (0..5).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_secs(1) && d[0] <= Duration::from_millis(1300));
        assert!(d[1] >= Duration::from_secs(2) && d[1] <= Duration::from_millis(2600));
        assert!(d[4] <= Duration::from_secs(5), "capped: {:?}", d[4]);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(1300));
    }
}
