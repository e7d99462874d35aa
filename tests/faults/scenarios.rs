//! The fault scenarios, each run against one backend: a load goes through serve and tunnel
//! while one thing keeps failing, then everything that got a 200 must have arrived intact.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::load::{self, Sent};
use crate::proxy::Proxy;
use crate::rig::{Backend, ONE_AT_A_TIME, Rig, long_mode};

/// Webhooks per run (`WCON_FAULTS_N` overrides).
fn run_size() -> usize {
    std::env::var("WCON_FAULTS_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

const SENDERS: usize = 16;
/// How long a sender keeps retrying one body before giving up on it.
const GIVE_UP: Duration = Duration::from_secs(120);
/// How long delivery may take after the load ends.
const SETTLE: Duration = Duration::from_secs(300);

/// Faults per run at most: each one redelivers what was in flight (about 5 to 25 messages), so
/// the redelivery ratio depends on faults per message, not on how fast the machine is.
const FAULT_EVERY_SHARE: usize = 6;

/// Runs `fault` every 1–4 s (seeded), and only after another sixth of the run got its 200s,
/// until the load is done; returns how many times it ran. The first fault comes 50–300 ms
/// after the start, so that a run whose load is sent quickly (a fast buffer) still gets one.
async fn while_loading(
    rig: &mut Rig,
    sent: &Sent,
    sending: &tokio::task::JoinHandle<std::sync::Arc<Sent>>,
    seed: u64,
    mut fault: impl FnMut(&mut Rig),
) -> usize {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut times = 0;
    let step = sent.accepted.lock().unwrap().len() / FAULT_EVERY_SHARE;
    let mut next_at = 0;
    while !sending.is_finished() {
        let pause = if times == 0 {
            Duration::from_millis(rng.random_range(50..300))
        } else {
            Duration::from_millis(rng.random_range(1000..4000))
        };
        let until = tokio::time::Instant::now() + pause;
        let accepted = || {
            sent.accepted_so_far
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        while (tokio::time::Instant::now() < until || accepted() < next_at)
            && !sending.is_finished()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        next_at = accepted() + step;
        if sending.is_finished() {
            break;
        }
        fault(rig);
        times += 1;
    }
    times
}

pub async fn kill_serve_repeatedly(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(backend, |addr| addr).await;
    let n = run_size();
    let sent = Sent::new(n);
    let sending = tokio::spawn(load::send(
        sent.clone(),
        rig.webhook_url(),
        SENDERS,
        GIVE_UP,
    ));
    let kills = while_loading(&mut rig, &sent, &sending, 1, Rig::kill_and_restart_serve).await;
    sending.await.unwrap();
    println!("FAULTS kill -9 serve ({backend:?}): {kills} kills");
    assert!(kills >= 1, "the load ended before serve was killed once");
    let report = load::settle_and_check(
        &format!("kill -9 serve x{kills} ({backend:?})"),
        &sent,
        &rig.sink,
        SETTLE,
    )
    .await;
    assert!(report.accepted > 0);
}

pub async fn kill_tunnel_repeatedly(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut rig = Rig::start(backend, |addr| addr).await;
    let n = run_size();
    let sent = Sent::new(n);
    let sending = tokio::spawn(load::send(
        sent.clone(),
        rig.webhook_url(),
        SENDERS,
        GIVE_UP,
    ));
    let kills = while_loading(&mut rig, &sent, &sending, 2, Rig::kill_and_restart_tunnel).await;
    sending.await.unwrap();
    println!("FAULTS kill -9 tunnel ({backend:?}): {kills} kills");
    assert!(
        kills >= 1,
        "the load ended before the tunnel was killed once"
    );
    let report = load::settle_and_check(
        &format!("kill -9 tunnel x{kills} ({backend:?})"),
        &sent,
        &rig.sink,
        SETTLE,
    )
    .await;
    assert_eq!(
        report.accepted, n,
        "only the tunnel died: every webhook is accepted"
    );
}

pub async fn target_unavailable_for_a_while(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let rig = Rig::start(backend, |addr| addr).await;
    let n = run_size() / 4;
    let outage = if long_mode() {
        Duration::from_secs(60)
    } else {
        Duration::from_secs(4)
    };
    let sent = Sent::new(n);
    let sending = tokio::spawn(load::send(
        sent.clone(),
        rig.webhook_url(),
        SENDERS,
        GIVE_UP,
    ));
    rig.sink
        .wait_until(Duration::from_secs(60), "first deliveries", |s| {
            s.count() >= 100
        })
        .await;
    rig.sink.set_status(503);
    tokio::time::sleep(outage).await;
    let refused = rig.sink.all().iter().filter(|r| r.status == 503).count();
    rig.sink.set_status(200);
    sending.await.unwrap();
    println!("FAULTS target 503 for {outage:?} ({backend:?}): {refused} deliveries answered 503");
    assert!(refused > 0, "the target never answered 503");
    let report = load::settle_and_check(
        &format!("target 503 for {outage:?} ({backend:?})"),
        &sent,
        &rig.sink,
        SETTLE + outage,
    )
    .await;
    assert_eq!(report.accepted, n);
}

pub async fn connections_cut_at_random(backend: Backend) {
    let _alone = ONE_AT_A_TIME.lock().await;
    let mut proxy = None;
    let mut rig = Rig::start(backend, |addr| {
        let p = Proxy::start(addr);
        let at = p.addr;
        proxy = Some(p);
        at
    })
    .await;
    let proxy = proxy.unwrap();
    let n = run_size();
    let sent = Sent::new(n);
    let sending = tokio::spawn(load::send(
        sent.clone(),
        rig.webhook_url(),
        SENDERS,
        GIVE_UP,
    ));
    // Every few seconds, like the kills: each cut redelivers what was in flight on the
    // connection (delivered, its ack lost with the socket), about 15 messages here.
    let rounds = while_loading(&mut rig, &sent, &sending, 3, |_| proxy.cut_all()).await;
    sending.await.unwrap();
    let cuts = proxy.cuts.load(std::sync::atomic::Ordering::Relaxed);
    println!("FAULTS proxy ({backend:?}): {rounds} rounds, {cuts} connections cut");
    assert!(cuts >= 1, "no connection was cut");
    let report = load::settle_and_check(
        &format!("proxy cutting connections x{cuts} ({backend:?})"),
        &sent,
        &rig.sink,
        SETTLE,
    )
    .await;
    assert_eq!(report.accepted, n);
    // The tunnel is still the first one: it reconnected by itself every time.
    assert!(rig.tunnel.child.try_wait().unwrap().is_none());
    drop(proxy);
}
