//! Client certificates (mutual TLS) for connectors: `serve --tls-client-ca`, the channel options
//! `require_client_cert` / `client_cert_subjects`, and `tunnel --client-cert/--client-key` on
//! every transport, with certificates made here by rcgen.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Sink, TOKEN, Wcon, path, post, temp_dir};

/// A CA that signs certificates.
struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("wcon test CA {name}"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        Self {
            issuer: rcgen::CertifiedIssuer::self_signed(
                params,
                rcgen::KeyPair::generate().unwrap(),
            )
            .unwrap(),
        }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for `names` (DNS SANs), with `cn` as the subject CN.
    fn sign(&self, cn: &str, names: &[&str], client: bool) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        if client {
            params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        }
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// Every file of a test: server CA, server pair, client CA, and the connectors' pairs.
struct Files {
    server_ca: PathBuf,
    server_ca_pem: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_ca: PathBuf,
    /// connector-a, signed by the client CA (allowed on `secure`).
    a: (PathBuf, PathBuf),
    /// connector-b, signed by the client CA (not in `client_cert_subjects`).
    b: (PathBuf, PathBuf),
    /// connector-a again, but signed by another CA.
    stranger: (PathBuf, PathBuf),
    /// The bytes of connector-a's key, which must never be printed.
    a_key_pem: String,
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn files(dir: &Path) -> Files {
    let dir = dir.join("pki");
    std::fs::create_dir_all(&dir).unwrap();
    let server_ca = Ca::new("server");
    let client_ca = Ca::new("clients");
    let other_ca = Ca::new("other");
    let (server_cert, server_key) = server_ca.sign("localhost", &["localhost", "127.0.0.1"], false);
    let (a_cert, a_key) = client_ca.sign("connector-a", &["connector-a"], true);
    let (b_cert, b_key) = client_ca.sign("connector-b", &["connector-b.example.com"], true);
    let (s_cert, s_key) = other_ca.sign("connector-a", &["connector-a"], true);
    Files {
        server_ca: write(&dir, "server-ca.pem", &server_ca.pem()),
        server_ca_pem: server_ca.pem(),
        server_cert: write(&dir, "server.pem", &server_cert),
        server_key: write(&dir, "server.key", &server_key),
        client_ca: write(&dir, "client-ca.pem", &client_ca.pem()),
        a: (write(&dir, "a.pem", &a_cert), write(&dir, "a.key", &a_key)),
        b: (write(&dir, "b.pem", &b_cert), write(&dir, "b.key", &b_key)),
        stranger: (write(&dir, "s.pem", &s_cert), write(&dir, "s.key", &s_key)),
        a_key_pem: a_key,
    }
}

/// Two relay webhooks: `secure` (client certificate of connector-a required) and `open`.
fn webhooks() -> Value {
    json!({
        "secure": {"module": "webhook_connect", "module-config": {
            "channel": "secure", "channel_token": TOKEN,
            "require_client_cert": true, "client_cert_subjects": ["connector-a"]}},
        "open": {"module": "webhook_connect", "module-config": {
            "channel": "open", "channel_token": TOKEN}}
    })
}

/// `wcon serve` with TLS, the client CA given by its variable.
fn serve(dir: &Path, f: &Files) -> Wcon {
    std::fs::write(
        dir.join("webhooks.json"),
        serde_json::to_vec(&webhooks()).unwrap(),
    )
    .unwrap();
    let data = dir.join("data");
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--tls-cert",
        f.server_cert.to_str().unwrap(),
        "--tls-key",
        f.server_key.to_str().unwrap(),
    ];
    let env = [
        ("WEBHOOK_CONNECT_ADMIN_TOKEN", "admin-secret-token"),
        (
            "WEBHOOK_CONNECT_TLS_CLIENT_CA",
            f.client_ca.to_str().unwrap(),
        ),
    ];
    let mut w = Wcon::run_background_in_env(&args, dir, &env);
    let line = w.wait_for("listening on https://", Duration::from_secs(20));
    w.addr = Some(
        line.trim_start_matches("listening on https://")
            .parse()
            .unwrap(),
    );
    w
}

/// `wcon tunnel CHANNEL` trusting the server CA, with `extra` flags.
fn tunnel(channel: &str, serve: &Wcon, f: &Files, sink: &Sink, extra: &[&str]) -> Wcon {
    tunnel_env(channel, serve, f, sink, extra, &[])
}

/// [`tunnel`] with extra environment variables.
fn tunnel_env(
    channel: &str,
    serve: &Wcon,
    f: &Files,
    sink: &Sink,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Wcon {
    let server = format!("https://{}", serve.addr.unwrap());
    let target = sink.target();
    let mut args = vec![
        "tunnel",
        channel,
        "--to",
        &target,
        "--server",
        &server,
        "--ca-cert",
        f.server_ca.to_str().unwrap(),
        "--log-level",
        "info",
    ];
    args.extend_from_slice(extra);
    let mut env = env.to_vec();
    env.push(("WCON_TOKEN", TOKEN));
    Wcon::run_background_in_env(&args, Path::new("."), &env)
}

/// A client trusting the server CA, presenting `identity` if given.
fn client(f: &Files, identity: Option<&(PathBuf, PathBuf)>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(f.server_ca_pem.as_bytes()).unwrap())
        .no_proxy();
    if let Some((cert, key)) = identity {
        let mut pem = std::fs::read(cert).unwrap();
        pem.extend(std::fs::read(key).unwrap());
        b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    b.build().unwrap()
}

async fn post_to(client: &reqwest::Client, serve: &Wcon, id: &str, n: usize) {
    let url = format!("https://{}/webhook/{id}", serve.addr.unwrap());
    let (status, body) = post(client, &url, json!({"n": n}).to_string().into_bytes(), &[]).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_allowed_certificate_streams_on_every_transport_and_other_channels_need_none() {
    let dir = temp_dir();
    let f = files(&path(&dir));
    let serve = serve(&path(&dir), &f);
    // Webhook senders have no certificate: ingest works without one.
    let sender = client(&f, None);
    let sink = Sink::start().await;
    let (cert, key) = (f.a.0.to_str().unwrap(), f.a.1.to_str().unwrap());
    let mut delivered = 0;
    for protocol in ["websocket", "sse", "long_poll"] {
        let mut t = tunnel(
            "secure",
            &serve,
            &f,
            &sink,
            &[
                "--protocol",
                protocol,
                "--client-cert",
                cert,
                "--client-key",
                key,
            ],
        );
        t.wait_for(&format!("({protocol})"), Duration::from_secs(20));
        post_to(&sender, &serve, "secure", delivered).await;
        delivered += 1;
        sink.wait_until(Duration::from_secs(20), protocol, |s| {
            s.delivered_bodies().len() >= delivered
        })
        .await;
        let output = t.output().join("\n");
        assert!(!output.contains(&f.a_key_pem[40..80]), "{output}");
    }
    // Through an HTTPS proxy (CONNECT), the certificate is presented end to end.
    let proxy = crate::security::ConnectProxy::start().await;
    let proxy_url = proxy.url();
    for protocol in ["websocket", "sse", "long_poll"] {
        let before = proxy.tunnels_to(serve.addr.unwrap());
        let mut t = tunnel_env(
            "secure",
            &serve,
            &f,
            &sink,
            &[
                "--protocol",
                protocol,
                "--client-cert",
                cert,
                "--client-key",
                key,
            ],
            &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "")],
        );
        t.wait_for(&format!("({protocol})"), Duration::from_secs(20));
        post_to(&sender, &serve, "secure", delivered).await;
        delivered += 1;
        sink.wait_until(Duration::from_secs(20), protocol, |s| {
            s.delivered_bodies().len() >= delivered
        })
        .await;
        assert!(
            proxy.tunnels_to(serve.addr.unwrap()) > before,
            "{protocol} did not go through the proxy"
        );
    }
    // The same certificate given by the environment (precedence: flags > env > file).
    let server = format!("https://{}", serve.addr.unwrap());
    let target = sink.target();
    let mut t = Wcon::run_background_in_env(
        &[
            "tunnel",
            "secure",
            "--to",
            &target,
            "--server",
            &server,
            "--ca-cert",
            f.server_ca.to_str().unwrap(),
        ],
        Path::new("."),
        &[
            ("WCON_TOKEN", TOKEN),
            ("CONNECTOR_CLIENT_CERT_PATH", cert),
            ("CONNECTOR_CLIENT_KEY_PATH", key),
        ],
    );
    t.wait_for("connected to", Duration::from_secs(20));
    post_to(&sender, &serve, "secure", delivered).await;
    delivered += 1;
    sink.wait_until(Duration::from_secs(20), "env certificate", |s| {
        s.delivered_bodies().len() >= delivered
    })
    .await;
    drop(t);

    // A channel without the option works without a certificate on the same server.
    let mut open = tunnel("open", &serve, &f, &sink, &["--protocol", "sse"]);
    open.wait_for("(sse)", Duration::from_secs(20));
    post_to(&sender, &serve, "open", delivered).await;
    sink.wait_until(Duration::from_secs(20), "the open channel", |s| {
        s.delivered_bodies().len() > delivered
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connectors_without_an_allowed_certificate_are_refused_clearly() {
    let dir = temp_dir();
    let f = files(&path(&dir));
    let serve = serve(&path(&dir), &f);
    let addr = serve.addr.unwrap();
    let sender = client(&f, None);
    post_to(&sender, &serve, "secure", 0).await;

    // Every transport, ack and status refuse before anything is leased: no certificate, then
    // a certificate of the right CA whose name is not listed.
    for (identity, code) in [
        (None, "client_certificate_required"),
        (Some(&f.b), "client_certificate_not_allowed"),
    ] {
        let c = client(&f, identity);
        for (method, path) in [
            ("GET", "/connect/stream/secure"),
            ("GET", "/connect/stream/secure/sse"),
            ("GET", "/connect/stream/secure/poll?timeout=1"),
            ("GET", "/connect/status/secure"),
            (
                "POST",
                "/connect/ack?channel=secure&message_id=m&connection_id=x",
            ),
        ] {
            let url = format!("https://{addr}{path}");
            let req = if method == "GET" {
                c.get(&url)
            } else {
                c.post(&url)
            };
            let r = req.bearer_auth(TOKEN).send().await.unwrap();
            assert_eq!(r.status(), 403, "{path}");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["code"], code, "{path}: {body}");
        }
        // The token is still checked first.
        let r = c
            .get(format!(
                "https://{addr}/connect/stream/secure/poll?timeout=1"
            ))
            .bearer_auth("wrong-token-0123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    // Nothing was leased: connector-a still gets the message, by long-poll here.
    let a = client(&f, Some(&f.a));
    let r = a
        .get(format!(
            "https://{addr}/connect/stream/secure/poll?timeout=5"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let polled: Value = r.json().await.unwrap();
    assert_eq!(
        polled["messages"].as_array().map(Vec::len),
        Some(1),
        "{polled}"
    );
    // The admin API needs no client certificate.
    let r = sender
        .get(format!("https://{addr}/admin/webhook-connect/channels"))
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The tunnel says why and what to do: no certificate...
    let sink = Sink::start().await;
    let mut none = tunnel("secure", &serve, &f, &sink, &[]);
    let line = none.wait_for("client_certificate_required", Duration::from_secs(20));
    assert!(line.contains("--client-cert"), "{line}");
    drop(none);
    // ... a certificate of another CA fails the handshake, on a WebSocket and over HTTP.
    let (cert, key) = (
        f.stranger.0.to_str().unwrap(),
        f.stranger.1.to_str().unwrap(),
    );
    for protocol in ["websocket", "sse", "long_poll"] {
        let mut stranger = tunnel(
            "secure",
            &serve,
            &f,
            &sink,
            &[
                "--protocol",
                protocol,
                "--client-cert",
                cert,
                "--client-key",
                key,
            ],
        );
        let line = stranger.wait_for(
            "refused our TLS client certificate",
            Duration::from_secs(20),
        );
        assert!(line.contains("--tls-client-ca"), "{protocol}: {line}");
    }
    assert_eq!(sink.count(), 0);

    // `tunnel --check` reports each case on the server line.
    let server = format!("https://{addr}");
    let check = |extra: &[&str]| {
        let mut args = vec![
            "tunnel",
            "secure",
            "--to",
            "127.0.0.1:9",
            "--server",
            &server,
            "--token",
            TOKEN,
            "--ca-cert",
            f.server_ca.to_str().unwrap(),
            "--check",
        ];
        args.extend_from_slice(extra);
        let out = Wcon::run(&args, Path::new("."));
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let server_line = stdout
            .lines()
            .find(|l| l.contains(" server:"))
            .unwrap_or_default()
            .to_string();
        (server_line, stdout)
    };
    let (line, all) = check(&[]);
    assert!(
        line.starts_with("FAIL") && line.contains("requires a TLS client certificate"),
        "{all}"
    );
    let (line, all) = check(&["--client-cert", cert, "--client-key", key]);
    assert!(
        line.starts_with("FAIL") && line.contains("refused our TLS client certificate"),
        "{all}"
    );
    let (b_cert, b_key) = (f.b.0.to_str().unwrap(), f.b.1.to_str().unwrap());
    let (line, all) = check(&["--client-cert", b_cert, "--client-key", b_key]);
    assert!(
        line.starts_with("FAIL") && line.contains("client_certificate_not_allowed"),
        "{all}"
    );
    let (a_cert, a_key) = (f.a.0.to_str().unwrap(), f.a.1.to_str().unwrap());
    let (line, all) = check(&["--client-cert", a_cert, "--client-key", a_key]);
    assert!(line.starts_with("ok"), "{all}");
}

#[test]
fn unusable_certificate_settings_stop_with_exit_2() {
    let dir = temp_dir();
    let f = files(&path(&dir));
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"));
        cmd.args(args).current_dir(path(&dir));
        for k in ["WCON_SERVER", "WCON_TOKEN", "CONNECTOR_TOKEN"] {
            cmd.env_remove(k);
        }
        cmd.envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        // Bounded: a serve that wrongly starts is killed after 30 s and the test fails.
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // A key that is not the certificate's: named, with what to do, and never printed.
    let (code, err) = run(
        &[
            "tunnel",
            "secure",
            "--to",
            "127.0.0.1:9",
            "--server",
            "https://127.0.0.1:9",
            "--token",
            TOKEN,
            "--client-cert",
            f.b.0.to_str().unwrap(),
            "--client-key",
            f.a.1.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("a.key") && err.contains("cannot be used together"),
        "{err}"
    );
    assert!(!err.contains(&f.a_key_pem[40..80]), "{err}");
    let (code, err) = run(
        &[
            "tunnel",
            "secure",
            "--to",
            "127.0.0.1:9",
            "--server",
            "https://127.0.0.1:9",
            "--token",
            TOKEN,
            "--client-cert",
            "/nonexistent/a.pem",
            "--client-key",
            f.a.1.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("/nonexistent/a.pem") && err.contains("--client-cert"),
        "{err}"
    );
    // A certificate without its key (here from the environment).
    let (code, err) = run(
        &[
            "tunnel",
            "secure",
            "--to",
            "127.0.0.1:9",
            "--server",
            "https://127.0.0.1:9",
            "--token",
            TOKEN,
        ],
        &[("CONNECTOR_CLIENT_CERT_PATH", f.a.0.to_str().unwrap())],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("client_key_path"), "{err}");

    // A channel requiring client certificates on a server that cannot verify them.
    std::fs::write(
        path(&dir).join("webhooks.json"),
        serde_json::to_vec(&webhooks()).unwrap(),
    )
    .unwrap();
    let data = path(&dir).join("data");
    let base = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
    ];
    let (code, err) = run(&base, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`secure`") && err.contains("--tls-client-ca") && err.contains("--tls-cert"),
        "{err}"
    );
    let mut with_tls = base.to_vec();
    with_tls.extend([
        "--tls-cert",
        f.server_cert.to_str().unwrap(),
        "--tls-key",
        f.server_key.to_str().unwrap(),
    ]);
    let (code, err) = run(&with_tls, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("`secure`") && err.contains("--tls-client-ca") && !err.contains("--tls-cert"),
        "{err}"
    );
    // A client CA file without a certificate.
    let mut bad_ca = with_tls.clone();
    bad_ca.extend(["--tls-client-ca", f.a.1.to_str().unwrap()]);
    let (code, err) = run(&bad_ca, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("a.key") && err.contains("no PEM CA certificate"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_requires_client_certificates_without_a_client_ca_is_refused() {
    let dir = temp_dir();
    let open = json!({"open": webhooks()["open"].clone()});
    let mut serve = Wcon::serve(&open, &path(&dir), &[]);
    std::fs::write(
        path(&dir).join("webhooks.json"),
        serde_json::to_vec(&webhooks()).unwrap(),
    )
    .unwrap();
    let line = serve.wait_for("reload refused", Duration::from_secs(20));
    assert!(
        line.contains("`secure`") && line.contains("--tls-client-ca"),
        "{line}"
    );
    // The running configuration stays: `secure` does not exist, `open` still does.
    let client = reqwest::Client::new();
    for (channel, expected) in [("open", 200), ("secure", 401)] {
        let r = client
            .get(serve.url(&format!("/connect/status/{channel}")))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), expected, "{channel}");
    }
}

/// A client certificate renewed on disk is presented from the next connection on, without a
/// restart: the tunnel starts with connector-b's pair (not allowed on `secure`), the files are
/// replaced by connector-a's, and the next attempt connects and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_renewed_client_certificate_is_used_on_the_next_connection() {
    let dir = temp_dir();
    let f = files(&path(&dir));
    let serve = serve(&path(&dir), &f);
    let cert = path(&dir).join("pki/renewed.pem");
    let key = path(&dir).join("pki/renewed.key");
    std::fs::copy(&f.b.0, &cert).unwrap();
    std::fs::copy(&f.b.1, &key).unwrap();
    let sink = Sink::start().await;
    let mut t = tunnel_env(
        "secure",
        &serve,
        &f,
        &sink,
        &[
            "--client-cert",
            cert.to_str().unwrap(),
            "--client-key",
            key.to_str().unwrap(),
        ],
        &[
            ("CONNECTOR_RECONNECT_DELAY", "0.2"),
            ("CONNECTOR_MAX_RECONNECT_DELAY", "1"),
        ],
    );
    t.wait_for("client_certificate_not_allowed", Duration::from_secs(20));
    // Renewal writes the new pair in place (key first, as certificate tools do).
    std::fs::copy(&f.a.1, &key).unwrap();
    std::fs::copy(&f.a.0, &cert).unwrap();
    t.wait_for("channel secure (websocket)", Duration::from_secs(30));
    post_to(&client(&f, None), &serve, "secure", 7).await;
    sink.wait_until(Duration::from_secs(20), "the webhook, after renewal", |s| {
        s.delivered_bodies().len() == 1
    })
    .await;
}
