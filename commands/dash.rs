//! `wcon dash`: a live terminal dashboard of a running `wcon serve` — channels, connectors,
//! in-flight and queued messages, dead letters (replay, purge) — fed by the admin API.
//!
//! This file owns the terminal (raw mode, alternate screen, mouse; restored on every way out:
//! quit, error, Ctrl-C, SIGTERM and panic), the polling and the mapping of admin JSON into
//! `wcon_tui` rows. What is drawn and how keys act lives in the `wcon-tui` crate.

use std::io::IsTerminal as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use wcon_tui::ratatui;
use wcon_tui::ratatui::crossterm::event::{self, DisableMouseCapture, EnableMouseCapture, Event};
use wcon_tui::ratatui::crossterm::execute;
use wcon_tui::{
    Action, App, ChannelDetail, ChannelRow, ConnectorRow, DeadLetterDetail, DeadLetterRow,
    DeadLetters, MessageRow, Overview, View,
};

use crate::Failure;
use crate::admin_client::{Admin, AdminArgs};

/// How many queued / in-flight messages and dead letters a screen lists.
const LIST_LIMIT: usize = 200;

/// A poll that takes longer counts as a lost server (the admin client's own timeout is 30 s,
/// too long to leave a hung server looking connected).
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// Watch a running `wcon serve` live: channels, connectors, messages and dead letters.
///
/// Needs an interactive terminal; scripts use `wcon channels list --json` instead.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    admin: AdminArgs,
    /// How often to poll the server: `1s`, `500ms`, `2m` or plain seconds.
    #[arg(long, default_value = "1s", value_parser = parse_interval, value_name = "DURATION")]
    interval: Duration,
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| c.is_ascii_alphabetic()) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 1s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("unknown unit `{unit}`; use ms, s or m")),
    };
    if !(0.1..=3600.0).contains(&seconds) {
        return Err("the interval must be between 100ms and 60m".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Runs `wcon dash`.
pub async fn run(args: Args, profile: Option<&str>) -> Result<ExitCode, Failure> {
    if args.admin.json {
        return Err(Failure::usage(anyhow!(
            "`wcon dash` draws a screen and has no --json; for JSON use \
             `wcon channels list --json` or `wcon channels stats CHANNEL --json`"
        )));
    }
    if !std::io::stdin().is_terminal() || !std::io::stdout().is_terminal() {
        return Err(Failure::usage(anyhow!(
            "`wcon dash` needs an interactive terminal (stdin and stdout must be a TTY); \
             in scripts use `wcon channels list --json` or `wcon dlq list CHANNEL --json`"
        )));
    }
    let profile = crate::profile::load(profile)?;
    let admin = Arc::new(Admin::new(&args.admin, &profile)?);
    let mut app = App::new(admin.server());
    let (guard, mut terminal) = TerminalGuard::enter().context("cannot set up the terminal")?;
    let result = event_loop(
        &mut app,
        admin,
        args.interval,
        &mut terminal,
        &guard.input_stop,
    )
    .await;
    drop(guard);
    result.map(|()| ExitCode::SUCCESS).map_err(Failure::from)
}

/// Raw mode, alternate screen and mouse capture for as long as it lives; it also stops the input
/// thread.
struct TerminalGuard {
    input_stop: Arc<AtomicBool>,
}

fn restore_terminal() {
    let _ = execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
}

impl TerminalGuard {
    fn enter() -> std::io::Result<(Self, ratatui::DefaultTerminal)> {
        // Runs after ratatui's own hook (which leaves raw mode and the alternate screen), so the
        // panic message lands on a usable terminal without mouse reporting.
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            previous(info);
        }));
        let terminal = ratatui::try_init()?;
        let guard = Self {
            input_stop: Arc::new(AtomicBool::new(false)),
        };
        execute!(std::io::stdout(), EnableMouseCapture)?;
        Ok((guard, terminal))
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        self.input_stop.store(true, Ordering::Relaxed);
        restore_terminal();
    }
}

