//! Timestamps on the wire: RFC 3339 UTC with microseconds, as the original writes them.

use chrono::{DateTime, SecondsFormat, Utc};

/// Now, in UTC.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// Formats a timestamp the way every frame and API answer carries it.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The current time, formatted with [`rfc3339`].
pub fn now_rfc3339() -> String {
    rfc3339(now())
}
