//! The dashboard of `wcon dash`: its state, view model and widgets.
//!
//! This crate owns what the screen shows and how keys change it. It must not depend on the
//! `wcon` engine: `commands/dash.rs` maps admin API answers into the rows defined here.
