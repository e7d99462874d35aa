//! A relaybench-like load: numbered binary bodies posted by concurrent senders that retry until
//! they get a 200 (as Stripe or GitHub would), and the checks of what reached the sink.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::Sink;

const SEED: u64 = 0x0fa1_75ee_d000_0001;

/// Body number `i`: a first line naming it, then 0–1,500 seeded random bytes (any byte value).
pub fn body(i: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(SEED ^ i as u64);
    let mut out = format!("wcon-fault {i:08}\n").into_bytes();
    let len = rng.random_range(0..1500);
    out.extend((0..len).map(|_| rng.random::<u8>()));
    out
}

/// The number a body names, if it is one of ours.
pub fn index_of(body: &[u8]) -> Option<usize> {
    let head = body.get(..20)?;
    std::str::from_utf8(head.strip_prefix(b"wcon-fault ")?.strip_suffix(b"\n")?)
        .ok()?
        .parse()
        .ok()
}

/// What the senders did.
#[derive(Default)]
pub struct Sent {
    /// Bodies that got a 200, by number.
    pub accepted: Mutex<Vec<bool>>,
    /// Requests sent (retries included).
    pub requests: AtomicU64,
    /// Requests answered with something else than 200, or not at all.
    pub failed: AtomicU64,
    /// How many bodies got a 200 so far.
    pub accepted_so_far: AtomicUsize,
}

impl Sent {
    /// Nothing sent yet, for a run of `n` bodies.
    pub fn new(n: usize) -> Arc<Self> {
        Arc::new(Self {
            accepted: Mutex::new(vec![false; n]),
            ..Self::default()
        })
    }
}

/// Posts the bodies of `sent` to `url` from `concurrency` senders; a failed post is tried again
/// after a short pause, for up to `give_up` per body. Returns when every body got a 200 or was
/// given up.
pub async fn send(
    sent: Arc<Sent>,
    url: String,
    concurrency: usize,
    give_up: Duration,
) -> Arc<Sent> {
    let n = sent.accepted.lock().unwrap().len();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for _ in 0..concurrency {
        let (client, url, next, sent) = (client.clone(), url.clone(), next.clone(), sent.clone());
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let payload = body(i);
                let deadline = tokio::time::Instant::now() + give_up;
                loop {
                    sent.requests.fetch_add(1, Ordering::Relaxed);
                    let answer = client
                        .post(&url)
                        .header("content-type", "application/octet-stream")
                        .body(payload.clone())
                        .send()
                        .await;
                    if answer.is_ok_and(|r| r.status() == 200) {
                        sent.accepted.lock().unwrap()[i] = true;
                        sent.accepted_so_far.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    sent.failed.fetch_add(1, Ordering::Relaxed);
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    sent
}

/// What the sink got, compared with what was sent.
#[derive(Debug, Default)]
pub struct Report {
    pub sent: usize,
    pub accepted: usize,
    pub lost: usize,
    /// 2xx deliveries of a message id already delivered (the relay's redeliveries).
    pub duplicates: usize,
    /// Distinct message ids delivered.
    pub delivered: usize,
    /// Bodies stored twice under two message ids (a sender retried after losing a 200).
    pub resent: usize,
    /// 2xx deliveries whose body is not exactly a body that was sent.
    pub corrupted: usize,
    pub requests: u64,
    pub failed_requests: u64,
}

impl Report {
    pub fn duplicate_ratio(&self) -> f64 {
        self.duplicates as f64 / self.delivered.max(1) as f64
    }
}

/// Compares the sink's 2xx deliveries with `sent`.
pub fn report(sent: &Sent, sink: &Sink) -> Report {
    let accepted = sent.accepted.lock().unwrap().clone();
    let received = sink.received.lock().unwrap();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut ids_by_body: HashMap<usize, std::collections::HashSet<String>> = HashMap::new();
    let mut delivered = vec![false; accepted.len()];
    let mut corrupted = 0;
    for r in received.iter().filter(|r| r.status < 300) {
        let id = r.header("x-webhook-message-id").to_string();
        *by_id.entry(id.clone()).or_default() += 1;
        match index_of(&r.body) {
            Some(i) if i < accepted.len() && r.body[..] == body(i)[..] => {
                delivered[i] = true;
                ids_by_body.entry(i).or_default().insert(id);
            }
            _ => corrupted += 1,
        }
    }
    Report {
        sent: accepted.len(),
        accepted: accepted.iter().filter(|a| **a).count(),
        lost: accepted
            .iter()
            .zip(&delivered)
            .filter(|(a, d)| **a && !**d)
            .count(),
        duplicates: by_id.values().map(|n| n - 1).sum(),
        delivered: by_id.len(),
        resent: ids_by_body.values().map(|ids| ids.len() - 1).sum(),
        corrupted,
        requests: sent.requests.load(Ordering::Relaxed),
        failed_requests: sent.failed.load(Ordering::Relaxed),
    }
}

/// Waits until nothing that got a 200 is missing from the sink, then checks the report:
/// nothing lost, nothing altered, fewer than 1% redeliveries. Prints the figures.
pub async fn settle_and_check(what: &str, sent: &Sent, sink: &Sink, timeout: Duration) -> Report {
    let deadline = tokio::time::Instant::now() + timeout;
    while report(sent, sink).lost > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Late redeliveries show up a little after the last first delivery.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = self::report(sent, sink);
    println!(
        "FAULTS {what}: sent {} accepted {} lost {} corrupted {} delivered {} duplicates {} ({:.3}%) resent-by-sender {} requests {} failed-requests {}",
        report.sent,
        report.accepted,
        report.lost,
        report.corrupted,
        report.delivered,
        report.duplicates,
        report.duplicate_ratio() * 100.0,
        report.resent,
        report.requests,
        report.failed_requests
    );
    assert_eq!(
        report.lost, 0,
        "{what}: webhooks that got 200 were lost: {report:?}"
    );
    assert_eq!(
        report.corrupted, 0,
        "{what}: bodies were altered: {report:?}"
    );
    assert!(
        report.duplicate_ratio() < 0.01,
        "{what}: too many redeliveries: {report:?}"
    );
    report
}

#[test]
fn bodies_name_their_number_and_differ() {
    for i in [0, 1, 99_999_999] {
        assert_eq!(index_of(&body(i)), Some(i));
    }
    assert_ne!(body(1), body(2));
    assert_eq!(index_of(b"wcon-fault 0000000x\n"), None);
    assert_eq!(index_of(b"short"), None);
}
