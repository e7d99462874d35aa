//! Rendering: a pure function of [`App`] onto a ratatui frame (header, screen, footer, overlays).
//!
//! Every number goes through `model::count`/`rate`/`age` so huge values keep their columns, and
//! every name is cut to its column with `…`. Colour is never the only signal: the STATE column says
//! in words what the row colour means.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Cell, Clear, Paragraph, Row, Table, TableState, Wrap};
use unicode_width::UnicodeWidthChar as _;

use crate::app::{App, ChannelState, Confirm, History, Link, View};
use crate::keys::{footer_keys, plural};
use crate::model::{self, ChannelRow, MessageRow, age, count, rate};

const SPARK: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// Age buckets of the histogram: upper bound in seconds and label.
const BUCKETS: [(u64, &str); 6] = [
    (1, "< 1s"),
    (5, "1-5s"),
    (30, "5-30s"),
    (120, "30s-2m"),
    (600, "2-10m"),
    (u64::MAX, "> 10m"),
];

/// Draws the whole dashboard.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let footer_lines = if app.editing_filter || app.notice.is_some() {
        2
    } else {
        1
    };
    let [header, body, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Fill(1),
        Constraint::Length(footer_lines),
    ])
    .areas(area);
    draw_header(frame, app, header);
    match app.view().clone() {
        View::Overview => draw_overview(frame, app, body),
        View::Channel(name) => draw_channel(frame, app, &name, body),
        View::DeadLetters(channel) => draw_dead_letters(frame, app, &channel, body),
        View::DeadLetter { channel, id } => draw_dead_letter(frame, app, &channel, &id, body),
    }
    draw_footer(frame, app, footer);
    if let Some(Confirm::Purge { channel, ids }) = &app.confirm {
        draw_confirm(frame, channel, ids.len(), area);
    }
    if app.help {
        draw_help(frame, area);
    }
}

/// Cuts `s` to `width` columns, ending with `…` when it had to cut.
fn fit(s: &str, width: usize) -> String {
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= width {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        used += w;
        out.push(c);
    }
    if width > 0 {
        out.push('…');
    }
    out
}

fn stale(app: &App) -> bool {
    matches!(app.link, Link::Disconnected(_))
}

fn draw_header(frame: &mut Frame, app: &App, area: Rect) {
    let mut spans = vec![Span::from(" wcon dash ").bold().reversed(), Span::from(" ")];
    match &app.link {
        Link::Connecting => spans.push(Span::from("connecting…").yellow()),
        Link::Connected => spans.push(Span::from("● connected").green()),
        Link::Disconnected(error) => {
            spans.push(Span::from("disconnected, retrying").red().bold());
            spans.push(Span::from(format!(" — {error}")).red());
        }
    }
    if let Some(o) = &app.overview {
        let backend = o.backend.as_deref().unwrap_or("unknown");
        spans.push(Span::from(format!("  buffer {backend} ")));
        spans.push(if o.healthy {
            Span::from("healthy").green()
        } else {
            Span::from("UNHEALTHY").red().bold()
        });
    }
    spans.push(Span::from(format!("  {}", app.server)).dark_gray());
    frame.render_widget(Line::from(spans), area);
}

fn draw_footer(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines = Vec::new();
    if app.editing_filter {
        lines.push(Line::from(vec![
            Span::from(" filter: ").bold(),
            Span::from(format!("{}▏", app.filter)),
            Span::from("  Enter keep · Esc clear").dark_gray(),
        ]));
    } else if let Some(notice) = &app.notice {
        lines.push(Line::from(format!(" {notice}")).cyan());
    }
    let mut keys = vec![Span::from(" ")];
    for (key, what) in footer_keys(app.view()) {
        keys.push(Span::from(*key).bold().reversed());
        keys.push(Span::from(format!(" {what}  ")));
    }
    lines.push(Line::from(keys));
    frame.render_widget(Paragraph::new(lines), area);
}

fn state_style(state: ChannelState) -> Style {
    match state {
        ChannelState::Ok => Style::default(),
        ChannelState::Growing => Style::default().fg(Color::Yellow),
        ChannelState::DeadLetters => Style::default().fg(Color::Magenta),
        ChannelState::NoConnector => Style::default().fg(Color::Red),
    }
}

