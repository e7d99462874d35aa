//! Key and mouse handling: turns terminal events into changes of [`App`] and, when the driver has
//! something to do, an [`Action`]. The footer and the help overlay list the same keys.

use ratatui::crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEventKind,
};

use crate::app::{Action, App, Confirm, View};

/// Lines of the body moved by PageUp / PageDown.
const PAGE: usize = 10;

/// The keys of each screen, for the footer: (key, what it does).
pub fn footer_keys(view: &View) -> &'static [(&'static str, &'static str)] {
    match view {
        View::Overview => &[
            ("↑↓", "select"),
            ("Enter", "channel"),
            ("d", "dead letters"),
            ("/", "filter"),
            ("?", "help"),
            ("q", "quit"),
        ],
        View::Channel(_) => &[
            ("↑↓", "scroll"),
            ("d", "dead letters"),
            ("?", "help"),
            ("q/Esc", "back"),
        ],
        View::DeadLetters(_) => &[
            ("↑↓", "select"),
            ("Space", "mark"),
            ("a", "mark all"),
            ("Enter", "view"),
            ("r", "replay"),
            ("x", "purge"),
            ("q/Esc", "back"),
        ],
        View::DeadLetter { .. } => &[
            ("↑↓ PgUp PgDn", "scroll"),
            ("r", "replay"),
            ("x", "purge"),
            ("q/Esc", "back"),
        ],
    }
}

impl App {
    /// Handles one terminal event; answers what the driver must do, if anything.
    pub fn handle(&mut self, event: &Event) -> Option<Action> {
        match event {
            Event::Key(key) if key.kind != KeyEventKind::Release => self.key(*key),
            Event::Mouse(mouse) => match mouse.kind {
                MouseEventKind::ScrollDown => self.move_by(1),
                MouseEventKind::ScrollUp => self.move_by(-1),
                _ => None,
            },
            _ => None,
        }
    }