/// Something a background task learnt.
enum Update {
    Overview(Instant, Overview),
    Detail(ChannelDetail),
    Dead(DeadLetters),
    DeadDetail(DeadLetterDetail),
    /// The server could not be polled.
    Lost(String),
    Notice(String),
    /// Polling the screen `view` failed; said only while that screen is still open (a replay
    /// can close a dead letter's screen while a poll of it is on its way and finds it gone).
    ViewFailed(View, String),
    /// A poll finished (after its other updates).
    PollDone,
    /// A replay or purge finished: poll again now.
    Changed,
}

async fn event_loop(
    app: &mut App,
    admin: Arc<Admin>,
    interval: Duration,
    screen: &mut ratatui::DefaultTerminal,
    input_stop: &Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let (input_tx, mut input) = mpsc::unbounded_channel();
    let stop = input_stop.clone();
    let reader = std::thread::spawn(move || read_input(&stop, &input_tx));
    let (updates_tx, mut updates) = mpsc::unbounded_channel();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut polling = false;
    let mut poll_again = false;
    let stop_signal = crate::stop_signal();
    tokio::pin!(stop_signal);
    let result = loop {
        if let Err(e) = screen.draw(|f| wcon_tui::draw(f, app)) {
            break Err(anyhow!(e).context("cannot draw on the terminal"));
        }
        let mut poll_now = false;
        tokio::select! {
            _ = ticker.tick() => poll_now = true,
            () = &mut stop_signal => break Ok(()),
            event = input.recv() => {
                let Some(event) = event else {
                    break Err(anyhow!("the terminal's input closed"));
                };
                match app.handle(&event) {
                    None => {}
                    Some(Action::Quit) => break Ok(()),
                    Some(Action::Refresh) => poll_now = true,
                    Some(Action::Replay { channel, ids }) => {
                        tokio::spawn(act(admin.clone(), Act::Replay, channel, ids, updates_tx.clone()));
                    }
                    Some(Action::Purge { channel, ids }) => {
                        tokio::spawn(act(admin.clone(), Act::Purge, channel, ids, updates_tx.clone()));
                    }
                }
            }
            Some(update) = updates.recv() => match update {
                Update::Overview(at, o) => app.apply_overview(at, o),
                Update::Detail(d) => app.apply_detail(d),
                Update::Dead(d) => app.apply_dead_letters(d),
                Update::DeadDetail(d) => app.apply_dead_letter(d),
                Update::Lost(e) => app.apply_error(e),
                Update::Notice(n) => app.notify(n),
                Update::ViewFailed(view, n) => {
                    if app.view() == &view {
                        app.notify(n);
                    }
                }
                Update::PollDone => {
                    polling = false;
                    poll_now = std::mem::take(&mut poll_again);
                }
                Update::Changed => poll_now = true,
            },
        }
        if poll_now {
            if polling {
                poll_again = true;
            } else {
                polling = true;
                tokio::spawn(poll(admin.clone(), app.view().clone(), updates_tx.clone()));
            }
        }
    };
    input_stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    result
}

/// Reads terminal events on a plain thread (crossterm's reads block) until told to stop.
fn read_input(stop: &AtomicBool, tx: &mpsc::UnboundedSender<Event>) {
    while !stop.load(Ordering::Relaxed) {
        match event::poll(Duration::from_millis(100)) {
            Ok(false) => {}
            Ok(true) => match event::read() {
                Ok(e) => {
                    if tx.send(e).is_err() {
                        return;
                    }
                }
                Err(_) => return,
            },
            Err(_) => return,
        }
    }
}

