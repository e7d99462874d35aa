//! Integration tests: the real `wcon` binary, a real local HTTP target, real sockets.

mod auth;
mod errors;
mod faults;
mod frames;
mod hardening;
mod modules;
mod relay;
mod support;
mod transports;
