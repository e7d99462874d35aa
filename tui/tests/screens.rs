//! Snapshots of every screen, rendered from fixed view-model data into a `TestBackend`: empty,
//! huge numbers, long names, narrow (80x24) and wide terminals, overlays and a lost server.

use std::time::{Duration, Instant};

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use wcon_tui::{
    App, ChannelDetail, ChannelRow, ConnectorRow, DeadLetterDetail, DeadLetterRow, DeadLetters,
    MessageRow, Overview, View,
};

fn render(app: &App, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| wcon_tui::draw(f, app)).unwrap();
    terminal.backend().to_string()
}

fn key(app: &mut App, code: KeyCode) {
    app.handle(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)));
}

fn channel(name: &str, queued: u64, connectors: u64, dead: u64, delivered: u64) -> ChannelRow {
    ChannelRow {
        name: name.into(),
        queued,
        in_flight: queued.min(3),
        delivered_total: delivered,
        expired_total: 0,
        dead_letters: dead,
        connectors,
        oldest: (queued > 0).then(|| Duration::from_secs(queued * 7)),
    }
}

/// An app that polled three times, one second apart: rates, trends and a growing backlog.
fn busy() -> App {
    let mut app = App::new("https://hooks.example.com");
    let start = Instant::now();
    for (i, (delivered, queued)) in [(100, 2), (140, 5), (200, 9), (230, 14)].iter().enumerate() {
        app.apply_overview(
            start + Duration::from_secs(i as u64),
            Overview {
                healthy: true,
                backend: Some("embedded".into()),
                channels: vec![
                    channel("payments", 0, 2, 0, *delivered),
                    channel("orders", *queued, 1, 0, 50),
                    channel("github-events", 4, 0, 0, 0),
                    channel("stripe", 1, 1, 3 + i as u64, 9),
                ],
            },
        );
    }
    app
}

fn detail() -> ChannelDetail {
    ChannelDetail {
        name: "orders".into(),
        connectors: vec![
            ConnectorRow {
                id: "laptop-anna".into(),
                protocol: "websocket".into(),
                address: "203.0.113.7".into(),
                in_flight: 2,
                acked: 1234,
                heartbeat_age: Some(Duration::from_secs(4)),
            },
            ConnectorRow {
                id: "ci-runner".into(),
                protocol: "sse".into(),
                address: "2001:db8::1".into(),
                in_flight: 1,
                acked: 0,
                heartbeat_age: None,
            },
        ],
        in_flight: vec![
            MessageRow {
                id: "msg_01HZX3".into(),
                webhook: "shop".into(),
                age: Duration::from_secs(2),
                attempts: 1,
            },
            MessageRow {
                id: "msg_01HZX4".into(),
                webhook: "shop".into(),
                age: Duration::from_millis(300),
                attempts: 3,
            },
        ],
        queued: (0..5)
            .map(|i| MessageRow {
                id: format!("msg_02AB{i}"),
                webhook: "shop".into(),
                age: Duration::from_secs(40 + i * 200),
                attempts: 0,
            })
            .collect(),
    }
}

fn dead_letters() -> DeadLetters {
    DeadLetters {
        channel: "stripe".into(),
        total: 3,
        rows: vec![
            DeadLetterRow {
                id: "msg_dead_1".into(),
                webhook: "stripe-live".into(),
                reason: "rejected".into(),
                error: "HTTP 400 Bad Request".into(),
                dead_lettered_at: "2026-11-29T08:00:00Z".into(),
                attempts: 1,
            },
            DeadLetterRow {
                id: "msg_dead_2".into(),
                webhook: "stripe-live".into(),
                reason: "max_attempts".into(),
                error: "connection refused (os error 111)".into(),
                dead_lettered_at: "2026-11-29T08:01:00Z".into(),
                attempts: 5,
            },
            DeadLetterRow {
                id: "msg_dead_3".into(),
                webhook: "stripe-live".into(),
                reason: "expired".into(),
                error: String::new(),
                dead_lettered_at: "2026-11-29T08:02:00Z".into(),
                attempts: 0,
            },
        ],
    }
}

fn dead_letter() -> DeadLetterDetail {
    let body = serde_like_pretty(40);
    DeadLetterDetail {
        channel: "stripe".into(),
        row: dead_letters().rows[0].clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            (
                "stripe-signature".into(),
                "t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd"
                    .into(),
            ),
            ("user-agent".into(), "Stripe/1.0".into()),
        ],
        body,
    }
}

/// A long pretty JSON body, to scroll.
fn serde_like_pretty(items: usize) -> String {
    let mut s = String::from("{\n  \"id\": \"evt_1\",\n  \"items\": [\n");
    for i in 0..items {
        s.push_str(&format!(
            "    {{ \"n\": {i} }}{}\n",
            if i + 1 < items { "," } else { "" }
        ));
    }
    s.push_str("  ]\n}");
    s
}

#[test]
fn overview_busy_100x30() {
    insta::assert_snapshot!(render(&busy(), 100, 30));
}

#[test]
fn overview_narrow_80x24() {
    insta::assert_snapshot!(render(&busy(), 80, 24));
}

#[test]
fn overview_wide_160x30() {
    insta::assert_snapshot!(render(&busy(), 160, 30));
}