/// The last `width` values as block characters, scaled to their maximum.
fn sparkline(values: impl DoubleEndedIterator<Item = f64>, width: usize) -> String {
    let mut last: Vec<f64> = values.rev().take(width).collect();
    last.reverse();
    let max = last
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let mut s: String = last
        .iter()
        .map(|v| {
            if max <= 0.0 || !v.is_finite() || *v <= 0.0 {
                SPARK[0]
            } else {
                let level = ((v / max) * 8.0).ceil().clamp(1.0, 8.0) as usize;
                SPARK[level]
            }
        })
        .collect();
    while s.chars().count() < width {
        s.insert(0, ' ');
    }
    s
}

fn draw_overview(frame: &mut Frame, app: &App, area: Rect) {
    let title = if app.filter.is_empty() {
        " channels ".to_string()
    } else {
        format!(" channels matching /{} ", app.filter)
    };
    let block = Block::bordered().title(title);
    let Some(overview) = &app.overview else {
        let text = match &app.link {
            Link::Disconnected(e) => format!("disconnected, retrying: {e}"),
            _ => "connecting to the server…".into(),
        };
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: true }).block(block),
            area,
        );
        return;
    };
    let rows = app.visible_channels();
    if rows.is_empty() {
        let text = if overview.channels.is_empty() {
            "no channels are configured on this server".to_string()
        } else {
            format!("no channel matches /{}", app.filter)
        };
        frame.render_widget(Paragraph::new(text).block(block), area);
        return;
    }
    let inner = area.width.saturating_sub(2 + 2) as usize;
    // Fixed columns: STATE QUEUED INFLIGHT DELIV/S FAIL/S DEAD CONN OLDEST, one space between.
    let fixed = [12usize, 7, 9, 7, 6, 6, 5, 7];
    // What the name and the trend share; the trend only shows when both get a useful width.
    let free = inner.saturating_sub(fixed.iter().sum::<usize>() + fixed.len() + 1);
    let trend = if free >= 24 {
        (free - 14).min(free / 2).min(40)
    } else {
        0
    };
    let name_w = free.saturating_sub(trend).max(8);
    let empty = History::default();
    let dim = stale(app);
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|c| {
            let h = app.history.get(&c.name).unwrap_or(&empty);
            let state = app.channel_state(c);
            let mut cells = vec![
                Cell::from(fit(&c.name, name_w)),
                Cell::from(state.label()),
                Cell::from(count(c.queued)),
                Cell::from(count(c.in_flight)),
                Cell::from(rate(h.delivered_now())),
            ];
            if trend > 0 {
                cells.push(Cell::from(sparkline(h.delivered.iter().copied(), trend)).green());
            }
            cells.extend([
                Cell::from(rate(h.failed_now())),
                Cell::from(count(c.dead_letters)),
                Cell::from(count(c.connectors)),
                Cell::from(c.oldest.map(age).unwrap_or_else(|| "-".into())),
            ]);
            let style = if dim {
                Style::default().fg(Color::DarkGray)
            } else {
                state_style(state)
            };
            Row::new(cells).style(style)
        })
        .collect();
    let mut header = vec!["CHANNEL", "STATE", "QUEUED", "IN FLIGHT", "DELIV/S"];
    let mut widths = vec![name_w, 12, 7, 9, 7];
    if trend > 0 {
        header.push("TREND");
        widths.push(trend);
    }
    header.extend(["FAIL/S", "DEAD", "CONN", "OLDEST"]);
    widths.extend([6, 6, 5, 7]);
    let sum = |f: fn(&ChannelRow) -> u64| rows.iter().fold(0u64, |a, c| a.saturating_add(f(c)));
    let rate_sum = |f: fn(&History) -> f64| {
        rows.iter()
            .map(|c| app.history.get(&c.name).map_or(0.0, f))
            .sum::<f64>()
    };
    let oldest = rows.iter().filter_map(|c| c.oldest).max();
    let mut totals = vec![
        fit(&format!("TOTAL ({})", rows.len()), name_w),
        String::new(),
        count(sum(|c| c.queued)),
        count(sum(|c| c.in_flight)),
        rate(rate_sum(History::delivered_now)),
    ];
    if trend > 0 {
        totals.push(String::new());
    }
    totals.extend([
        rate(rate_sum(History::failed_now)),
        count(sum(|c| c.dead_letters)),
        count(sum(|c| c.connectors)),
        oldest.map(age).unwrap_or_else(|| "-".into()),
    ]);
    let table = Table::new(
        table_rows,
        widths.iter().map(|w| Constraint::Length(*w as u16)),
    )
    .header(Row::new(header).bold().underlined())
    .footer(Row::new(totals).bold())
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("▶ ")
    .block(block);
    let mut state = TableState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_channel(frame: &mut Frame, app: &App, name: &str, area: Rect) {
    let row = app
        .overview
        .iter()
        .flat_map(|o| &o.channels)
        .find(|c| c.name == name);
    let summary = match row {
        Some(c) => {
            let h = app.history.get(name);
            format!(
                "queued {} · in flight {} · delivered {} · {}/s · failures {}/s · dead {} · connectors {}",
                count(c.queued),
                count(c.in_flight),
                count(c.delivered_total),
                rate(h.map_or(0.0, History::delivered_now)),
                rate(h.map_or(0.0, History::failed_now)),
                count(c.dead_letters),
                count(c.connectors),
            )
        }
        None => "this channel is not in the last overview".into(),
    };
    let [top, connectors_area, rest] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(
            app.current_detail(name)
                .map_or(4, |d| (d.connectors.len().max(1) + 3).min(9) as u16),
        ),
        Constraint::Fill(1),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(summary)
            .block(Block::bordered().title(format!(" channel {} ", fit(name, 60)))),
        top,
    );
    let Some(detail) = app.current_detail(name) else {
        frame.render_widget(
            Paragraph::new("loading…").block(Block::bordered()),
            connectors_area.union(rest),
        );
        return;
    };
    let block = Block::bordered().title(format!(" connectors ({}) ", detail.connectors.len()));
    if detail.connectors.is_empty() {
        frame.render_widget(
            Paragraph::new("no connector is connected")
                .red()
                .block(block),
            connectors_area,
        );
    } else {
        let w = connectors_area.width.saturating_sub(2) as usize;
        let id_w = w.saturating_sub(10 + 22 + 9 + 8 + 10 + 5).clamp(8, 40);
        let rows = detail.connectors.iter().map(|c| {
            Row::new([
                fit(&c.id, id_w),
                fit(&c.protocol, 10),
                fit(&c.address, 22),
                count(c.in_flight),
                count(c.acked),
                c.heartbeat_age
                    .map(|a| format!("{} ago", age(a)))
                    .unwrap_or_else(|| "-".into()),
            ])
        });
        let table = Table::new(
            rows,
            [
                Constraint::Length(id_w as u16),
                Constraint::Length(10),
                Constraint::Length(22),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(10),
            ],
        )
        .header(
            Row::new([
                "CONNECTOR",
                "PROTOCOL",
                "ADDRESS",
                "IN FLIGHT",
                "ACKED",
                "HEARTBEAT",
            ])
            .bold()
            .underlined(),
        )
        .block(block);
        frame.render_widget(table, connectors_area);
    }
    let (messages_area, histogram_area) = if rest.width >= 100 {
        let [a, b] = Layout::horizontal([Constraint::Fill(1), Constraint::Length(40)]).areas(rest);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([Constraint::Fill(1), Constraint::Length(8)]).areas(rest);
        (a, b)
    };
    draw_messages(frame, app, detail, messages_area);
    draw_histogram(frame, detail, histogram_area);
}

