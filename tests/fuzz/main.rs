//! Bounded fuzzing in the normal suite: the `cargo fuzz` harnesses (fuzz/harness/) run on a
//! seeded corpus and its mutations (bit flips, insertions, deletions, truncations, splices,
//! random bytes). `WCON_FUZZ_ITERATIONS` sets the inputs per harness (default 20,000).

#[path = "../../fuzz/harness/mod.rs"]
mod harness;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn iterations() -> usize {
    std::env::var("WCON_FUZZ_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000)
}

fn mutate(rng: &mut StdRng, corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..4) {
        match rng.random_range(0..7) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => {
                let i = rng.random_range(0..=data.len());
                let byte = [
                    b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'=', 0, 0xff,
                ][rng.random_range(0..11)];
                data.insert(i, byte);
            }
            2 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                let n = rng.random_range(1..=(data.len() - i).min(16));
                data.drain(i..i + n);
            }
            3 => data.truncate(rng.random_range(0..=data.len())),
            4 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let at = rng.random_range(0..=data.len());
                let from = rng.random_range(0..=other.len());
                data.splice(at.., other[from..].iter().copied());
            }
            5 => {
                let i = rng.random_range(0..=data.len());
                let n = rng.random_range(1..64);
                let junk: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(i..i, junk);
            }
            _ => {
                let n = rng.random_range(0..256);
                data = (0..n).map(|_| rng.random()).collect();
            }
        }
    }
    data
}

/// Runs `harness` on the corpus (every entry must get past the first parse) and on `n`
/// mutations, and checks that a fair share of those reach the code under test too.
fn run(name: &str, seed: u64, corpus: &[&[u8]], harness: fn(&[u8]) -> bool) {
    let corpus: Vec<Vec<u8>> = corpus.iter().map(|c| c.to_vec()).collect();
    for c in &corpus {
        assert!(harness(c), "{name}: a corpus entry does not parse: {c:?}");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let n = iterations();
    let mut deep = 0;
    for i in 0..n {
        let input = mutate(&mut rng, &corpus);
        match std::panic::catch_unwind(|| harness(&input)) {
            Ok(reached) => deep += usize::from(reached),
            Err(_) => panic!(
                "{name}: input {i} panicked: {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
    }
    println!(
        "FUZZ {name}: {} corpus inputs + {n} mutations, {deep} past the first parse",
        corpus.len()
    );
    assert!(
        deep * 50 >= n,
        "{name}: only {deep} of {n} inputs got past the first parse"
    );
}

/// A stored message record, as the embedded buffer writes it.
fn stored_message() -> Vec<u8> {
    let at = chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap();
    wcon::message::Message {
        id: "msg_0123456789abcdef".into(),
        channel: "c".into(),
        webhook_id: "w".into(),
        sequence: 7,
        received_at: at,
        expires_at: at + chrono::Duration::days(1),
        source_ip: Some([203, 0, 113, 9].into()),
        headers: [("content-type".to_string(), "application/json".to_string())].into(),
        body: bytes::Bytes::from_static(b"{\"x\":1}"),
        delivery_count: 1,
    }
    .encode()
}

#[test]
fn frames() {
    let stored = stored_message();
    run(
        "frames",
        1,
        &[
            br#"{"type":"ack","message_id":"msg_0123456789abcdef"}"#,
            br#"{"type":"nack","message_id":"msg_1","retry":false,"reason":"400"}"#,
            br#"{"type":"heartbeat","timestamp":"2026-01-01T00:00:00Z"}"#,
            br#"{"type":"connected","connection_id":"wsc_1","channel":"c","timestamp":"t","protocol_version":1,"max_in_flight":10,"heartbeat_interval_seconds":30}"#,
            br#"{"type":"webhook","message_id":"msg_1","sequence":7,"webhook_id":"w","timestamp":"2026-01-01T00:00:00.000000Z","expires_at":"2026-01-02T00:00:00.000000Z","delivery_count":1,"headers":{"a":"b"},"payload":{"x":1},"body_b64":"eyJ4IjoxfQ==","source_ip":"203.0.113.9"}"#,
            br#"{"type":"error","code":"invalid_frame","detail":"x"}"#,
            &stored,
        ],
        harness::frames,
    );
}

#[test]
fn config() {
    run(
        "config",
        2,
        &[
            br#"{"w":{"module":"webhook_connect","module-config":{"channel":"c","channel_token":"ch_tok_0123456789abcdef","ttl_seconds":60,"max_in_flight":5}}}"#,
            br#"{"g":{"data_type":"json","module":"log","hmac":{"secret":"s","format":"github"},"rate_limit":{"max_requests":5,"window_seconds":60}}}"#,
            br#"{"s":{"module":"log","json_schema":{"type":"object","required":["id"]},"credential_cleanup":{"enabled":true,"mode":"mask","fields":["password"]}}}"#,
            br#"{"c":{"chain":["log","log"],"chain-config":{"execution":"sequential","continue_on_error":true},"basic_auth":{"username":"u","password":"{$PW:default}"}}}"#,
            br#"{"default":{"module":"log","ip_whitelist":["10.0.0.0/8","::1"],"trusted_proxies":["127.0.0.1"]}}"#,
        ],
        harness::config,
    );
}

#[test]
fn signatures() {
    run(
        "signatures",
        3,
        &[
            b"\x00sha256=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n{\"a\":1}",
            b"\x02deadbeef\n{}",
            b"\x03t=1700000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=x\nbody",
            b"\x05dGVzdA==\nbody",
            b"\x06username=\"u\", realm=\"Webhook API\", nonce=\"abc\", uri=\"/webhook/digest\", qop=auth, nc=00000001, cnonce=\"x\", response=\"0123\"\n",
            b"\x07oauth_consumer_key=\"ck\", oauth_nonce=\"n\", oauth_signature=\"s%3D\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1\", oauth_version=\"1.0\"\n",
            b"\x08dTpw\n",
        ],
        harness::signatures,
    );
}
