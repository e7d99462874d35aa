//! The dashboard's state: which screen is open, what the last polls returned, the rate history
//! behind the sparklines, selections, marks, the filter and prompts.
//!
//! It changes only through `apply_*` (data from the server), `notify` and `handle` (keys and
//! mouse, see `keys.rs`); it never does I/O. `handle` answers with an [`Action`] for the driver.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::Instant;

use crate::model::{ChannelDetail, ChannelRow, DeadLetterDetail, DeadLetters, Overview};

/// How many rate samples a channel keeps (3 minutes at the default 1 s interval).
pub const HISTORY: usize = 180;

/// The screen that is open; each one but the overview remembers its channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum View {
    /// Every channel.
    Overview,
    /// One channel: connectors, messages, ages.
    Channel(String),
    /// The dead letters of a channel.
    DeadLetters(String),
    /// One dead letter with its headers and body.
    DeadLetter {
        /// The channel.
        channel: String,
        /// The message id.
        id: String,
    },
}

/// What the driver must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The view changed: fetch what it shows now instead of waiting for the next tick.
    Refresh,
    /// Replay these dead letters.
    Replay {
        /// The channel.
        channel: String,
        /// Message ids.
        ids: Vec<String>,
    },
    /// Purge these dead letters (the operator confirmed).
    Purge {
        /// The channel.
        channel: String,
        /// Message ids.
        ids: Vec<String>,
    },
    /// Leave the dashboard.
    Quit,
}

/// Whether the last poll reached the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Link {
    /// No answer yet.
    Connecting,
    /// The last poll succeeded.
    Connected,
    /// The last poll failed; the dashboard keeps retrying and shows the last data it had.
    Disconnected(String),
}

/// How a channel looks at a glance; the colour of its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    /// Nothing to worry about.
    Ok,
    /// More is queued at each of the last polls.
    Growing,
    /// Dead letters are waiting for an operator.
    DeadLetters,
    /// No connector is connected.
    NoConnector,
}

impl ChannelState {
    /// The word shown in the STATE column.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Growing => "growing",
            Self::DeadLetters => "dead letters",
            Self::NoConnector => "no connector",
        }
    }
}

/// A prompt that waits for `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Purge these dead letters of `channel`.
    Purge {
        /// The channel.
        channel: String,
        /// Message ids.
        ids: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    delivered: u64,
    failed: u64,
}

/// Rates of one channel, one entry per poll.
#[derive(Debug, Clone, Default)]
pub struct History {
    last: Option<Sample>,
    /// Delivered per second, oldest first.
    pub delivered: VecDeque<f64>,
    /// Failures (expired + newly dead-lettered) per second, oldest first.
    pub failed: VecDeque<f64>,
    /// Queued counts, oldest first.
    pub queued: VecDeque<u64>,
}

impl History {
    fn push(&mut self, at: Instant, row: &ChannelRow) {
        let failed = row.expired_total.saturating_add(row.dead_letters);
        if let Some(last) = self.last {
            let secs = at.saturating_duration_since(last.at).as_secs_f64();
            // A counter that went down (restart, replay, purge) counts as no progress.
            let per_second = |now: u64, before: u64| {
                if secs > 0.0 {
                    now.saturating_sub(before) as f64 / secs
                } else {
                    0.0
                }
            };
            push_capped(
                &mut self.delivered,
                per_second(row.delivered_total, last.delivered),
            );
            push_capped(&mut self.failed, per_second(failed, last.failed));
        }
        push_capped(&mut self.queued, row.queued);
        self.last = Some(Sample {
            at,
            delivered: row.delivered_total,
            failed,
        });
    }

    /// The latest delivered rate per second.
    pub fn delivered_now(&self) -> f64 {
        self.delivered.back().copied().unwrap_or(0.0)
    }

    /// The latest failure rate per second.
    pub fn failed_now(&self) -> f64 {
        self.failed.back().copied().unwrap_or(0.0)
    }

    /// Whether the queue grew at each of the last three polls.
    pub fn growing(&self) -> bool {
        let n = self.queued.len();
        n >= 3 && {
            let last: Vec<u64> = self.queued.iter().skip(n - 3).copied().collect();
            last[0] < last[1] && last[1] < last[2]
        }
    }
}

fn push_capped<T>(q: &mut VecDeque<T>, v: T) {
    if q.len() == HISTORY {
        q.pop_front();
    }
    q.push_back(v);
}