    fn key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Some(Action::Quit);
        }
        if self.help {
            // Any key closes the help.
            self.help = false;
            return None;
        }
        if let Some(confirm) = self.confirm.take() {
            return match key.code {
                KeyCode::Char('y' | 'Y') => {
                    let Confirm::Purge { channel, ids } = confirm;
                    self.marked.clear();
                    if matches!(self.view(), View::DeadLetter { .. }) {
                        self.stack.pop();
                    }
                    self.notify(format!("purging {}…", plural(ids.len())));
                    Some(Action::Purge { channel, ids })
                }
                _ => {
                    self.notify("purge cancelled; nothing was changed");
                    None
                }
            };
        }
        if self.editing_filter {
            return self.filter_key(key);
        }
        match key.code {
            KeyCode::Char('?') => {
                self.help = true;
                None
            }
            KeyCode::Char('q') | KeyCode::Esc => self.back(),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::PageDown => self.move_by(PAGE as isize),
            KeyCode::PageUp => self.move_by(-(PAGE as isize)),
            KeyCode::Home | KeyCode::Char('g') => self.move_by(isize::MIN),
            KeyCode::End | KeyCode::Char('G') => self.move_by(isize::MAX),
            _ => self.screen_key(key),
        }
    }

    fn filter_key(&mut self, key: KeyEvent) -> Option<Action> {
        match key.code {
            KeyCode::Enter => self.editing_filter = false,
            KeyCode::Esc => {
                self.editing_filter = false;
                self.filter.clear();
            }
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char(c) if !c.is_control() => self.filter.push(c),
            _ => {}
        }
        self.selected = 0;
        self.clamp();
        None
    }

    fn screen_key(&mut self, key: KeyEvent) -> Option<Action> {
        match (self.view().clone(), key.code) {
            (View::Overview, KeyCode::Char('/')) => {
                self.editing_filter = true;
                None
            }
            (View::Overview, KeyCode::Enter) => {
                let name = self.visible_channels().get(self.selected)?.name.clone();
                self.open(View::Channel(name))
            }
            (View::Overview, KeyCode::Char('d')) => {
                let name = self.visible_channels().get(self.selected)?.name.clone();
                self.open(View::DeadLetters(name))
            }
            (View::Channel(name), KeyCode::Char('d')) => self.open(View::DeadLetters(name)),
            (View::DeadLetters(channel), code) => self.dead_letters_key(channel, code),
            (View::DeadLetter { channel, id }, KeyCode::Char('r')) => {
                self.stack.pop();
                self.notify("replaying 1 dead letter…");
                Some(Action::Replay {
                    channel,
                    ids: vec![id],
                })
            }
            (View::DeadLetter { channel, id }, KeyCode::Char('x')) => {
                self.confirm = Some(Confirm::Purge {
                    channel,
                    ids: vec![id],
                });
                None
            }
            _ => None,
        }
    }

    fn dead_letters_key(&mut self, channel: String, code: KeyCode) -> Option<Action> {
        let rows = self.current_dead(&channel).map(|d| d.rows.clone())?;
        let selected = rows.get(self.dead_selected).map(|r| r.id.clone());
        match code {
            KeyCode::Char(' ') => {
                let id = selected?;
                if !self.marked.remove(&id) {
                    self.marked.insert(id);
                }
                self.move_by(1)
            }
            KeyCode::Char('a') => {
                if self.marked.len() == rows.len() {
                    self.marked.clear();
                } else {
                    self.marked = rows.iter().map(|r| r.id.clone()).collect();
                }
                None
            }
            KeyCode::Enter => {
                let id = selected?;
                self.open(View::DeadLetter { channel, id })
            }
            KeyCode::Char('r') => {
                let ids = self.chosen(selected)?;
                self.marked.clear();
                self.notify(format!("replaying {}…", plural(ids.len())));
                Some(Action::Replay { channel, ids })
            }
            KeyCode::Char('x') => {
                let ids = self.chosen(selected)?;
                self.confirm = Some(Confirm::Purge { channel, ids });
                None
            }
            _ => None,
        }
    }

    /// The marked dead letters, or the selected one when none is marked.
    fn chosen(&self, selected: Option<String>) -> Option<Vec<String>> {
        if self.marked.is_empty() {
            selected.map(|id| vec![id])
        } else {
            Some(self.marked.iter().cloned().collect())
        }
    }

    /// Moves the selection (or scroll) of the open screen; saturates at both ends.
    fn move_by(&mut self, delta: isize) -> Option<Action> {
        let step = |v: usize| v.saturating_add_signed(delta);
        match self.view() {
            View::Overview => self.selected = step(self.selected),
            View::Channel(_) => self.detail_scroll = step(self.detail_scroll),
            View::DeadLetters(_) => self.dead_selected = step(self.dead_selected),
            View::DeadLetter { .. } => self.body_scroll = step(self.body_scroll),
        }
        self.clamp();
        None
    }
}