#[test]
fn overview_connecting_and_empty() {
    let mut app = App::new("http://127.0.0.1:8000");
    insta::assert_snapshot!("overview_connecting", render(&app, 80, 24));
    app.apply_overview(
        Instant::now(),
        Overview {
            healthy: true,
            backend: None,
            channels: vec![],
        },
    );
    insta::assert_snapshot!("overview_empty", render(&app, 80, 24));
}

#[test]
fn overview_huge_numbers_and_long_names() {
    let mut app = App::new("https://a-very-long-host-name.relay.internal.example.com:8443/base");
    let huge = ChannelRow {
        name: "a-channel-name-that-goes-on-and-on-well-past-any-sensible-column-width".into(),
        queued: u64::MAX,
        in_flight: u64::MAX,
        delivered_total: u64::MAX,
        expired_total: u64::MAX,
        dead_letters: u64::MAX,
        connectors: u64::MAX,
        oldest: Some(Duration::from_secs(u64::MAX)),
    };
    let start = Instant::now();
    let mut low = huge.clone();
    low.name = "short".into();
    low.delivered_total = 0;
    let mut short = huge.clone();
    short.name = "short".into();
    app.apply_overview(
        start,
        Overview {
            healthy: false,
            backend: Some("redis".into()),
            channels: vec![low, huge.clone()],
        },
    );
    app.apply_overview(
        start + Duration::from_millis(1),
        Overview {
            healthy: false,
            backend: Some("redis".into()),
            channels: vec![short, huge],
        },
    );
    insta::assert_snapshot!("overview_huge_100x30", render(&app, 100, 30));
    insta::assert_snapshot!("overview_huge_80x24", render(&app, 80, 24));
}

#[test]
fn overview_disconnected_keeps_the_last_data() {
    let mut app = busy();
    app.apply_error("cannot reach the server at `http://127.0.0.1:8000`: connection refused");
    insta::assert_snapshot!(render(&app, 100, 30));
}

#[test]
fn overview_filter_and_help() {
    let mut app = busy();
    key(&mut app, KeyCode::Char('/'));
    for c in "ord".chars() {
        key(&mut app, KeyCode::Char(c));
    }
    insta::assert_snapshot!("overview_filter_editing", render(&app, 100, 30));
    key(&mut app, KeyCode::Enter);
    key(&mut app, KeyCode::Char('?'));
    insta::assert_snapshot!("overview_help", render(&app, 100, 30));
}

#[test]
fn channel_detail_screens() {
    let mut app = busy();
    key(&mut app, KeyCode::Down);
    key(&mut app, KeyCode::Enter);
    assert_eq!(app.view(), &View::Channel("orders".into()));
    insta::assert_snapshot!("channel_loading", render(&app, 100, 30));
    app.apply_detail(detail());
    insta::assert_snapshot!("channel_100x30", render(&app, 100, 30));
    insta::assert_snapshot!("channel_80x24", render(&app, 80, 24));
    insta::assert_snapshot!("channel_160x40", render(&app, 160, 40));
    app.apply_detail(ChannelDetail {
        name: "orders".into(),
        ..Default::default()
    });
    insta::assert_snapshot!("channel_empty", render(&app, 100, 30));
}

#[test]
fn dead_letter_screens() {
    let mut app = busy();
    for _ in 0..3 {
        key(&mut app, KeyCode::Down);
    }
    key(&mut app, KeyCode::Char('d'));
    assert_eq!(app.view(), &View::DeadLetters("stripe".into()));
    app.apply_dead_letters(dead_letters());
    key(&mut app, KeyCode::Char(' '));
    insta::assert_snapshot!("dead_letters_100x30", render(&app, 100, 30));
    insta::assert_snapshot!("dead_letters_80x24", render(&app, 80, 24));
    key(&mut app, KeyCode::Char('x'));
    insta::assert_snapshot!("dead_letters_confirm", render(&app, 100, 30));
    key(&mut app, KeyCode::Char('n'));
    key(&mut app, KeyCode::Up);
    key(&mut app, KeyCode::Enter);
    app.apply_dead_letter(dead_letter());
    insta::assert_snapshot!("dead_letter_100x30", render(&app, 100, 30));
    for _ in 0..12 {
        key(&mut app, KeyCode::Down);
    }
    insta::assert_snapshot!("dead_letter_scrolled_80x24", render(&app, 80, 24));
}

#[test]
fn dead_letters_empty() {
    let mut app = busy();
    key(&mut app, KeyCode::Char('d'));
    app.apply_dead_letters(DeadLetters {
        channel: "payments".into(),
        rows: vec![],
        total: 0,
    });
    insta::assert_snapshot!(render(&app, 80, 24));
}

/// Draws without reading the buffer back (the backend cannot print a 0-wide buffer).
fn draw_only(app: &App, width: u16, height: u16) {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| wcon_tui::draw(f, app)).unwrap();
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut app = busy();
    for (w, h) in [(1, 1), (10, 3), (20, 5), (0, 0)] {
        draw_only(&app, w, h);
    }
    key(&mut app, KeyCode::Enter);
    app.apply_detail(detail());
    draw_only(&app, 12, 4);
    key(&mut app, KeyCode::Char('?'));
    draw_only(&app, 5, 5);
    key(&mut app, KeyCode::Char('q'));
    key(&mut app, KeyCode::Char('d'));
    app.apply_dead_letters(dead_letters());
    key(&mut app, KeyCode::Char('x'));
    draw_only(&app, 3, 2);
}