/// The whole dashboard state.
#[derive(Debug)]
pub struct App {
    /// The server's URL, for the header.
    pub server: String,
    /// Whether the last poll worked.
    pub link: Link,
    /// The last overview received.
    pub overview: Option<Overview>,
    /// Rates per channel name.
    pub history: HashMap<String, History>,
    /// The last channel detail received.
    pub detail: Option<ChannelDetail>,
    /// The last dead-letter list received.
    pub dead: Option<DeadLetters>,
    /// The last dead letter received.
    pub dead_detail: Option<DeadLetterDetail>,
    /// Open screens; the last one is shown. Never empty.
    pub stack: Vec<View>,
    /// Selected row of the overview (index into the filtered channels).
    pub selected: usize,
    /// First message row shown on the channel screen.
    pub detail_scroll: usize,
    /// Selected dead letter.
    pub dead_selected: usize,
    /// Marked dead letters (ids).
    pub marked: BTreeSet<String>,
    /// First body line shown on the dead-letter screen.
    pub body_scroll: usize,
    /// Channel filter (case-insensitive substring).
    pub filter: String,
    /// Whether keys go to the filter.
    pub editing_filter: bool,
    /// Whether the help overlay is open.
    pub help: bool,
    /// A prompt waiting for `y`.
    pub confirm: Option<Confirm>,
    /// The last thing that happened (replayed 3, purge failed, …).
    pub notice: Option<String>,
}

