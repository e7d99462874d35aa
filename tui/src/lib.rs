//! The dashboard of `wcon dash`: its state, view model and widgets.
//!
//! This crate owns what the screen shows and how keys change it. It must not depend on the
//! `wcon` engine: `commands/dash.rs` maps admin API answers into the rows defined here.

#![warn(missing_docs)]

pub mod app;
pub mod keys;
pub mod model;
pub mod ui;

pub use app::{Action, App, Link, View};
pub use model::{
    ChannelDetail, ChannelRow, ConnectorRow, DeadLetterDetail, DeadLetterRow, DeadLetters,
    MessageRow, Overview,
};
pub use ratatui;
pub use ui::draw;
