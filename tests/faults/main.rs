//! The fault suite: the real `wcon serve` and `wcon tunnel` on loopback, under `kill -9`, a
//! failing target and a proxy that cuts connections, plus floods of malformed input.
//!
//! Every scenario checks the relay's promise: each webhook that got a 200 is delivered, byte
//! for byte, and redeliveries stay rare. Numbers are printed (run with `--nocapture`).
//! `WCON_FAULTS_LONG=1` lengthens the outages (a minute of 503s instead of a few seconds).
//!
//! Buffers: every scenario runs once per backend listed in `backends!` at the bottom; adding a
//! backend is one line there plus its `Backend` variant in `rig.rs`. Redis runs when the
//! `redis` feature is built (the default) and fails the test when Redis does not answer.

#[path = "../it/support/mod.rs"]
mod support;

mod load;
mod malformed;
mod proxy;
mod rejects;
mod rig;
mod scenarios;

/// One module per backend, each running every scenario against it.
macro_rules! backends {
    ($($name:ident => $backend:expr),* $(,)?) => {$(
        mod $name {
            use crate::rig::Backend;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kill9_of_serve_every_few_seconds_loses_nothing_that_got_200() {
                crate::scenarios::kill_serve_repeatedly($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn kill9_of_the_tunnel_every_few_seconds_loses_nothing() {
                crate::scenarios::kill_tunnel_repeatedly($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_target_answering_503_for_a_while_gets_everything_after() {
                crate::scenarios::target_unavailable_for_a_while($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn a_proxy_cutting_connections_at_random_loses_nothing() {
                crate::scenarios::connections_cut_at_random($backend).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn malformed_requests_and_frames_never_crash_or_stall() {
                crate::malformed::flood($backend).await;
            }
        }
    )*};
}

backends! {
    embedded => Backend::Embedded,
}

#[cfg(feature = "redis")]
backends! {
    redis => Backend::Redis,
}
