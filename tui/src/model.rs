//! The view model: plain rows shaped for the screen, filled by `commands/dash.rs` from the admin
//! API. Nothing here knows HTTP or JSON; odd values from the server arrive already clamped.

use std::time::Duration;

/// One poll of the server's overview: health and one row per channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overview {
    /// Whether the server reports its buffer as healthy.
    pub healthy: bool,
    /// The buffer backend (`embedded`, `redis`, …) when the server names it.
    pub backend: Option<String>,
    /// Every channel, in the server's order.
    pub channels: Vec<ChannelRow>,
}

/// Counts of one channel at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRow {
    /// The channel name.
    pub name: String,
    /// Messages waiting for a connector.
    pub queued: u64,
    /// Messages sent to a connector and not yet acked.
    pub in_flight: u64,
    /// Messages acked since the channel was created (a counter; rates come from its deltas).
    pub delivered_total: u64,
    /// Messages expired since the channel was created (a counter).
    pub expired_total: u64,
    /// Dead letters held now.
    pub dead_letters: u64,
    /// Connected connectors.
    pub connectors: u64,
    /// Age of the oldest queued or in-flight message, when there is one.
    pub oldest: Option<Duration>,
}

/// What the channel detail screen shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelDetail {
    /// The channel name.
    pub name: String,
    /// Connected connectors, oldest connection first.
    pub connectors: Vec<ConnectorRow>,
    /// Messages in flight, oldest first.
    pub in_flight: Vec<MessageRow>,
    /// Queued messages, oldest first.
    pub queued: Vec<MessageRow>,
}

/// One connection of a connector.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectorRow {
    /// The connector's id (or the connection id when the connector sent none).
    pub id: String,
    /// `websocket`, `sse` or `long_poll`.
    pub protocol: String,
    /// The connector's address as the server saw it.
    pub address: String,
    /// Messages sent on this connection and not yet answered.
    pub in_flight: u64,
    /// Messages acked on this connection.
    pub acked: u64,
    /// Time since its last heartbeat, when known.
    pub heartbeat_age: Option<Duration>,
}

/// One queued or in-flight message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageRow {
    /// The message id.
    pub id: String,
    /// The webhook it came in on.
    pub webhook: String,
    /// Time since the server received it.
    pub age: Duration,
    /// Delivery attempts so far.
    pub attempts: u64,
}

/// One dead letter in the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterRow {
    /// The message id.
    pub id: String,
    /// The webhook it came in on.
    pub webhook: String,
    /// Why it was dead-lettered (`rejected`, `max_attempts`, …).
    pub reason: String,
    /// The last delivery error, if any.
    pub error: String,
    /// When it was dead-lettered (RFC 3339, as the server sent it).
    pub dead_lettered_at: String,
    /// Delivery attempts before it died.
    pub attempts: u64,
}

/// The dead letters of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetters {
    /// The channel name.
    pub channel: String,
    /// The dead letters held, as many as the server listed, oldest first.
    pub rows: Vec<DeadLetterRow>,
    /// How many the channel holds in all (may exceed `rows.len()`).
    pub total: u64,
}

/// One dead letter with its headers and body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterDetail {
    /// The channel name.
    pub channel: String,
    /// The list row (id, webhook, reason, …).
    pub row: DeadLetterRow,
    /// Request headers, in the server's order.
    pub headers: Vec<(String, String)>,
    /// The body for reading: pretty JSON when it is JSON, else the text (lossy UTF-8).
    pub body: String,
}

/// Compact, fixed-width friendly count: `999`, `12.3k`, `4.56M`, `18.4E`.
pub fn count(n: u64) -> String {
    if n < 10_000 {
        return n.to_string();
    }
    let units = ["k", "M", "G", "T", "P", "E"];
    let mut value = n as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.5 && unit + 1 < units.len() {
        value /= 1000.0;
        unit += 1;
    }
    let digits = if value < 9.995 {
        2
    } else if value < 99.95 {
        1
    } else {
        0
    };
    format!("{value:.digits$}{}", units[unit])
}

/// A rate per second, short: `0`, `0.4`, `12`, `3.4k`.
pub fn rate(per_second: f64) -> String {
    if !per_second.is_finite() || per_second <= 0.0 {
        return "0".into();
    }
    if per_second < 10.0 {
        let s = format!("{per_second:.1}");
        return s.strip_suffix(".0").map(str::to_string).unwrap_or(s);
    }
    count(per_second.round() as u64)
}

/// A duration, at most 7 columns: `4s`, `3m12s`, `2h05m`, `3d04h`, `1234d`, `>99999d`.
pub fn age(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        86_400..8_640_000 => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
        8_640_000..8_640_000_000 => format!("{}d", s / 86_400),
        _ => ">99999d".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_stay_short_up_to_u64_max() {
        assert_eq!(count(0), "0");
        assert_eq!(count(9_999), "9999");
        assert_eq!(count(12_345), "12.3k");
        assert_eq!(count(999_999), "1.00M");
        assert_eq!(count(4_560_000), "4.56M");
        assert_eq!(count(u64::MAX), "18.4E");
        assert!(count(u64::MAX).len() <= 6);
    }

    #[test]
    fn rates_and_ages_read_well() {
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(f64::NAN), "0");
        assert_eq!(rate(-3.0), "0");
        assert_eq!(rate(0.44), "0.4");
        assert_eq!(rate(2.0), "2");
        assert_eq!(rate(12.4), "12");
        assert_eq!(age(Duration::from_secs(4)), "4s");
        assert_eq!(age(Duration::from_secs(192)), "3m12s");
        assert_eq!(age(Duration::from_secs(7500)), "2h05m");
        assert_eq!(age(Duration::from_secs(3 * 86_400 + 4 * 3600)), "3d04h");
        assert_eq!(age(Duration::from_secs(86_400 * 1234)), "1234d");
        assert_eq!(age(Duration::from_secs(u64::MAX)), ">99999d");
    }
}