fn seg(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn failure_text(f: &Failure) -> String {
    format!("{:#}", f.error)
}

/// Polls what the overview and the open screen show, sending each part as it arrives.
async fn poll(admin: Arc<Admin>, view: View, tx: mpsc::UnboundedSender<Update>) {
    let send = |u| {
        let _ = tx.send(u);
    };
    let lost = match tokio::time::timeout(POLL_TIMEOUT, overview(&admin)).await {
        Ok(Ok(o)) => {
            send(Update::Overview(Instant::now(), o));
            None
        }
        Ok(Err(e)) => Some(failure_text(&e)),
        Err(_) => Some(format!(
            "the server did not answer within {}s",
            POLL_TIMEOUT.as_secs()
        )),
    };
    if let Some(error) = lost {
        send(Update::Lost(error));
        send(Update::PollDone);
        return;
    }
    let part = tokio::time::timeout(POLL_TIMEOUT, async {
        match &view {
            View::Overview => Ok(None),
            View::Channel(name) => channel_detail(&admin, name)
                .await
                .map(|d| Some(Update::Detail(d))),
            View::DeadLetters(name) => dead_letters(&admin, name)
                .await
                .map(|d| Some(Update::Dead(d))),
            View::DeadLetter { channel, id } => dead_letter(&admin, channel, id)
                .await
                .map(|d| Some(Update::DeadDetail(d))),
        }
    })
    .await;
    match part {
        Ok(Ok(Some(u))) => send(u),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => send(Update::ViewFailed(view, failure_text(&e))),
        Err(_) => send(Update::ViewFailed(
            view,
            format!(
                "the server did not answer within {}s",
                POLL_TIMEOUT.as_secs()
            ),
        )),
    }
    send(Update::PollDone);
}

#[derive(Debug, Clone, Copy)]
enum Act {
    Replay,
    Purge,
}

async fn act(
    admin: Arc<Admin>,
    what: Act,
    channel: String,
    ids: Vec<String>,
    tx: mpsc::UnboundedSender<Update>,
) {
    let body = json!({ "ids": ids });
    let path = format!("/channels/{}/dead-letters", seg(&channel));
    let (method, path, key, verb) = match what {
        Act::Replay => (Method::POST, format!("{path}/replay"), "replayed", "replay"),
        Act::Purge => (Method::DELETE, path, "purged", "purge"),
    };
    let notice = match admin.call(method, &path, Some(&body)).await {
        Ok(v) => format!(
            "{key} {} of {} dead letter(s) of {channel}",
            count(&v[key]),
            ids.len()
        ),
        Err(e) => format!(
            "{verb} failed, nothing changed on screen: {}",
            failure_text(&e)
        ),
    };
    let _ = tx.send(Update::Notice(notice));
    let _ = tx.send(Update::Changed);
}

/// A count from JSON; anything else (negative, text, missing) is 0.
fn count(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        .unwrap_or(0)
}

/// A one-line text from JSON, without control characters that would upset the terminal.
fn text(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    s.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

/// Multi-line text for the body view: tabs expanded, other control characters replaced.
fn body_lines(s: &str) -> String {
    s.replace("\r\n", "\n")
        .chars()
        .flat_map(|c| match c {
            '\n' => vec!['\n'],
            '\t' => vec![' '; 4],
            c if c.is_control() => vec!['\u{fffd}'],
            c => vec![c],
        })
        .collect()
}

fn age_of(v: &Value, now: DateTime<Utc>) -> Option<Duration> {
    let at = DateTime::parse_from_rfc3339(v.as_str()?).ok()?;
    (now - at.with_timezone(&Utc)).to_std().ok()
}

async fn overview(admin: &Admin) -> Result<Overview, Failure> {
    let v = admin.call(Method::GET, "/overview", None).await?;
    let mut o = overview_from(&v);
    // The overview has no ages; the oldest message of each list is the first one.
    let oldest = o.channels.iter().map(|c| async move {
        if c.queued == 0 && c.in_flight == 0 {
            return None;
        }
        let mut ages = Vec::new();
        for state in ["queued", "in_flight"] {
            let path = format!("/channels/{}/messages?state={state}&limit=1", seg(&c.name));
            if let Ok(v) = admin.call(Method::GET, &path, None).await {
                ages.extend(
                    v["messages"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|m| Duration::from_secs(count(&m["age_seconds"]))),
                );
            }
        }
        ages.into_iter().max()
    });
    let ages = futures_util::future::join_all(oldest).await;
    for (c, age) in o.channels.iter_mut().zip(ages) {
        c.oldest = age;
    }
    Ok(o)
}

/// `GET /overview` as rows (channels sorted by name, as the server's JSON object holds them).
fn overview_from(v: &Value) -> Overview {
    Overview {
        healthy: v["health"]["buffer"].as_bool().unwrap_or(false),
        backend: v["health"]["buffer_backend"]
            .as_str()
            .map(|s| text(&Value::from(s))),
        channels: v["channels"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, c)| channel_row(name, c))
            .collect(),
    }
}

/// One channel entry of `GET /overview`.
fn channel_row(name: &str, c: &Value) -> ChannelRow {
    let s = &c["stats"];
    ChannelRow {
        name: text(&Value::from(name)),
        queued: count(&s["messages_queued"]),
        in_flight: count(&s["messages_in_flight"]),
        delivered_total: count(&s["messages_delivered"]),
        expired_total: count(&s["messages_expired"]),
        dead_letters: count(&s["messages_dead_lettered"]),
        connectors: count(&c["connected_clients"]),
        oldest: None,
    }
}

fn connector_row(c: &Value, now: DateTime<Utc>) -> ConnectorRow {
    let id = match text(&c["connector_id"]) {
        id if id.is_empty() => text(&c["connection_id"]),
        id => id,
    };
    ConnectorRow {
        id,
        protocol: text(&c["protocol"]),
        address: text(&c["remote_ip"]),
        in_flight: count(&c["in_flight_count"]),
        acked: count(&c["messages_acked"]),
        heartbeat_age: age_of(&c["last_heartbeat_at"], now),
    }
}

fn message_row(m: &Value) -> MessageRow {
    MessageRow {
        id: text(&m["message_id"]),
        webhook: text(&m["webhook_id"]),
        age: Duration::from_secs(count(&m["age_seconds"])),
        attempts: count(&m["delivery_count"]),
    }
}

fn messages(v: &Value) -> Vec<MessageRow> {
    v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(message_row)
        .collect()
}

async fn channel_detail(admin: &Admin, name: &str) -> Result<ChannelDetail, Failure> {
    let base = format!("/channels/{}", seg(name));
    let detail = admin.call(Method::GET, &base, None).await?;
    let queued = admin
        .call(
            Method::GET,
            &format!("{base}/messages?state=queued&limit={LIST_LIMIT}"),
            None,
        )
        .await?;
    let in_flight = admin
        .call(
            Method::GET,
            &format!("{base}/messages?state=in_flight&limit={LIST_LIMIT}"),
            None,
        )
        .await?;
    let now = Utc::now();
    Ok(ChannelDetail {
        name: name.to_string(),
        connectors: detail["connected_clients"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| connector_row(c, now))
            .collect(),
        in_flight: messages(&in_flight),
        queued: messages(&queued),
    })
}

fn dead_row(m: &Value) -> DeadLetterRow {
    DeadLetterRow {
        id: text(&m["message_id"]),
        webhook: text(&m["webhook_id"]),
        reason: text(&m["reason"]),
        error: text(&m["error"]),
        dead_lettered_at: text(&m["dead_lettered_at"]),
        attempts: count(&m["delivery_count"]),
    }
}

async fn dead_letters(admin: &Admin, channel: &str) -> Result<DeadLetters, Failure> {
    let v = admin
        .call(
            Method::GET,
            &format!("/channels/{}/dead-letters?limit={LIST_LIMIT}", seg(channel)),
            None,
        )
        .await?;
    let rows: Vec<DeadLetterRow> = v["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .map(dead_row)
        .collect();
    Ok(DeadLetters {
        channel: channel.to_string(),
        total: count(&v["total"]).max(rows.len() as u64),
        rows,
    })
}

async fn dead_letter(admin: &Admin, channel: &str, id: &str) -> Result<DeadLetterDetail, Failure> {
    let v = admin
        .call(
            Method::GET,
            &format!("/channels/{}/dead-letters/{}", seg(channel), seg(id)),
            None,
        )
        .await?;
    Ok(dead_letter_from(channel, id, &v))
}

fn dead_letter_from(channel: &str, id: &str, v: &Value) -> DeadLetterDetail {
    let mut row = dead_row(v);
    // The screen is keyed by the id it asked for, whatever the answer says.
    row.id = id.to_string();
    DeadLetterDetail {
        channel: channel.to_string(),
        row,
        headers: v["headers"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, v)| (text(&Value::from(k.as_str())), text(v)))
            .collect(),
        body: body_lines(&body_text(v)),
    }
}

/// The body for reading: pretty JSON when the bytes are JSON, else the text.
fn body_text(v: &Value) -> String {
    let bytes = v["body_b64"]
        .as_str()
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
    if let Some(bytes) = bytes {
        return match serde_json::from_slice::<Value>(&bytes) {
            Ok(json) => serde_json::to_string_pretty(&json).expect("a JSON value serialises"),
            Err(_) => String::from_utf8_lossy(&bytes).into_owned(),
        };
    }
    match &v["payload"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).expect("a JSON value serialises"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_with_units_and_bounds() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_interval("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_interval("10ms").is_err());
        assert!(parse_interval("2h").is_err());
        assert!(parse_interval("fast").is_err());
        assert!(parse_interval("-1s").is_err());
    }

    #[test]
    fn an_overview_maps_to_rows_and_odd_values_become_zero() {
        let v = json!({
            "health": {"buffer": true, "buffer_backend": "embedded"},
            "channels": {
                "orders": {"connected_clients": 2, "stats": {
                    "messages_queued": 5, "messages_in_flight": 1, "messages_delivered": 40,
                    "messages_expired": 2, "messages_dead_lettered": 3}},
                "odd\u{1b}[31m": {"connected_clients": -4, "stats": {"messages_queued": "lots"}},
                "nostats": {}
            }
        });
        let o = overview_from(&v);
        assert!(o.healthy);
        assert_eq!(o.backend.as_deref(), Some("embedded"));
        let orders = o.channels.iter().find(|c| c.name == "orders").unwrap();
        assert_eq!(
            (
                orders.queued,
                orders.in_flight,
                orders.delivered_total,
                orders.expired_total
            ),
            (5, 1, 40, 2)
        );
        assert_eq!((orders.dead_letters, orders.connectors), (3, 2));
        let odd = o
            .channels
            .iter()
            .find(|c| c.name.starts_with("odd"))
            .unwrap();
        assert_eq!((odd.queued, odd.connectors), (0, 0));
        assert!(!odd.name.contains('\u{1b}'));
        assert_eq!(overview_from(&json!(null)), Overview::default());
        assert_eq!(overview_from(&json!({"channels": [1, 2]})).channels, vec![]);
    }

    #[test]
    fn a_dead_letter_body_is_pretty_json_or_text() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let v = json!({"message_id": "m1", "reason": "rejected", "error": "HTTP 400",
            "headers": {"content-type": "application/json"},
            "body_b64": b64(r#"{"a":[1,2]}"#)});
        let d = dead_letter_from("ch", "m1", &v);
        assert_eq!(d.body, "{\n  \"a\": [\n    1,\n    2\n  ]\n}");
        assert_eq!(
            d.headers,
            vec![("content-type".into(), "application/json".into())]
        );
        assert_eq!(d.row.reason, "rejected");
        let text = dead_letter_from("ch", "m1", &json!({"body_b64": b64("a=1\tb\u{1b}[2J")}));
        assert_eq!(text.body, "a=1    b\u{fffd}[2J");
        // An original server sends no body_b64, only the payload.
        let original = dead_letter_from("ch", "m1", &json!({"payload": {"x": 1}}));
        assert_eq!(original.body, "{\n  \"x\": 1\n}");
        assert_eq!(dead_letter_from("ch", "m1", &json!(42)).body, "");
    }

    #[test]
    fn connectors_fall_back_to_the_connection_id_and_heartbeats_become_ages() {
        let now: DateTime<Utc> = "2026-01-01T00:00:10Z".parse().unwrap();
        let c = connector_row(
            &json!({"connection_id": "conn_1", "protocol": "sse", "remote_ip": "127.0.0.1",
                "in_flight_count": 2, "messages_acked": 7,
                "last_heartbeat_at": "2026-01-01T00:00:04Z"}),
            now,
        );
        assert_eq!(c.id, "conn_1");
        assert_eq!((c.in_flight, c.acked), (2, 7));
        assert_eq!(c.heartbeat_age, Some(Duration::from_secs(6)));
        let future = connector_row(&json!({"last_heartbeat_at": "2027-01-01T00:00:00Z"}), now);
        assert_eq!(future.heartbeat_age, None);
    }
}