/// `1 dead letter`, `3 dead letters`.
pub fn plural(n: usize) -> String {
    if n == 1 {
        "1 dead letter".into()
    } else {
        format!("{n} dead letters")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use ratatui::crossterm::event::{MouseEvent, MouseEventKind};

    use super::*;
    use crate::model::{ChannelRow, DeadLetterDetail, DeadLetterRow, DeadLetters, Overview};

    fn press(app: &mut App, code: KeyCode) -> Option<Action> {
        app.handle(&Event::Key(KeyEvent::new(code, KeyModifiers::NONE)))
    }

    fn app_with(names: &[&str]) -> App {
        let mut app = App::new("http://server");
        app.apply_overview(
            Instant::now(),
            Overview {
                healthy: true,
                backend: None,
                channels: names
                    .iter()
                    .map(|n| ChannelRow {
                        name: n.to_string(),
                        connectors: 1,
                        ..Default::default()
                    })
                    .collect(),
            },
        );
        app
    }

    fn with_dead(app: &mut App, channel: &str, ids: &[&str]) {
        app.apply_dead_letters(DeadLetters {
            channel: channel.into(),
            total: ids.len() as u64,
            rows: ids
                .iter()
                .map(|id| DeadLetterRow {
                    id: id.to_string(),
                    ..Default::default()
                })
                .collect(),
        });
    }

    #[test]
    fn q_and_esc_go_back_then_quit() {
        let mut app = app_with(&["a", "b"]);
        assert_eq!(press(&mut app, KeyCode::Down), None);
        assert_eq!(press(&mut app, KeyCode::Enter), Some(Action::Refresh));
        assert_eq!(app.view(), &View::Channel("b".into()));
        assert_eq!(press(&mut app, KeyCode::Char('d')), Some(Action::Refresh));
        assert_eq!(app.view(), &View::DeadLetters("b".into()));
        assert_eq!(press(&mut app, KeyCode::Esc), Some(Action::Refresh));
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Refresh));
        assert_eq!(app.view(), &View::Overview);
        assert_eq!(press(&mut app, KeyCode::Char('q')), Some(Action::Quit));
    }

    #[test]
    fn ctrl_c_quits_from_anywhere_even_a_prompt() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('d'));
        with_dead(&mut app, "a", &["m1"]);
        press(&mut app, KeyCode::Char('x'));
        assert!(app.confirm.is_some());
        let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
        assert_eq!(app.handle(&Event::Key(ctrl_c)), Some(Action::Quit));
    }

    #[test]
    fn selection_saturates_at_both_ends_and_follows_the_mouse() {
        let mut app = app_with(&["a", "b", "c"]);
        press(&mut app, KeyCode::Up);
        assert_eq!(app.selected, 0);
        for _ in 0..10 {
            press(&mut app, KeyCode::Char('j'));
        }
        assert_eq!(app.selected, 2);
        let scroll = |kind| {
            Event::Mouse(MouseEvent {
                kind,
                column: 0,
                row: 0,
                modifiers: KeyModifiers::NONE,
            })
        };
        app.handle(&scroll(MouseEventKind::ScrollUp));
        assert_eq!(app.selected, 1);
        app.handle(&scroll(MouseEventKind::ScrollDown));
        app.handle(&scroll(MouseEventKind::ScrollDown));
        assert_eq!(app.selected, 2);
        press(&mut app, KeyCode::Home);
        assert_eq!(app.selected, 0);
        press(&mut app, KeyCode::End);
        assert_eq!(app.selected, 2);
    }

    #[test]
    fn enter_on_no_channels_does_nothing() {
        let mut app = App::new("http://server");
        assert_eq!(press(&mut app, KeyCode::Enter), None);
        assert_eq!(press(&mut app, KeyCode::Char('d')), None);
        assert_eq!(app.view(), &View::Overview);
    }

    #[test]
    fn the_filter_takes_keys_until_enter_and_esc_clears_it() {
        let mut app = app_with(&["payments", "orders", "payouts"]);
        press(&mut app, KeyCode::Char('/'));
        for c in "PAY".chars() {
            press(&mut app, KeyCode::Char(c));
        }
        // `q` is typed into the filter, it does not quit.
        assert_eq!(press(&mut app, KeyCode::Char('q')), None);
        press(&mut app, KeyCode::Backspace);
        let names = |app: &App| -> Vec<String> {
            app.visible_channels()
                .iter()
                .map(|c| c.name.clone())
                .collect()
        };
        assert_eq!(names(&app), ["payments", "payouts"]);
        press(&mut app, KeyCode::Enter);
        assert!(!app.editing_filter);
        press(&mut app, KeyCode::Down);
        assert_eq!(press(&mut app, KeyCode::Enter), Some(Action::Refresh));
        assert_eq!(app.view(), &View::Channel("payouts".into()));
        press(&mut app, KeyCode::Esc);
        press(&mut app, KeyCode::Char('/'));
        press(&mut app, KeyCode::Esc);
        assert_eq!(app.filter, "");
        assert_eq!(names(&app).len(), 3);
    }

    #[test]
    fn help_opens_with_question_mark_and_any_key_closes_it() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('?'));
        assert!(app.help);
        // The key that closes the help does nothing else.
        assert_eq!(press(&mut app, KeyCode::Char('q')), None);
        assert!(!app.help);
        assert_eq!(app.view(), &View::Overview);
    }

    #[test]
    fn replay_takes_the_marked_ones_or_else_the_selected_one() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('d'));
        // Nothing loaded yet: nothing to replay.
        assert_eq!(press(&mut app, KeyCode::Char('r')), None);
        with_dead(&mut app, "a", &["m1", "m2", "m3"]);
        press(&mut app, KeyCode::Down);
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            Some(Action::Replay {
                channel: "a".into(),
                ids: vec!["m2".into()]
            })
        );
        press(&mut app, KeyCode::Home);
        press(&mut app, KeyCode::Char(' ')); // marks m1, moves to m2
        press(&mut app, KeyCode::Down);
        press(&mut app, KeyCode::Char(' ')); // marks m3
        assert_eq!(app.marked.len(), 2);
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            Some(Action::Replay {
                channel: "a".into(),
                ids: vec!["m1".into(), "m3".into()]
            })
        );
        assert!(app.marked.is_empty());
        press(&mut app, KeyCode::Char('a'));
        assert_eq!(app.marked.len(), 3);
        press(&mut app, KeyCode::Char('a'));
        assert!(app.marked.is_empty());
    }

    #[test]
    fn purge_waits_for_y_and_anything_else_cancels() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('d'));
        with_dead(&mut app, "a", &["m1", "m2"]);
        assert_eq!(press(&mut app, KeyCode::Char('x')), None);
        assert_eq!(press(&mut app, KeyCode::Char('n')), None);
        assert!(app.confirm.is_none());
        assert_eq!(app.view(), &View::DeadLetters("a".into()));
        press(&mut app, KeyCode::Char('x'));
        // Esc cancels the prompt, it does not leave the screen.
        assert_eq!(press(&mut app, KeyCode::Esc), None);
        assert_eq!(app.view(), &View::DeadLetters("a".into()));
        press(&mut app, KeyCode::Char('x'));
        assert_eq!(
            press(&mut app, KeyCode::Char('y')),
            Some(Action::Purge {
                channel: "a".into(),
                ids: vec!["m1".into()]
            })
        );
    }

    #[test]
    fn one_dead_letter_scrolls_replays_and_purges_then_returns_to_the_list() {
        let mut app = app_with(&["a"]);
        press(&mut app, KeyCode::Char('d'));
        with_dead(&mut app, "a", &["m1"]);
        press(&mut app, KeyCode::Enter);
        let open = View::DeadLetter {
            channel: "a".into(),
            id: "m1".into(),
        };
        assert_eq!(app.view(), &open);
        app.apply_dead_letter(DeadLetterDetail {
            channel: "a".into(),
            row: DeadLetterRow {
                id: "m1".into(),
                ..Default::default()
            },
            headers: vec![],
            body: (0..30).map(|i| format!("line {i}\n")).collect(),
        });
        press(&mut app, KeyCode::PageDown);
        press(&mut app, KeyCode::PageDown);
        press(&mut app, KeyCode::PageDown);
        press(&mut app, KeyCode::PageDown);
        assert_eq!(app.body_scroll, 29);
        press(&mut app, KeyCode::PageUp);
        assert_eq!(app.body_scroll, 19);
        press(&mut app, KeyCode::Char('x'));
        assert_eq!(
            press(&mut app, KeyCode::Char('y')),
            Some(Action::Purge {
                channel: "a".into(),
                ids: vec!["m1".into()]
            })
        );
        assert_eq!(app.view(), &View::DeadLetters("a".into()));
        press(&mut app, KeyCode::Enter);
        assert_eq!(
            press(&mut app, KeyCode::Char('r')),
            Some(Action::Replay {
                channel: "a".into(),
                ids: vec!["m1".into()]
            })
        );
        assert_eq!(app.view(), &View::DeadLetters("a".into()));
    }

    #[test]
    fn key_releases_are_ignored() {
        let mut app = app_with(&["a"]);
        let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(app.handle(&Event::Key(release)), None);
    }
}
