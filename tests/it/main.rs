//! Integration tests: the real `wcon` binary, a real local HTTP target, real sockets.

mod admin;
mod auth;
mod auth_methods;
mod cli;
mod completions;
mod errors;
mod faults;
mod frames;
mod hardening;
#[cfg(all(feature = "postgres", feature = "kafka"))]
mod module_e2e;
mod modules;
mod relay;
#[cfg(feature = "redis")]
mod scale;
mod support;
mod transports;