fn draw_messages(frame: &mut Frame, app: &App, detail: &model::ChannelDetail, area: Rect) {
    let block = Block::bordered().title(format!(
        " messages: {} in flight, {} queued (oldest first) ",
        detail.in_flight.len(),
        detail.queued.len()
    ));
    let all: Vec<(&str, &MessageRow)> = detail
        .in_flight
        .iter()
        .map(|m| ("in flight", m))
        .chain(detail.queued.iter().map(|m| ("queued", m)))
        .collect();
    if all.is_empty() {
        frame.render_widget(
            Paragraph::new("nothing is queued or in flight").block(block),
            area,
        );
        return;
    }
    let w = area.width.saturating_sub(2) as usize;
    let webhook_w = 16usize;
    let id_w = w.saturating_sub(9 + webhook_w + 7 + 8 + 4).clamp(8, 40);
    let rows = all.iter().skip(app.detail_scroll).map(|(state, m)| {
        let row = Row::new([
            state.to_string(),
            fit(&m.id, id_w),
            fit(&m.webhook, webhook_w),
            age(m.age),
            count(m.attempts),
        ]);
        if *state == "in flight" {
            row.cyan()
        } else {
            row
        }
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(9),
            Constraint::Length(id_w as u16),
            Constraint::Length(webhook_w as u16),
            Constraint::Length(7),
            Constraint::Length(8),
        ],
    )
    .header(
        Row::new(["STATE", "MESSAGE", "WEBHOOK", "AGE", "ATTEMPTS"])
            .bold()
            .underlined(),
    )
    .block(block);
    frame.render_widget(table, area);
}

