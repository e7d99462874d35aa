//! Requests per webhook over the last minute, hour and day, for `GET /stats`.
//!
//! Owns the counting (every request to a configured webhook, whatever its answer) and the
//! answer's shape from the original's docs: `{<webhook_id>: {total_requests,
//! requests_per_minute, requests_per_hour, requests_per_day, last_request}}`. Counts live in
//! memory, as the original's default: a restart starts them again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Per-second slots for the last minute, per-minute slots for the last day.
const SECONDS: usize = 60;
const MINUTES: usize = 1440;

/// One webhook's counts: rings of (slot start, count).
#[derive(Debug)]
struct Window {
    total: u64,
    last: Option<DateTime<Utc>>,
    seconds: Box<[(i64, u32); SECONDS]>,
    minutes: Box<[(i64, u32); MINUTES]>,
}

impl Window {
    fn new() -> Self {
        Self {
            total: 0,
            last: None,
            seconds: Box::new([(-1, 0); SECONDS]),
            minutes: Box::new([(-1, 0); MINUTES]),
        }
    }

    fn record(&mut self, now: DateTime<Utc>) {
        self.total += 1;
        self.last = Some(now);
        let second = now.timestamp();
        let minute = second.div_euclid(60);
        bump(&mut self.seconds[..], second);
        bump(&mut self.minutes[..], minute);
    }

    fn view(&self, now: DateTime<Utc>) -> WebhookUsage {
        let second = now.timestamp();
        let minute = second.div_euclid(60);
        WebhookUsage {
            total_requests: self.total,
            requests_per_minute: sum_since(&self.seconds[..], second - 59),
            requests_per_hour: sum_since(&self.minutes[..], minute - 59),
            requests_per_day: sum_since(&self.minutes[..], minute - (MINUTES as i64 - 1)),
            last_request: self.last.map(crate::time::rfc3339),
        }
    }
}

fn bump(ring: &mut [(i64, u32)], slot: i64) {
    let cell = &mut ring[slot.rem_euclid(ring.len() as i64) as usize];
    if cell.0 != slot {
        *cell = (slot, 0);
    }
    cell.1 = cell.1.saturating_add(1);
}

fn sum_since(ring: &[(i64, u32)], first: i64) -> u64 {
    ring.iter()
        .filter(|(slot, _)| *slot >= first)
        .map(|(_, n)| u64::from(*n))
        .sum()
}

/// What `GET /stats` shows of one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookUsage {
    /// Requests since the receiver started.
    pub total_requests: u64,
    /// Requests in the last 60 seconds.
    pub requests_per_minute: u64,
    /// Requests in the last 60 minutes.
    pub requests_per_hour: u64,
    /// Requests in the last 24 hours.
    pub requests_per_day: u64,
    /// When the last one came (RFC 3339), `null` before the first.
    pub last_request: Option<String>,
}

/// Every webhook's counts.
#[derive(Debug, Default)]
pub struct Usage {
    webhooks: RwLock<HashMap<String, Arc<Mutex<Window>>>>,
}

impl Usage {
    /// Counts for `ids`, all zero (so `/stats` lists webhooks that got nothing yet).
    pub fn new<'a>(ids: impl IntoIterator<Item = &'a str>) -> Self {
        let usage = Self::default();
        {
            let mut map = usage.webhooks.write().expect("usage lock");
            for id in ids {
                map.insert(id.to_string(), Arc::new(Mutex::new(Window::new())));
            }
        }
        usage
    }

    /// Counts one request to webhook `id`.
    pub fn record(&self, id: &str) {
        self.record_at(id, Utc::now());
    }

    fn record_at(&self, id: &str, now: DateTime<Utc>) {
        let window = self.webhooks.read().expect("usage lock").get(id).cloned();
        let window = match window {
            Some(w) => w,
            None => self
                .webhooks
                .write()
                .expect("usage lock")
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(Mutex::new(Window::new())))
                .clone(),
        };
        window.lock().expect("usage lock").record(now);
    }

    /// Every webhook's counts now, by id.
    pub fn snapshot(&self) -> BTreeMap<String, WebhookUsage> {
        self.snapshot_at(Utc::now())
    }

    fn snapshot_at(&self, now: DateTime<Utc>) -> BTreeMap<String, WebhookUsage> {
        self.webhooks
            .read()
            .expect("usage lock")
            .iter()
            .map(|(id, w)| (id.clone(), w.lock().expect("usage lock").view(now)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn windows_slide() {
        let u = Usage::new(["a", "quiet"]);
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        u.record_at("a", t0 - Duration::hours(25)); // outside every window
        u.record_at("a", t0 - Duration::hours(3)); // in the day
        u.record_at("a", t0 - Duration::minutes(30)); // in the hour
        u.record_at("a", t0 - Duration::seconds(10)); // in the minute
        u.record_at("a", t0);
        let s = u.snapshot_at(t0);
        let a = &s["a"];
        assert_eq!(
            (
                a.total_requests,
                a.requests_per_minute,
                a.requests_per_hour,
                a.requests_per_day
            ),
            (5, 2, 3, 4)
        );
        assert_eq!(
            a.last_request.as_deref(),
            Some("2026-01-01T10:00:00.000000Z")
        );
        assert_eq!(s["quiet"].total_requests, 0);
        assert_eq!(s["quiet"].last_request, None);
        // A minute later the last minute is empty; the hour still counts.
        let later = u.snapshot_at(t0 + Duration::seconds(61));
        assert_eq!(later["a"].requests_per_minute, 0);
        assert_eq!(later["a"].requests_per_hour, 3);
    }
}
