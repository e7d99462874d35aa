//! Production security: TLS on serve (HTTPS, WSS, HSTS, certificate reload), the tunnel's
//! certificate checks (`--ca-cert`, `--insecure`), proxies (`HTTPS_PROXY`, `NO_PROXY`),
//! `allowed_connector_ips`, `max_connections`, the per-connector rate limits, and
//! `--admin-listen`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{Sink, TOKEN, Wcon, path, post, relay, temp_dir};

/// A CA and a certificate for `localhost` / 127.0.0.1 that it signed.
struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
}

fn pki(name: &str) -> Pki {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, format!("wcon test CA {name}"));
    ca.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Writes `pki`'s files into `dir` (by rename, as deploy tools do): cert.pem, key.pem, ca.pem.
fn install(pki: &Pki, dir: &Path) {
    for (name, text) in [
        ("ca.pem", &pki.ca_pem),
        ("key.pem", &pki.key_pem),
        ("cert.pem", &pki.cert_pem),
    ] {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// `wcon serve` with `--tls-cert DIR/tls/cert.pem --tls-key DIR/tls/key.pem` and `extra` flags.
/// With `by_env`, the files are given as `WEBHOOK_CONNECT_TLS_CERT` / `WEBHOOK_CONNECT_TLS_KEY`.
fn serve_tls(webhooks: &Value, dir: &Path, by_env: bool) -> Wcon {
    std::fs::write(
        dir.join("webhooks.json"),
        serde_json::to_vec(webhooks).unwrap(),
    )
    .unwrap();
    let (data, cert, key) = (
        dir.join("data"),
        dir.join("tls/cert.pem"),
        dir.join("tls/key.pem"),
    );
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let mut env = vec![("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-secret-token")];
    if by_env {
        env.push(("WEBHOOK_CONNECT_TLS_CERT", cert.to_str().unwrap()));
        env.push(("WEBHOOK_CONNECT_TLS_KEY", key.to_str().unwrap()));
    } else {
        args.extend(["--tls-cert", cert.to_str().unwrap()]);
        args.extend(["--tls-key", key.to_str().unwrap()]);
    }
    let mut w = Wcon::run_background_in_env(&args, dir, &env);
    let line = w.wait_for("listening on https://", Duration::from_secs(20));
    w.addr = Some(
        line.trim_start_matches("listening on https://")
            .parse()
            .unwrap(),
    );
    w
}

fn tunnel(server: &str, sink: &Sink, extra: &[&str], env: &[(&str, &str)]) -> Wcon {
    let target = sink.target();
    let mut args = vec!["tunnel", "c", "--to", &target, "--server", server];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("WCON_TOKEN", TOKEN));
    Wcon::run_background_in_env(&args, Path::new("."), &env)
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .no_proxy()
        .build()
        .unwrap()
}

/// Posts `n` numbered webhooks over HTTPS and waits until the sink has them all.
async fn relay_through(
    client: &reqwest::Client,
    addr: SocketAddr,
    sink: &Sink,
    from: usize,
    n: usize,
) {
    for i in from..from + n {
        let (status, body) = post(
            client,
            &format!("https://{addr}/webhook/hook"),
            json!({"n": i}).to_string().into_bytes(),
            &[],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
    sink.wait_until(Duration::from_secs(20), "the webhooks", |s| {
        s.delivered_bodies().len() >= from + n
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tls_serve_delivers_over_wss_and_sse_with_the_ca_and_sends_hsts() {
    let dir = temp_dir();
    std::fs::create_dir_all(path(&dir).join("tls")).unwrap();
    let first = pki("one");
    install(&first, &path(&dir).join("tls"));
    let serve = serve_tls(&relay("hook", "c", json!({})), &path(&dir), false);
    let addr = serve.addr.unwrap();
    let client = client_trusting(&first.ca_pem);

    let r = client
        .get(format!("https://{addr}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    // Plain HTTP on the TLS port gets no answer it could mistake for one.
    assert!(
        reqwest::Client::new()
            .get(format!("http://{addr}/health"))
            .send()
            .await
            .map(|r| !r.status().is_success())
            .unwrap_or(true)
    );

    let server = format!("https://{addr}");
    let ca = path(&dir).join("tls/ca.pem");
    let sink = Sink::start().await;
    let mut ws = tunnel(
        &server,
        &sink,
        &["--protocol", "websocket", "--ca-cert", ca.to_str().unwrap()],
        &[],
    );
    ws.wait_for("connected to https://", Duration::from_secs(20));
    relay_through(&client, addr, &sink, 0, 3).await;
    drop(ws);

    let mut sse = tunnel(
        &server,
        &sink,
        &["--protocol", "sse", "--ca-cert", ca.to_str().unwrap()],
        &[],
    );
    sse.wait_for("(sse)", Duration::from_secs(20));
    relay_through(&client, addr, &sink, 3, 3).await;
    assert!(
        !sse.output().iter().any(|l| l.contains("warning")),
        "{:#?}",
        sse.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_untrusted_certificate_is_refused_clearly_and_insecure_works_with_a_warning() {
    let dir = temp_dir();
    std::fs::create_dir_all(path(&dir).join("tls")).unwrap();
    let pki = pki("one");
    install(&pki, &path(&dir).join("tls"));
    let serve = serve_tls(&relay("hook", "c", json!({})), &path(&dir), false);
    let addr = serve.addr.unwrap();
    let server = format!("https://{addr}");
    let sink = Sink::start().await;

    for protocol in ["websocket", "sse", "long_poll"] {
        let mut refused = tunnel(&server, &sink, &["--protocol", protocol], &[]);
        let line = refused.wait_for("not trusted", Duration::from_secs(20));
        assert!(
            line.contains("--ca-cert") && line.contains("--insecure"),
            "{protocol}: {line}"
        );
        assert!(
            !refused.output().iter().any(|l| l.contains("connected to")),
            "{protocol}: {:#?}",
            refused.output()
        );
    }

    let mut insecure = tunnel(&server, &sink, &["--insecure"], &[]);
    insecure.wait_for("connected to https://", Duration::from_secs(20));
    assert!(
        insecure
            .output()
            .iter()
            .any(|l| l.starts_with("warning: TLS certificate verification is off")),
        "{:#?}",
        insecure.output()
    );
    relay_through(&client_trusting(&pki.ca_pem), addr, &sink, 0, 2).await;

    // A CA file that is not PEM stops the tunnel before it connects, as a usage error.
    std::fs::write(path(&dir).join("bad.pem"), "not a certificate").unwrap();
    let bad = path(&dir).join("bad.pem");
    let out = Wcon::run(
        &[
            "tunnel",
            "c",
            "--to",
            "3000",
            "--server",
            &server,
            "--token",
            TOKEN,
            "--ca-cert",
            bad.to_str().unwrap(),
        ],
        Path::new("."),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no PEM certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a fresh client trusting only `ca_pem` completes a request.
async fn trusted_by(ca_pem: &str, addr: SocketAddr) -> bool {
    client_trusting(ca_pem)
        .get(format!("https://{addr}/health"))
        .send()
        .await
        .is_ok()
}

async fn wait_trusted_by(ca_pem: &str, addr: SocketAddr, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !trusted_by(ca_pem, addr).await {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_changed_certificate_is_served_without_dropping_connections() {
    let dir = temp_dir();
    let tls_dir = path(&dir).join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let (one, two, three) = (pki("one"), pki("two"), pki("three"));
    install(&one, &tls_dir);
    let mut serve = serve_tls(&relay("hook", "c", json!({})), &path(&dir), false);
    let addr = serve.addr.unwrap();
    assert!(trusted_by(&one.ca_pem, addr).await);
    assert!(!trusted_by(&two.ca_pem, addr).await);

    // A tunnel that trusts every CA used here stays connected through the reloads.
    let cas = path(&dir).join("cas.pem");
    std::fs::write(
        &cas,
        format!("{}{}{}", one.ca_pem, two.ca_pem, three.ca_pem),
    )
    .unwrap();
    let sink = Sink::start().await;
    let mut t = tunnel(
        &format!("https://{addr}"),
        &sink,
        &["--ca-cert", cas.to_str().unwrap()],
        &[],
    );
    t.wait_for("connected to https://", Duration::from_secs(20));

    // The file watcher picks up new files.
    install(&two, &tls_dir);
    wait_trusted_by(&two.ca_pem, addr, "the new certificate after a file change").await;
    assert!(!trusted_by(&one.ca_pem, addr).await);
    serve.wait_for("tls certificate reloaded", Duration::from_secs(5));

    // A broken key is refused and the current certificate stays.
    std::fs::write(tls_dir.join("key.pem"), "garbage").unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(trusted_by(&two.ca_pem, addr).await);
    serve.wait_for("not reloaded", Duration::from_secs(5));

    // SIGHUP reloads too, and does not stop the server.
    install(&three, &tls_dir);
    let status = std::process::Command::new("kill")
        .args(["-HUP", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_trusted_by(&three.ca_pem, addr, "the new certificate after SIGHUP").await;
    assert!(serve.child.try_wait().unwrap().is_none(), "serve stopped");

    // The tunnel's connection was never dropped, and it still delivers.
    relay_through(&client_trusting(&three.ca_pem), addr, &sink, 0, 2).await;
    assert!(
        !t.output().iter().any(|l| l.contains("disconnected")),
        "{:#?}",
        t.output()
    );
}

/// An HTTP CONNECT proxy on 127.0.0.1 that records the targets it tunnelled to.
pub(crate) struct ConnectProxy {
    addr: SocketAddr,
    targets: Arc<Mutex<Vec<String>>>,
}

impl ConnectProxy {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            addr: listener.local_addr().unwrap(),
            targets: Arc::new(Mutex::new(Vec::new())),
        };
        let targets = proxy.targets.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let targets = targets.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 1024];
                    let end = loop {
                        let n = client.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 || head.len() > 16 * 1024 {
                            return;
                        }
                        head.extend_from_slice(&chunk[..n]);
                        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i + 4;
                        }
                    };
                    let text = String::from_utf8_lossy(&head[..end]).to_string();
                    let Some(target) = text
                        .lines()
                        .next()
                        .and_then(|l| l.strip_prefix("CONNECT "))
                        .and_then(|rest| rest.split(' ').next())
                        .map(str::to_string)
                    else {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    };
                    targets.lock().unwrap().push(target.clone());
                    let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = upstream.write_all(&head[end..]).await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                });
            }
        });
        proxy
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) fn tunnels_to(&self, addr: SocketAddr) -> usize {
        let want = addr.to_string();
        self.targets
            .lock()
            .unwrap()
            .iter()
            .filter(|t| **t == want)
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tunnel_goes_through_https_proxy_unless_no_proxy_says_otherwise() {
    let dir = temp_dir();
    std::fs::create_dir_all(path(&dir).join("tls")).unwrap();
    let pki = pki("one");
    install(&pki, &path(&dir).join("tls"));
    let serve = serve_tls(&relay("hook", "c", json!({})), &path(&dir), true);
    let addr = serve.addr.unwrap();
    let server = format!("https://{addr}");
    let ca = path(&dir).join("tls/ca.pem");
    let client = client_trusting(&pki.ca_pem);
    let proxy = ConnectProxy::start().await;
    let sink = Sink::start().await;
    let mut delivered = 0;

    for protocol in ["websocket", "sse", "long_poll"] {
        let before = proxy.tunnels_to(addr);
        let mut t = tunnel(
            &server,
            &sink,
            &["--protocol", protocol, "--ca-cert", ca.to_str().unwrap()],
            &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "")],
        );
        t.wait_for("connected to https://", Duration::from_secs(20));
        relay_through(&client, addr, &sink, delivered, 2).await;
        delivered += 2;
        assert!(
            proxy.tunnels_to(addr) > before,
            "{protocol} did not go through the proxy"
        );
        drop(t);
    }

    let before = proxy.tunnels_to(addr);
    let mut direct = tunnel(
        &server,
        &sink,
        &["--ca-cert", ca.to_str().unwrap()],
        &[("HTTPS_PROXY", &proxy.url()), ("NO_PROXY", "127.0.0.1")],
    );
    direct.wait_for("connected to https://", Duration::from_secs(20));
    relay_through(&client, addr, &sink, delivered, 2).await;
    assert_eq!(proxy.tunnels_to(addr), before, "NO_PROXY was not honoured");
}

fn code(body: &str) -> String {
    serde_json::from_str::<Value>(body).unwrap()["code"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connector_outside_allowed_connector_ips_gets_403_on_every_transport() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay(
            "hook",
            "c",
            json!({"allowed_connector_ips": ["10.0.0.0/8", "2001:db8::/32"]}),
        ),
        &path(&dir),
        &[],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let requests = [
        ("websocket", client.get(serve.url("/connect/stream/c"))),
        ("sse", client.get(serve.url("/connect/stream/c/sse"))),
        (
            "poll",
            client.get(serve.url("/connect/stream/c/poll?timeout=1")),
        ),
        (
            "ack",
            client
                .post(serve.url("/connect/ack"))
                .header("x-connection-id", "sse_000000000001")
                .json(&json!({"message_id": "msg_0000000000000001"})),
        ),
        ("status", client.get(serve.url("/connect/status/c"))),
    ];
    for (what, request) in requests {
        let refused = request
            .try_clone()
            .unwrap()
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "{what}");
        let body = refused.text().await.unwrap();
        assert_eq!(code(&body), "address_not_allowed", "{what}: {body}");
        assert!(body.contains("127.0.0.1"), "{what}: {body}");
        // A wrong token learns nothing about the channel's address list.
        let wrong = request.bearer_auth("not-the-token").send().await.unwrap();
        assert_eq!(wrong.status(), 401, "{what}");
    }

    // A real WebSocket handshake is refused before the upgrade.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/connect/stream/c",
            serve.addr.unwrap()
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("expected a 403 refusal, got {:?}", other.map(|_| ())),
    }

    // The tunnel says why instead of blaming the token.
    let sink = Sink::start().await;
    let mut t = tunnel(
        &format!("http://{}", serve.addr.unwrap()),
        &sink,
        &["--protocol", "sse"],
        &[],
    );
    t.wait_for("allowed_connector_ips", Duration::from_secs(20));
}

/// Opens an SSE stream and returns it with its connection id.
async fn open_sse(client: &reqwest::Client, serve: &Wcon) -> (reqwest::Response, String) {
    let mut r = client
        .get(serve.url("/connect/stream/c/sse"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let id = serde_json::from_str::<Value>(data).unwrap()["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    (r, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_connections_and_the_per_connector_rate_limits_are_enforced() {
    let dir = temp_dir();
    let serve = Wcon::serve(
        &relay(
            "hook",
            "c",
            json!({"max_connections": 2, "max_connections_per_minute": 3, "max_messages_per_second": 1}),
        ),
        &path(&dir),
        &[],
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (first, id) = open_sse(&client, &serve).await;
    let (second, _) = open_sse(&client, &serve).await;

    // A third connection while two are open: the channel is full.
    let full = client
        .get(serve.url("/connect/stream/c/sse"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(full.status(), 503);
    assert!(full.headers().contains_key("retry-after"));
    assert_eq!(code(&full.text().await.unwrap()), "max_connections");

    // The fourth attempt this minute from this address: too fast, before anything else.
    let fast = client
        .get(serve.url("/connect/stream/c/sse"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(fast.status(), 429);
    let wait: u64 = fast.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(code(&fast.text().await.unwrap()), "rate_limited");

    // One message a second on a connection: the second ack at once gets 429.
    let ack = || {
        client
            .post(serve.url("/connect/ack"))
            .bearer_auth(TOKEN)
            .header("x-connection-id", &id)
            .json(&json!({"message_id": "msg_0000000000000001"}))
            .send()
    };
    assert_eq!(
        ack().await.unwrap().status(),
        404,
        "not in flight, but counted"
    );
    let limited = ack().await.unwrap();
    assert_eq!(limited.status(), 429);
    assert_eq!(code(&limited.text().await.unwrap()), "rate_limited");
    drop((first, second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_can_have_its_own_listener() {
    let dir = temp_dir();
    std::fs::write(
        path(&dir).join("webhooks.json"),
        relay("hook", "c", json!({})).to_string(),
    )
    .unwrap();
    let data = path(&dir).join("data");
    let mut serve = Wcon::run_background_in_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &path(&dir),
        &[("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-secret-token")],
    );
    let public = serve.wait_for("listening on http://", Duration::from_secs(20));
    let public = public
        .trim_start_matches("listening on http://")
        .to_string();
    let admin = serve.wait_for("admin API on http://", Duration::from_secs(5));
    let admin = admin.trim_start_matches("admin API on http://").to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let get = |base: &str| {
        client
            .get(format!("http://{base}/admin/webhook-connect/channels"))
            .bearer_auth("admin-secret-token")
            .send()
    };
    assert_eq!(get(&public).await.unwrap().status(), 404);
    let answer = get(&admin).await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.text().await.unwrap().contains("\"c\""));
    // The public listener still takes webhooks; the admin one does not.
    let (status, _) = post(
        &client,
        &format!("http://{public}/webhook/hook"),
        b"{}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = post(
        &client,
        &format!("http://{admin}/webhook/hook"),
        b"{}".to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_appears_in_any_log_even_at_trace_level() {
    const ADMIN: &str = "adm_S3cr3t_admin_never_logged_01";
    const CH_A: &str = "ch_tok_S3cr3t_a_never_logged_02";
    const CH_B: &str = "ch_tok_S3cr3t_b_never_logged_03";
    const HMAC: &str = "whsec_S3cr3t_hmac_never_logged_04";
    const SENDER: &str = "snd_S3cr3t_bearer_never_logged_05";
    const WRONG_CHANNEL: &str = "ch_tok_S3cr3t_wrong_never_logged_06";
    const WRONG_ADMIN: &str = "adm_S3cr3t_wrong_never_logged_07";
    let secrets = [ADMIN, CH_A, CH_B, HMAC, SENDER, WRONG_CHANNEL, WRONG_ADMIN];
    let log = ("RUST_LOG", "debug,wcon=trace");

    let dir = temp_dir();
    let webhooks = json!({
        "signed": {
            "module": "webhook_connect",
            "module-config": {"channel": "a", "channel_token": CH_A},
            "hmac": {"secret": HMAC, "format": "github"},
        },
        "bearer": {
            "module": "webhook_connect",
            "module-config": {"channel": "b", "channel_token": CH_B},
            "authorization": format!("Bearer {SENDER}"),
        },
    });
    let mut serve = Wcon::serve(
        &webhooks,
        &path(&dir),
        &[("WEBHOOK_CONNECT_ADMIN_TOKEN", ADMIN), log],
    );
    let server = format!("http://{}", serve.addr.unwrap());
    let (ok_sink, failing_sink) = (Sink::start().await, Sink::start().await);
    failing_sink.set_status(422);
    let mut tunnels = Vec::new();
    for (channel, token, sink) in [("a", CH_A, &ok_sink), ("b", CH_B, &failing_sink)] {
        let target = sink.target();
        let mut t = Wcon::run_background_in_env(
            &["tunnel", channel, "--to", &target, "--server", &server],
            Path::new("."),
            &[("WCON_TOKEN", token), log],
        );
        t.wait_for("connected to", Duration::from_secs(20));
        tunnels.push(t);
    }
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    // A signed webhook is delivered; a forged one is refused.
    let body = br#"{"event":"push"}"#.to_vec();
    let signature = crate::support::github_signature(HMAC, &body);
    let (status, text) = post(
        &client,
        &serve.url("/webhook/signed"),
        body.clone(),
        &[("x-hub-signature-256", signature)],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let forged = crate::support::github_signature(WRONG_CHANNEL, &body);
    let (status, _) = post(
        &client,
        &serve.url("/webhook/signed"),
        body.clone(),
        &[("x-hub-signature-256", forged)],
    )
    .await;
    assert_eq!(status, 401);
    ok_sink
        .wait_until(Duration::from_secs(20), "the signed webhook", |s| {
            s.count() == 1
        })
        .await;

    // A webhook with the sender's bearer token becomes a dead letter (the target answers 422).
    let (status, text) = post(
        &client,
        &serve.url("/webhook/bearer"),
        br#"{"order":1}"#.to_vec(),
        &[("authorization", format!("Bearer {SENDER}"))],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let dead_letters = serve.url("/admin/webhook-connect/channels/b/dead-letters");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v: Value = client
            .get(&dead_letters)
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["count"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no dead letter: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Refused tokens: the admin API's and a channel's.
    let refused = client
        .get(serve.url("/admin/webhook-connect/channels"))
        .bearer_auth(WRONG_ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mut wrong = Wcon::run_background_in_env(
        &["tunnel", "a", "--to", "3000", "--server", &server],
        Path::new("."),
        &[("WCON_TOKEN", WRONG_CHANNEL), log],
    );
    wrong.wait_for("refused the channel token", Duration::from_secs(20));
    let sse = client
        .get(serve.url(&format!("/connect/stream/a/sse?token={WRONG_CHANNEL}")))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 401);

    // Stop everything so every line is flushed, then look at all of it.
    for t in tunnels.iter_mut().chain([&mut wrong]) {
        t.terminate();
    }
    serve.terminate();
    let mut all: Vec<(String, String)> = Vec::new();
    for (who, w) in [
        ("serve", &serve),
        ("tunnel a", &tunnels[0]),
        ("tunnel b", &tunnels[1]),
        ("wrong tunnel", &wrong),
    ] {
        all.extend(w.output().into_iter().map(|l| (who.to_string(), l)));
    }
    assert!(
        all.iter()
            .filter(|(who, l)| who == "serve" && l.contains("DEBUG"))
            .count()
            > 5
            && all.iter().any(|(who, l)| who.starts_with("tunnel")
                && (l.contains("TRACE") || l.contains("DEBUG"))),
        "debug logging was not on: {all:#?}"
    );
    for secret in secrets {
        let leaks: Vec<_> = all.iter().filter(|(_, l)| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "`{secret}` was logged: {leaks:#?}");
    }
}
