//! Integration tests: the real `wcon` binary, a real local HTTP target, real sockets.

mod admin;
mod auth;
mod auth_methods;
mod cli;
mod completions;
mod connector_live;
mod dash;
mod errors;
mod frames;
mod hardening;
mod init;
#[cfg(all(feature = "postgres", feature = "kafka"))]
mod module_e2e;
mod modules;
mod monitoring;
mod mtls;
mod rabbit;
mod redelivery;
mod relay;
mod rotate;
#[cfg(feature = "redis")]
mod scale;
mod security;
mod support;
mod transports;
mod tunnel_json;