/// How many of `ages` fall in each of [`BUCKETS`].
pub fn histogram(ages: impl Iterator<Item = std::time::Duration>) -> [u64; BUCKETS.len()] {
    let mut counts = [0u64; BUCKETS.len()];
    for a in ages {
        let secs = a.as_secs();
        let i = BUCKETS
            .iter()
            .position(|(bound, _)| secs < *bound)
            .unwrap_or(BUCKETS.len() - 1);
        counts[i] += 1;
    }
    counts
}

fn draw_histogram(frame: &mut Frame, detail: &model::ChannelDetail, area: Rect) {
    // The admin API has no delivery latencies; the ages of what is still waiting are the honest
    // lower bound of the latency those messages will have.
    let counts = histogram(detail.in_flight.iter().chain(&detail.queued).map(|m| m.age));
    let max = counts.iter().copied().max().unwrap_or(0);
    let bar_w = area.width.saturating_sub(2 + 7 + 7) as usize;
    let lines: Vec<Line> = BUCKETS
        .iter()
        .zip(counts)
        .map(|((_, label), n)| {
            let len = if max == 0 {
                0
            } else {
                ((n as f64 / max as f64) * bar_w as f64).ceil() as usize
            };
            Line::from(vec![
                Span::from(format!("{label:>6} ")),
                Span::from("█".repeat(len)).cyan(),
                Span::from(format!(" {}", count(n))),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" age of undelivered messages ")),
        area,
    );
}

fn draw_dead_letters(frame: &mut Frame, app: &App, channel: &str, area: Rect) {
    let Some(dead) = app.current_dead(channel) else {
        frame.render_widget(
            Paragraph::new("loading…")
                .block(Block::bordered().title(format!(" dead letters of {} ", fit(channel, 60)))),
            area,
        );
        return;
    };
    let block = Block::bordered().title(format!(
        " dead letters of {}: {} shown of {}, {} marked ",
        fit(channel, 40),
        dead.rows.len(),
        count(dead.total),
        app.marked.len()
    ));
    if dead.rows.is_empty() {
        frame.render_widget(Paragraph::new("no dead letters").block(block), area);
        return;
    }
    let w = area.width.saturating_sub(2 + 2) as usize;
    let (id_w, webhook_w, reason_w, tries_w, since_w) =
        (24usize, 14usize, 13usize, 5usize, 20usize);
    let error_w = w
        .saturating_sub(3 + id_w + webhook_w + reason_w + tries_w + since_w + 6)
        .max(8);
    let rows = dead.rows.iter().map(|r| {
        let mark = if app.marked.contains(&r.id) {
            "[x]"
        } else {
            "[ ]"
        };
        Row::new([
            mark.to_string(),
            fit(&r.id, id_w),
            fit(&r.webhook, webhook_w),
            fit(&r.reason, reason_w),
            count(r.attempts),
            fit(&r.dead_lettered_at, since_w),
            fit(&r.error, error_w),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(3),
            Constraint::Length(id_w as u16),
            Constraint::Length(webhook_w as u16),
            Constraint::Length(reason_w as u16),
            Constraint::Length(tries_w as u16),
            Constraint::Length(since_w as u16),
            Constraint::Length(error_w as u16),
        ],
    )
    .header(
        Row::new([
            "",
            "MESSAGE",
            "WEBHOOK",
            "REASON",
            "TRIES",
            "DEAD SINCE",
            "STATUS",
        ])
        .bold()
        .underlined(),
    )
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .highlight_symbol("▶ ")
    .block(block);
    let mut state = TableState::default().with_selected(Some(app.dead_selected));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_dead_letter(frame: &mut Frame, app: &App, channel: &str, id: &str, area: Rect) {
    let Some(d) = app.current_dead_detail(channel, id) else {
        frame.render_widget(
            Paragraph::new("loading…").block(Block::bordered().title(format!(" {} ", fit(id, 60)))),
            area,
        );
        return;
    };
    let header_rows = d.headers.len().clamp(1, 8) as u16 + 2;
    let [meta, headers, body] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(header_rows),
        Constraint::Fill(1),
    ])
    .areas(area);
    let r = &d.row;
    let w = meta.width.saturating_sub(2 + 10) as usize;
    let field = |k: &str, v: String| {
        Line::from(vec![
            Span::from(format!("{k:<9} ")).bold(),
            Span::from(fit(&v, w)),
        ])
    };
    frame.render_widget(
        Paragraph::new(vec![
            field("webhook", r.webhook.clone()),
            field(
                "reason",
                format!("{} after {} attempt(s)", r.reason, count(r.attempts)),
            ),
            field("status", r.error.clone()),
        ])
        .block(Block::bordered().title(format!(
            " dead letter {} (channel {}, dead since {}) ",
            fit(id, 40),
            fit(channel, 30),
            r.dead_lettered_at
        ))),
        meta,
    );
    let key_w = d
        .headers
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        .min(30);
    let value_w = headers.width.saturating_sub(2 + 2) as usize;
    let header_lines: Vec<Line> = if d.headers.is_empty() {
        vec![Line::from("no headers")]
    } else {
        d.headers
            .iter()
            .map(|(k, v)| {
                let key = fit(k, key_w);
                let rest = value_w.saturating_sub(key.chars().count() + 2);
                Line::from(vec![
                    Span::from(format!("{key:<key_w$}")).bold(),
                    Span::from(": "),
                    Span::from(fit(v, rest)),
                ])
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(header_lines)
            .block(Block::bordered().title(format!(" headers ({}) ", d.headers.len()))),
        headers,
    );
    let total = d.body.lines().count();
    let shown = app.body_scroll.min(total.saturating_sub(1));
    let lines: Vec<Line> = d
        .body
        .lines()
        .skip(shown)
        .map(|l| Line::from(l.to_string()))
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(format!(
            " body: line {} of {} ",
            if total == 0 { 0 } else { shown + 1 },
            total
        ))),
        body,
    );
}

/// A rectangle of at most `width` x `height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let w = width.min(area.width);
    let h = height.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_confirm(frame: &mut Frame, channel: &str, n: usize, area: Rect) {
    let popup = centered(area, 60, 6);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!("Purge {} of {}?", plural(n), fit(channel, 30))),
            Line::from("They are deleted for good."),
            Line::from(vec![
                Span::from("y").bold().reversed(),
                Span::from(" purge   "),
                Span::from("any other key").bold().reversed(),
                Span::from(" cancel"),
            ]),
        ])
        .wrap(Wrap { trim: true })
        .block(Block::bordered().title(" confirm ").red()),
        popup,
    );
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let popup = centered(area, 76, 19);
    frame.render_widget(Clear, popup);
    let key = |k: &str, what: &str| {
        Line::from(vec![
            Span::from(format!(" {k:<14}")).bold(),
            Span::from(what.to_string()),
        ])
    };
    let lines = vec![
        key("↑↓ j k, wheel", "move the selection or scroll"),
        key("PgUp PgDn", "move by 10; g/G or Home/End: first/last"),
        key("Enter", "open the channel / the dead letter"),
        key("d", "dead letters of the channel"),
        key("/", "filter channels by name (Esc clears)"),
        key("Space / a", "mark one / all dead letters"),
        key("r", "replay the marked (or selected) dead letters"),
        key("x", "purge the marked (or selected) ones, after a prompt"),
        key("q Esc", "back; quit on the overview (Ctrl-C quits)"),
        Line::from(""),
        Line::from(vec![
            Span::from(" rows: "),
            Span::from("no connector").red(),
            Span::from(" · "),
            Span::from("dead letters").magenta(),
            Span::from(" · "),
            Span::from("growing").yellow(),
            Span::from(" (queue rose 3 polls in a row)"),
        ]),
        Line::from(" DELIV/S: acks per second between the last two polls."),
        Line::from(" FAIL/S: newly expired or dead-lettered messages per second."),
        Line::from(" OLDEST: age of the oldest queued or in-flight message."),
        Line::from(" The histogram counts the ages of undelivered messages."),
        Line::from(""),
        Line::from(" any key closes this help").dark_gray(),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" help ")),
        popup,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fit_cuts_with_an_ellipsis() {
        assert_eq!(fit("payments", 10), "payments");
        assert_eq!(fit("payments-eu-west", 10), "payments-…");
        assert_eq!(fit("x", 0), "");
    }

    #[test]
    fn sparkline_scales_to_its_maximum() {
        assert_eq!(sparkline([0.0, 1.0, 2.0, 4.0].into_iter(), 4), " ▂▄█");
        assert_eq!(sparkline([3.0].into_iter(), 3), "  █");
        assert_eq!(sparkline([f64::NAN, 0.0].into_iter(), 2), "  ");
    }

    #[test]
    fn histogram_buckets_by_age() {
        let ages = [0, 3, 4, 29, 30, 119, 600, u64::MAX].map(Duration::from_secs);
        assert_eq!(histogram(ages.into_iter()), [1, 2, 1, 2, 0, 2]);
    }
}
