//! `wcon init --yes` for every provider preset, checked with `serve --check` / `tunnel --check`,
//! then a signed `wcon send` relayed end to end: real serve, real tunnel (HTTP and module
//! mode), and a local HTTP app that checks the provider's signature over the bytes it got.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::Value;

use crate::support::*;

fn run(args: &[&str], cwd: &Path) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .args(args)
        .current_dir(cwd)
        .env_remove("WCON_SERVER")
        .env_remove("WCON_TOKEN")
        .env_remove("WCON_PROFILE")
        .env_remove("WCON_HMAC_SECRET")
        .env_remove("WEBHOOK_CONNECT_ADMIN_TOKEN")
        .env("WCON_CONFIG_DIR", cwd.join("no-config"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("wcon runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn hmac_sha256(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// What the app does: checks the provider's signature over the body it received.
fn signature_is_valid(provider: &str, secret: &str, r: &Received) -> bool {
    let body = &r.body[..];
    match provider {
        "stripe" => {
            let header = r.header("stripe-signature");
            let t = header
                .split(',')
                .find_map(|p| p.strip_prefix("t="))
                .unwrap_or("");
            let v1 = header
                .split(',')
                .find_map(|p| p.strip_prefix("v1="))
                .unwrap_or("");
            !t.is_empty() && hex::encode(hmac_sha256(secret, &[t.as_bytes(), b".", body])) == v1
        }
        "github" => {
            r.header("x-hub-signature-256")
                == format!("sha256={}", hex::encode(hmac_sha256(secret, &[body])))
        }
        "shopify" => {
            r.header("x-shopify-hmac-sha256")
                == base64::engine::general_purpose::STANDARD.encode(hmac_sha256(secret, &[body]))
        }
        _ => r.header("x-hmac-signature") == hex::encode(hmac_sha256(secret, &[body])),
    }
}

/// `wcon serve` in `dir` with the files there, on 127.0.0.1:0.
fn serve_in(dir: &Path) -> Wcon {
    let data = dir.join("data");
    let mut w = Wcon::run_background_in_env(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        dir,
        &[],
    );
    let line = w.wait_for("listening on http://", Duration::from_secs(20));
    w.addr = Some(
        line.trim_start_matches("listening on http://")
            .parse()
            .unwrap(),
    );
    w
}

async fn preset_relays_a_signed_send(provider: &str, mode: &str) {
    let root = temp_dir();
    let receiver = root.path().join("receiver");
    let connector = root.path().join("connector");
    std::fs::create_dir_all(&receiver).unwrap();
    std::fs::create_dir_all(&connector).unwrap();

    let (code, stdout, stderr) = run(
        &[
            "init",
            "--role",
            "receiver",
            "--provider",
            provider,
            "--yes",
        ],
        &receiver,
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("wrote ./webhooks.json"), "{stdout}");
    let webhooks: Value =
        serde_json::from_slice(&std::fs::read(receiver.join("webhooks.json")).unwrap()).unwrap();
    let hook = &webhooks[provider];
    let channel = hook["module-config"]["channel"]
        .as_str()
        .unwrap()
        .to_string();
    let token = hook["module-config"]["channel_token"]
        .as_str()
        .unwrap()
        .to_string();
    let secret = hook["hmac"]["secret"].as_str().unwrap().to_string();
    assert!(
        token.starts_with("ch_tok_") && token.len() == 55,
        "a strong token: {token}"
    );
    assert!(stdout.contains(&token), "the token is shown once: {stdout}");

    let (code, stdout, stderr) = run(&["serve", "--check"], &receiver);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok    webhooks.json"), "{stdout}");

    let serve = serve_in(&receiver);
    let sink = Sink::start().await;
    let server = serve.url("");
    let target = sink.target();
    let (code, _, stderr) = run(
        &[
            "init",
            "--role",
            "connector",
            "--mode",
            mode,
            "--server",
            &server,
            "--channel",
            &channel,
            "--token",
            &token,
            "--target",
            &target,
            "--webhook-id",
            provider,
            "--yes",
        ],
        &connector,
    );
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = run(
        &["tunnel", "--config", "connector.json", "--check"],
        &connector,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok    server") && stdout.contains("accepts the token"),
        "{stdout}"
    );
    if mode == "http" {
        assert!(stdout.contains("ok    target"), "{stdout}");
    }

    let mut tunnel =
        Wcon::run_background_in_env(&["tunnel", "--config", "connector.json"], &connector, &[]);
    tunnel.wait_for("connected to", Duration::from_secs(20));

    let send_provider = if provider == "hmac" {
        "plain"
    } else {
        provider
    };
    let body = format!(r#"{{"preset":"{provider}","amount":4200}}"#);
    let (code, stdout, stderr) = run(
        &[
            "send",
            provider,
            "--server",
            &server,
            "--hmac-secret",
            &secret,
            "--provider",
            send_provider,
            "--data",
            &body,
        ],
        &connector,
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.starts_with("200 OK"), "{stdout}");
    sink.wait_until(Duration::from_secs(20), "the relayed webhook", |s| {
        s.all()
            .iter()
            .any(|r| !r.header("x-webhook-message-id").is_empty())
    })
    .await;
    // `tunnel --check` sent a HEAD to the target first; the webhook is the one with an id.
    let got = sink
        .all()
        .into_iter()
        .find(|r| !r.header("x-webhook-message-id").is_empty())
        .expect("the relayed webhook");
    let got = &got;
    assert_eq!(&got.body[..], body.as_bytes(), "byte for byte");
    assert!(
        signature_is_valid(provider, &secret, got),
        "{provider}: the app verifies the signature: {:?}",
        got.headers
    );

    // A wrong secret is refused by the receiver, and `send` says so with exit 1.
    let (code, stdout, _) = run(
        &[
            "send",
            provider,
            "--server",
            &server,
            "--hmac-secret",
            "not-the-secret",
            "--provider",
            send_provider,
        ],
        &connector,
    );
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.starts_with("401"), "{stdout}");
    if provider == "stripe" {
        let (code, stdout, _) = run(
            &[
                "send",
                provider,
                "--server",
                &server,
                "--hmac-secret",
                "not-the-secret",
                "--provider",
                send_provider,
                "--json",
            ],
            &connector,
        );
        assert_eq!(code, 1);
        insta::assert_snapshot!("send_refused_json", stdout);
    }
    drop(tunnel);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_stripe_http() {
    preset_relays_a_signed_send("stripe", "http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_github_module() {
    preset_relays_a_signed_send("github", "module").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_shopify_module() {
    preset_relays_a_signed_send("shopify", "module").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_hmac_http() {
    preset_relays_a_signed_send("hmac", "http").await;
}

#[tokio::test]
async fn init_refuses_to_overwrite_and_to_ask_without_a_terminal() {
    let dir = temp_dir();
    let (code, _, stderr) = run(&["init"], dir.path());
    assert_eq!(code, 2);
    assert!(stderr.contains("--yes"), "{stderr}");
    let (code, _, stderr) = run(&["init", "--yes"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    let first = std::fs::read(dir.path().join("webhooks.json")).unwrap();
    let (code, _, stderr) = run(&["init", "--yes"], dir.path());
    assert_eq!(code, 2);
    assert!(
        stderr.contains("already exist") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("webhooks.json")).unwrap(),
        first,
        "nothing was overwritten"
    );
    let (code, _, stderr) = run(&["init", "--yes", "--force"], dir.path());
    assert_eq!(code, 0, "{stderr}");
    assert_ne!(
        std::fs::read(dir.path().join("webhooks.json")).unwrap(),
        first,
        "a new token was written"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("webhooks.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "it holds secrets: {mode:o}");
    }
    let (code, _, stderr) = run(&["init", "--yes", "--channel", "bad name"], dir.path());
    assert_eq!(code, 2, "{stderr}");
}

#[tokio::test]
async fn checks_fail_with_exit_1_and_say_which_item() {
    let dir = temp_dir();
    // A connection nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("connections.json"),
        format!(r#"{{"cache": {{"type": "redis", "host": "127.0.0.1", "port": {port}}}}}"#),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("webhooks.json"),
        serde_json::to_vec(&relay("hook", "ops", serde_json::json!({}))).unwrap(),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&["serve", "--check"], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains("ok    webhooks.json")
            && stdout.contains("FAIL  connection `cache` (redis)")
            && stdout.contains(&format!("127.0.0.1:{port}")),
        "{stdout}"
    );
    std::fs::write(
        dir.path().join("webhooks.json"),
        b"{\"hook\": {\"module\": \"kafak\"}}",
    )
    .unwrap();
    let (code, stdout, _) = run(&["serve", "--check"], dir.path());
    assert_eq!(code, 1);
    assert!(stdout.contains("FAIL  webhooks.json"), "{stdout}");

    // A tunnel with a wrong token and a target nobody listens on.
    let serve = Wcon::serve(
        &relay("hook", "ops", serde_json::json!({})),
        &dir.path().join("s"),
        &[],
    );
    let server = serve.url("");
    let target = format!("http://127.0.0.1:{port}/hooks");
    let (code, stdout, _) = run(
        &[
            "tunnel", "ops", "--to", &target, "--server", &server, "--token", "wrong", "--check",
        ],
        dir.path(),
    );
    assert_eq!(code, 1);
    assert!(
        stdout.contains("FAIL  server") && stdout.contains("refused the token"),
        "{stdout}"
    );
    assert!(stdout.contains("FAIL  target (default)"), "{stdout}");
    let (code, stdout, _) = run(
        &[
            "tunnel", "ops", "--to", &target, "--server", &server, "--token", TOKEN, "--check",
        ],
        dir.path(),
    );
    assert_eq!(code, 1, "the target is still down: {stdout}");
    assert!(stdout.contains("ok    server"), "{stdout}");
}

/// Answers the wizard's questions on a pseudo-terminal, each once its prompt is shown.
#[cfg(target_os = "linux")]
#[test]
fn init_asks_each_question_on_a_terminal() {
    use std::io::{Read as _, Write as _};
    use std::os::fd::{FromRawFd as _, OwnedFd};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    let dir = temp_dir();
    let (mut master, mut slave) = (0, 0);
    let ok = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ok, 0, "a pseudo-terminal opens");
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .arg("init")
        .current_dir(dir.path())
        .env("TERM", "xterm")
        .env_remove("WCON_INIT_TOKEN")
        .env_remove("WCON_INIT_HMAC_SECRET")
        .stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave)
        .spawn()
        .expect("wcon runs");
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let mut reader = std::fs::File::from(master);
    let screen = Arc::new(Mutex::new(String::new()));
    let shared = screen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            shared
                .lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let down = "\x1b[B";
    for (prompt, answer) in [
        ("What are you setting up?", format!("{down}\r")),
        ("How should webhooks be delivered?", format!("{down}\r")),
        (
            "URL of wcon serve",
            "http://relay.example:8000\r".to_string(),
        ),
        ("Relay channel", "payments\r".to_string()),
        ("Channel token", "\r".to_string()),
        ("Where should webhooks go?", "\r".to_string()),
    ] {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !screen.lock().unwrap().contains(prompt) {
            assert!(
                Instant::now() < deadline,
                "no prompt {prompt:?}; screen: {}",
                screen.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        writer.write_all(answer.as_bytes()).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "init never ended");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{}", screen.lock().unwrap());
    let connector: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("connector.json")).unwrap()).unwrap();
    assert_eq!(connector["cloud_url"], "http://relay.example:8000");
    assert_eq!(connector["channel"], "payments");
    assert_eq!(connector["token"], "{$WCON_TOKEN}");
    assert!(
        connector["webhooks_config"]
            .as_str()
            .unwrap()
            .ends_with("webhooks.json"),
        "module mode: {connector}"
    );
    let webhooks: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("webhooks.json")).unwrap()).unwrap();
    assert_eq!(
        webhooks["payments"]["module-config"]["url"],
        "http://localhost:3000/webhooks"
    );
    assert!(dir.path().join("connections.json").exists());
}
