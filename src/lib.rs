//! wcon: a webhook relay.
//!
//! `wcon serve` ([`receiver`]) accepts webhooks, authenticates them, stores them durably in a
//! [`buffer`] and streams them to connectors; `wcon tunnel` ([`connector`]) dials out, delivers
//! each message to a local HTTP target or to output [`modules`], and acks only after the
//! destination accepted it. The wire types shared by both sides live in [`protocol`].
//!
//! This crate is a library with no terminal code: it never prints. The `wcon` binary in
//! `commands/` turns its results into text.
#![warn(missing_docs)]

pub mod auth;
pub mod buffer;
pub mod cleanup;
pub mod config;
pub mod connector;

pub mod message;
pub mod modules;
pub mod protocol;
pub mod receiver;

pub mod secret;
pub mod time;
