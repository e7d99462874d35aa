//! Channel token rotation through the real server and CLI: the old token works during the grace
//! period and is refused after it (its connections closed), the rotation survives a restart of
//! `wcon serve` and later webhooks, and `--save` / `--profile` keep tokens in config.toml.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// `wcon ARGS` with no inherited server, tokens or profile; `config_dir` holds config.toml.
async fn wcon(args: &[&str], env: &[(&str, &str)], config_dir: &Path) -> (i32, String, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wcon"));
    cmd.args(args)
        .env_remove("WCON_SERVER")
        .env_remove("WCON_ADMIN_TOKEN")
        .env_remove("WCON_PROFILE")
        .env_remove("WCON_TOKEN")
        .env_remove("CONNECTOR_TOKEN")
        .env_remove("CONNECTOR_CLOUD_URL")
        .env("WCON_CONFIG_DIR", config_dir)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("wcon runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The HTTP status of `GET /connect/status/ops` with `token`.
async fn status_with(serve: &Wcon, token: &str) -> u16 {
    reqwest::Client::new()
        .get(serve.url("/connect/status/ops"))
        .bearer_auth(token)
        .send()
        .await
        .expect("the server answers")
        .status()
        .as_u16()
}

fn new_token_of(stdout: &str) -> String {
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("new token: "))
        .unwrap_or_else(|| panic!("no new token printed: {stdout}"))
        .to_string();
    assert!(
        token.starts_with("ch_tok_") && token.len() == "ch_tok_".len() + 48,
        "a strong token: {token}"
    );
    token
}

async fn send(serve: &Wcon, body: &str) {
    let (status, text) = post(
        &reqwest::Client::new(),
        &serve.url("/webhook/hook"),
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

fn tunnel_with(serve: &Wcon, target: &str, token: &str) -> Wcon {
    let server = serve.url("");
    let mut w = Wcon::run_background_in_env(
        // Over SSE, so that both streaming transports are seen closing on an expired token.
        &[
            "tunnel",
            "ops",
            "--to",
            target,
            "--server",
            &server,
            "--protocol",
            "sse",
        ],
        Path::new("."),
        &[("WCON_TOKEN", token)],
    );
    w.wait_for("connected to", Duration::from_secs(20));
    w
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn old_token_works_during_grace_then_fails_and_the_rotation_survives_a_restart() {
    let dir = temp_dir();
    let config = temp_dir();
    let mut serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    let mut old_tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);
    let server = serve.url("");

    let (code, stdout, stderr) = wcon(
        &[
            "channels",
            "rotate-token",
            "ops",
            "--grace",
            "6s",
            "--server",
            &server,
            "--admin-token",
            "admin-secret-token",
        ],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let new = new_token_of(&stdout);
    assert!(stdout.contains("shown only once"), "{stdout}");
    {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"ch_tok_[0-9a-f]{48}", "ch_tok_[TOKEN]");
        settings.add_filter(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "[TIME]",
        );
        settings.bind(|| insta::assert_snapshot!("rotate_token", stdout));
    }

    // During the grace period both tokens open the channel, and the old connection delivers.
    assert_eq!(status_with(&serve, TOKEN).await, 200, "old token in grace");
    assert_eq!(status_with(&serve, &new).await, 200, "new token");
    assert_eq!(status_with(&serve, "ch_tok_wrong").await, 401);
    send(&serve, r#"{"n":1}"#).await;
    sink.wait_until(Duration::from_secs(20), "delivery in grace", |s| {
        s.count() == 1
    })
    .await;

    // After it the old token is refused and its connection is closed.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while status_with(&serve, TOKEN).await != 401 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old token is never refused"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    old_tunnel.wait_for("token_expired", Duration::from_secs(20));
    old_tunnel.wait_for("check --token", Duration::from_secs(20));
    assert_eq!(status_with(&serve, &new).await, 200);
    let detail = admin_get(&serve, "/channels/ops").await;
    assert!(
        detail["connected_clients"].as_array().unwrap().is_empty(),
        "{detail}"
    );
    drop(old_tunnel);

    // A restart keeps the rotation; webhooks no longer undo it.
    let addr = serve.addr.unwrap();
    assert!(serve.terminate().success());
    let serve = Wcon::serve_again(dir.path(), addr);
    assert_eq!(
        status_with(&serve, TOKEN).await,
        401,
        "old token after restart"
    );
    assert_eq!(
        status_with(&serve, &new).await,
        200,
        "new token after restart"
    );
    let tunnel = tunnel_with(&serve, &sink.target(), &new);
    send(&serve, r#"{"n":2}"#).await;
    send(&serve, r#"{"n":3}"#).await;
    sink.wait_until(Duration::from_secs(20), "deliveries after restart", |s| {
        s.delivered_bodies().len() == 3
    })
    .await;
    assert_eq!(
        status_with(&serve, TOKEN).await,
        401,
        "webhooks undo nothing"
    );

    // The shorter path works too; a grace of 0 refuses and disconnects the replaced token at once.
    let r = reqwest::Client::new()
        .post(serve.url("/admin/channels/ops/rotate-token"))
        .bearer_auth("admin-secret-token")
        .json(&json!({"grace_period_seconds": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["channel"], "ops");
    let newer = v["new_token"].as_str().unwrap().to_string();
    {
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"ch_tok_[0-9a-f]{48}", "ch_tok_[TOKEN]");
        settings.add_filter(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "[TIME]",
        );
        settings.bind(|| insta::assert_json_snapshot!("rotate_token_json", v));
    }
    assert!(v["old_token_expires_at"].is_string() && v["message"].is_string());
    assert_eq!(status_with(&serve, &new).await, 401);
    assert_eq!(status_with(&serve, &newer).await, 200);
    let mut tunnel = tunnel;
    tunnel.wait_for("token_expired", Duration::from_secs(20));

    // Bad requests change nothing.
    for (body, auth) in [
        (json!({"grace_period_seconds": -1}), true),
        (json!({"grace_period_seconds": 999_999_999}), true),
        (json!({"grace": 1}), true),
        (json!({"grace_period_seconds": 1}), false),
    ] {
        let mut req = reqwest::Client::new()
            .post(serve.url("/admin/webhook-connect/channels/ops/rotate-token"))
            .json(&body);
        if auth {
            req = req.bearer_auth("admin-secret-token");
        }
        let status = req.send().await.unwrap().status().as_u16();
        assert_eq!(status, if auth { 422 } else { 401 }, "{body}");
    }
    assert_eq!(status_with(&serve, &newer).await, 200);
    let unknown = reqwest::Client::new()
        .post(serve.url("/admin/webhook-connect/channels/nope/rotate-token"))
        .bearer_auth("admin-secret-token")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_give_server_and_token_and_save_rotated_tokens() {
    let dir = temp_dir();
    let config = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    std::fs::write(
        config.path().join("config.toml"),
        format!(
            "# ops profile\n[profiles.prod]\nserver = \"{}\"\nadmin_token = \"admin-secret-token\"\n",
            serve.url("")
        ),
    )
    .unwrap();

    let doc: Value = reqwest::get(serve.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        doc["paths"]["/admin/webhook-connect/channels/{channel}/rotate-token"]["post"].is_object(),
        "serve answers its OpenAPI document"
    );

    let (code, stdout, stderr) = wcon(
        &["--profile", "prod", "channels", "list", "--json"],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        serde_json::from_str::<Value>(&stdout).unwrap()[0]["name"],
        "ops"
    );

    // The environment beats the profile, and a flag beats the environment.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let env = [("WCON_SERVER", dead.as_str())];
    let (code, _, stderr) = wcon(
        &["--profile", "prod", "channels", "list"],
        &env,
        config.path(),
    )
    .await;
    assert_eq!(code, 1, "WCON_SERVER wins: {stderr}");
    assert!(stderr.contains(&dead), "{stderr}");
    let server = serve.url("");
    let (code, _, stderr) = wcon(
        &["--profile", "prod", "channels", "list", "--server", &server],
        &env,
        config.path(),
    )
    .await;
    assert_eq!(code, 0, "--server wins: {stderr}");
    let (code, _, stderr) = wcon(
        &["channels", "list"],
        &[("WCON_PROFILE", "prod"), ("WCON_ADMIN_TOKEN", "wrong")],
        config.path(),
    )
    .await;
    assert_eq!(code, 1, "WCON_ADMIN_TOKEN wins: {stderr}");
    assert!(stderr.contains("refused the admin token"), "{stderr}");

    let (code, _, stderr) = wcon(
        &["--profile", "staging", "channels", "list"],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 2);
    assert!(
        stderr.contains("no profile `staging`") && stderr.contains("prod"),
        "{stderr}"
    );

    let (code, stdout, stderr) = wcon(
        &[
            "--profile",
            "prod",
            "channels",
            "rotate-token",
            "ops",
            "--save",
        ],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 0, "{stderr}");
    let token = new_token_of(&stdout);
    assert!(stderr.contains("saved in profile `prod`"), "{stderr}");
    let saved: toml::Table =
        toml::from_str(&std::fs::read_to_string(config.path().join("config.toml")).unwrap())
            .unwrap();
    assert_eq!(
        saved["profiles"]["prod"]["channel_tokens"]["ops"].as_str(),
        Some(token.as_str())
    );
    assert_eq!(
        saved["profiles"]["prod"]["server"].as_str(),
        Some(server.as_str()),
        "the rest of the profile is kept"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(config.path().join("config.toml"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "config.toml holds secrets: {mode:o}");
    }
    assert_eq!(status_with(&serve, &token).await, 200);

    // The tunnel takes the server and the saved token from the profile.
    let sink = Sink::start().await;
    let target = sink.target();
    let (code, stdout, stderr) = wcon(
        &[
            "--profile",
            "prod",
            "tunnel",
            "ops",
            "--to",
            &target,
            "--check",
        ],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("ok    server"), "{stdout}");

    let (code, _, stderr) = wcon(
        &[
            "channels",
            "rotate-token",
            "ops",
            "--grace",
            "soon",
            "--server",
            &server,
        ],
        &[],
        config.path(),
    )
    .await;
    assert_eq!(code, 2, "{stderr}");
}