impl App {
    /// A dashboard of `server`, waiting for its first poll.
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            link: Link::Connecting,
            overview: None,
            history: HashMap::new(),
            detail: None,
            dead: None,
            dead_detail: None,
            stack: vec![View::Overview],
            selected: 0,
            detail_scroll: 0,
            dead_selected: 0,
            marked: BTreeSet::new(),
            body_scroll: 0,
            filter: String::new(),
            editing_filter: false,
            help: false,
            confirm: None,
            notice: None,
        }
    }

    /// The open screen.
    pub fn view(&self) -> &View {
        self.stack.last().expect("the view stack is never empty")
    }

    /// A new overview polled at `at`.
    pub fn apply_overview(&mut self, at: Instant, overview: Overview) {
        for row in &overview.channels {
            self.history
                .entry(row.name.clone())
                .or_default()
                .push(at, row);
        }
        self.history
            .retain(|name, _| overview.channels.iter().any(|c| &c.name == name));
        self.overview = Some(overview);
        self.link = Link::Connected;
        self.clamp();
    }

    /// A new channel detail.
    pub fn apply_detail(&mut self, detail: ChannelDetail) {
        self.detail = Some(detail);
        self.clamp();
    }

    /// A new dead-letter list.
    pub fn apply_dead_letters(&mut self, dead: DeadLetters) {
        self.marked
            .retain(|id| dead.rows.iter().any(|r| &r.id == id));
        self.dead = Some(dead);
        self.clamp();
    }

    /// One dead letter's headers and body.
    pub fn apply_dead_letter(&mut self, detail: DeadLetterDetail) {
        self.dead_detail = Some(detail);
        self.clamp();
    }

    /// A poll failed: keep the last data and say so.
    pub fn apply_error(&mut self, error: impl Into<String>) {
        self.link = Link::Disconnected(error.into());
    }

    /// Shows a one-line notice in the footer.
    pub fn notify(&mut self, notice: impl Into<String>) {
        self.notice = Some(notice.into());
    }

    /// The channels the filter lets through, in the server's order.
    pub fn visible_channels(&self) -> Vec<&ChannelRow> {
        let needle = self.filter.to_lowercase();
        self.overview
            .iter()
            .flat_map(|o| &o.channels)
            .filter(|c| needle.is_empty() || c.name.to_lowercase().contains(&needle))
            .collect()
    }

    /// The state (and colour) of a channel row.
    pub fn channel_state(&self, row: &ChannelRow) -> ChannelState {
        if row.connectors == 0 {
            ChannelState::NoConnector
        } else if row.dead_letters > 0 {
            ChannelState::DeadLetters
        } else if self.history.get(&row.name).is_some_and(History::growing) {
            ChannelState::Growing
        } else {
            ChannelState::Ok
        }
    }

    /// The detail of the channel on screen, if it has arrived.
    pub fn current_detail(&self, channel: &str) -> Option<&ChannelDetail> {
        self.detail.as_ref().filter(|d| d.name == channel)
    }

    /// The dead letters of the channel on screen, if they have arrived.
    pub fn current_dead(&self, channel: &str) -> Option<&DeadLetters> {
        self.dead.as_ref().filter(|d| d.channel == channel)
    }

    /// The dead letter on screen, if it has arrived.
    pub fn current_dead_detail(&self, channel: &str, id: &str) -> Option<&DeadLetterDetail> {
        self.dead_detail
            .as_ref()
            .filter(|d| d.channel == channel && d.row.id == id)
    }

    /// Keeps every selection inside what is shown.
    pub(crate) fn clamp(&mut self) {
        let channels = self.visible_channels().len();
        self.selected = self.selected.min(channels.saturating_sub(1));
        let dead = self.dead.as_ref().map_or(0, |d| d.rows.len());
        self.dead_selected = self.dead_selected.min(dead.saturating_sub(1));
        let messages = self
            .detail
            .as_ref()
            .map_or(0, |d| d.in_flight.len() + d.queued.len());
        self.detail_scroll = self.detail_scroll.min(messages.saturating_sub(1));
        let lines = self
            .dead_detail
            .as_ref()
            .map_or(0, |d| d.body.lines().count());
        self.body_scroll = self.body_scroll.min(lines.saturating_sub(1));
    }

    pub(crate) fn open(&mut self, view: View) -> Option<Action> {
        match &view {
            View::Channel(_) => self.detail_scroll = 0,
            View::DeadLetters(_) => {
                self.dead_selected = 0;
                self.marked.clear();
            }
            View::DeadLetter { .. } => self.body_scroll = 0,
            View::Overview => {}
        }
        self.stack.push(view);
        Some(Action::Refresh)
    }

    /// Goes back one screen; `Quit` on the overview.
    pub(crate) fn back(&mut self) -> Option<Action> {
        if self.stack.len() == 1 {
            return Some(Action::Quit);
        }
        if matches!(self.stack.pop(), Some(View::DeadLetters(_))) {
            self.marked.clear();
        }
        Some(Action::Refresh)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn overview(rows: &[(&str, u64, u64, u64)]) -> Overview {
        Overview {
            healthy: true,
            backend: Some("embedded".into()),
            channels: rows
                .iter()
                .map(|(name, queued, delivered, connectors)| ChannelRow {
                    name: name.to_string(),
                    queued: *queued,
                    delivered_total: *delivered,
                    connectors: *connectors,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn rates_come_from_counter_deltas_and_never_go_negative() {
        let mut app = App::new("s");
        let t = Instant::now();
        app.apply_overview(t, overview(&[("a", 0, 100, 1)]));
        assert_eq!(app.history["a"].delivered_now(), 0.0);
        app.apply_overview(t + Duration::from_secs(2), overview(&[("a", 0, 140, 1)]));
        assert_eq!(app.history["a"].delivered_now(), 20.0);
        // The server restarted with fresh counters.
        app.apply_overview(t + Duration::from_secs(3), overview(&[("a", 0, 5, 1)]));
        assert_eq!(app.history["a"].delivered_now(), 0.0);
        // Two polls at the same instant do not divide by zero.
        app.apply_overview(t + Duration::from_secs(3), overview(&[("a", 0, 50, 1)]));
        assert_eq!(app.history["a"].delivered_now(), 0.0);
    }

    #[test]
    fn history_is_capped_and_forgets_removed_channels() {
        let mut app = App::new("s");
        let t = Instant::now();
        for i in 0..(HISTORY as u64 + 20) {
            app.apply_overview(t + Duration::from_secs(i), overview(&[("a", 0, i, 1)]));
        }
        assert_eq!(app.history["a"].delivered.len(), HISTORY);
        app.apply_overview(t + Duration::from_secs(999), overview(&[("b", 0, 0, 1)]));
        assert!(!app.history.contains_key("a"));
    }

    #[test]
    fn states_rank_no_connector_then_dead_letters_then_growth() {
        let mut app = App::new("s");
        let t = Instant::now();
        for (i, q) in [1, 2, 3].iter().enumerate() {
            app.apply_overview(
                t + Duration::from_secs(i as u64),
                overview(&[("grow", *q, 0, 1), ("flat", 5, 0, 1), ("none", *q, 0, 0)]),
            );
        }
        let state = |app: &App, name: &str| {
            let row = app
                .visible_channels()
                .into_iter()
                .find(|c| c.name == name)
                .unwrap()
                .clone();
            app.channel_state(&row)
        };
        assert_eq!(state(&app, "grow"), ChannelState::Growing);
        assert_eq!(state(&app, "flat"), ChannelState::Ok);
        assert_eq!(state(&app, "none"), ChannelState::NoConnector);
        let mut row = ChannelRow {
            name: "grow".into(),
            connectors: 1,
            dead_letters: 2,
            ..Default::default()
        };
        assert_eq!(app.channel_state(&row), ChannelState::DeadLetters);
        row.connectors = 0;
        assert_eq!(app.channel_state(&row), ChannelState::NoConnector);
    }

    #[test]
    fn an_error_keeps_the_data_and_the_next_poll_reconnects() {
        let mut app = App::new("s");
        app.apply_overview(Instant::now(), overview(&[("a", 1, 0, 1)]));
        app.apply_error("connection refused");
        assert_eq!(app.link, Link::Disconnected("connection refused".into()));
        assert!(app.overview.is_some());
        app.apply_overview(Instant::now(), overview(&[("a", 1, 0, 1)]));
        assert_eq!(app.link, Link::Connected);
    }

    #[test]
    fn selections_shrink_with_the_data() {
        let mut app = App::new("s");
        app.apply_overview(Instant::now(), overview(&[("a", 0, 0, 1), ("b", 0, 0, 1)]));
        app.selected = 1;
        app.apply_overview(Instant::now(), overview(&[("a", 0, 0, 1)]));
        assert_eq!(app.selected, 0);
        app.apply_overview(Instant::now(), overview(&[]));
        assert_eq!(app.selected, 0);
    }
}
