//! `wcon channels` and `wcon dlq`: the real binary against a real `wcon serve`, exit codes,
//! messages, and snapshots of `--help`, one human table and one `--json` output.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `wcon ARGS` with a pipe for stdin (never a terminal), no colours, fixed width.
async fn wcon(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wcon"));
    cmd.args(args)
        .env_remove("WCON_SERVER")
        .env_remove("WCON_ADMIN_TOKEN")
        .env_remove("WCON_PROFILE")
        // No profile of the developer's config.toml may fill in a missing flag.
        .env(
            "WCON_CONFIG_DIR",
            std::env::temp_dir().join("wcon-test-no-config"),
        )
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100")
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("wcon runs");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs an admin command against `serve` (server and token from the environment).
async fn admin_cmd(serve: &Wcon, args: &[&str]) -> Out {
    let server = serve.url("");
    wcon(
        args,
        &[
            ("WCON_SERVER", server.as_str()),
            ("WCON_ADMIN_TOKEN", "admin-secret-token"),
        ],
    )
    .await
}

async fn dead_count(serve: &Wcon) -> u64 {
    admin_get(serve, "/channels/ops/stats").await["messages_dead_lettered"]
        .as_u64()
        .unwrap()
}

async fn wait_dead(serve: &Wcon, n: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead_count(serve).await != n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never {n} dead letters"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn send(serve: &Wcon, body: &str) -> String {
    let (status, text) = post(
        &reqwest::Client::new(),
        &serve.url("/webhook/hook"),
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["message_id"]
        .as_str()
        .unwrap()
        .to_string()
}

macro_rules! with_filters {
    ($body:block) => {{
        let mut settings = insta::Settings::clone_current();
        settings.add_filter(r"msg_[0-9a-f]{16}", "msg_[ID]");
        settings.add_filter(r"wsc_[0-9a-f]{12}", "wsc_[ID]");
        settings.add_filter(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
            "[TIME]",
        );
        settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
        settings.bind(|| $body);
    }};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dlq_list_show_replay_and_purge_through_the_cli() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(400);
    let _tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);
    let id = send(&serve, r#"{"order":7}"#).await;
    wait_dead(&serve, 1).await;

    let list = admin_cmd(&serve, &["dlq", "list", "ops"]).await;
    assert_eq!(list.code, 0, "{}", list.stderr);
    let row = list
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .expect("the dead letter is listed");
    assert!(
        row.contains("rejected") && row.contains("400"),
        "reason and error: {row}"
    );
    let listed: Value = serde_json::from_str(
        &admin_cmd(&serve, &["dlq", "list", "ops", "--json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(listed["messages"][0]["message_id"], id.as_str());

    let show = admin_cmd(&serve, &["dlq", "show", "ops", &id]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains("rejected") && show.stdout.contains("400"),
        "{}",
        show.stdout
    );
    assert!(
        show.stdout.contains("\"order\": 7"),
        "the body is shown: {}",
        show.stdout
    );
    let list_json = admin_cmd(&serve, &["dlq", "list", "ops", "--json"]).await;
    with_filters!({
        insta::assert_snapshot!("dlq_list", list.stdout);
        insta::assert_snapshot!("dlq_show", show.stdout);
        insta::assert_snapshot!("dlq_list_json", list_json.stdout);
    });
    let missing = admin_cmd(&serve, &["dlq", "show", "ops", "msg_0000000000000000"]).await;
    assert_eq!(missing.code, 1);
    assert!(missing.stderr.contains("404"), "{}", missing.stderr);

    // Replay delivers it once the target answers 200.
    sink.set_status(200);
    let replay = admin_cmd(&serve, &["dlq", "replay", "ops", &id]).await;
    assert_eq!(
        (replay.code, replay.stdout.trim()),
        (0, "replayed 1 message(s) of ops"),
        "{}",
        replay.stderr
    );
    sink.wait_until(Duration::from_secs(20), "the replayed delivery", |s| {
        s.all()
            .iter()
            .any(|r| r.status == 200 && r.header("x-webhook-message-id") == id)
    })
    .await;
    wait_dead(&serve, 0).await;

    // Purge asks first; without a terminal it refuses unless --yes.
    sink.set_status(400);
    send(&serve, r#"{"order":8}"#).await;
    wait_dead(&serve, 1).await;
    let refused = admin_cmd(&serve, &["dlq", "purge", "ops", "--all"]).await;
    assert_eq!(refused.code, 2);
    assert!(
        refused.stderr.contains("stdin is not a terminal") && refused.stderr.contains("--yes"),
        "{}",
        refused.stderr
    );
    let refused = admin_cmd(&serve, &["dlq", "replay", "ops", "--all"]).await;
    assert_eq!(refused.code, 2, "replay --all asks too");
    assert_eq!(dead_count(&serve).await, 1, "nothing changed");
    let purge = admin_cmd(&serve, &["dlq", "purge", "ops", "--all", "--yes"]).await;
    assert_eq!(
        (purge.code, purge.stdout.trim()),
        (0, "purged 1 message(s) of ops"),
        "{}",
        purge.stderr
    );
    assert_eq!(dead_count(&serve).await, 0);
    assert_eq!(
        admin_get(&serve, "/channels/ops/dead-letters").await["count"],
        0
    );

    // One human table and one --json output, as users see them.
    let channels = admin_cmd(&serve, &["channels", "list"]).await;
    assert_eq!(channels.code, 0, "{}", channels.stderr);
    let stats = admin_cmd(&serve, &["channels", "stats", "ops", "--json"]).await;
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    let stats_table = admin_cmd(&serve, &["channels", "stats", "ops"]).await;
    let list_json = admin_cmd(&serve, &["channels", "list", "--json"]).await;
    let show = admin_cmd(&serve, &["channels", "show", "ops"]).await;
    with_filters!({
        insta::assert_snapshot!("channels_list", channels.stdout);
        insta::assert_snapshot!("channels_stats_json", stats.stdout);
        insta::assert_snapshot!("channels_stats", stats_table.stdout);
        insta::assert_snapshot!("channels_list_json", list_json.stdout);
        insta::assert_snapshot!("channels_show", show.stdout);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_show_and_disconnect() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    let mut tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);
    let detail = admin_get(&serve, "/channels/ops").await;
    let connection = detail["connected_clients"][0]["connection_id"]
        .as_str()
        .unwrap()
        .to_string();
    let show = admin_cmd(&serve, &["channels", "show", "ops"]).await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains(&connection) && show.stdout.contains("websocket"),
        "{}",
        show.stdout
    );
    let gone = admin_cmd(&serve, &["channels", "show", "nope"]).await;
    assert_eq!(gone.code, 1);
    let out = admin_cmd(&serve, &["channels", "disconnect", "ops", &connection]).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    tunnel.wait_for(
        "an administrator closed this connection",
        Duration::from_secs(20),
    );
}

#[tokio::test]
async fn errors_say_what_to_check_and_exit_codes() {
    // Nothing listens on this port: bind it, note it, free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let out = wcon(
        &["channels", "list", "--server", &url, "--admin-token", "t"],
        &[],
    )
    .await;
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains(&url)
            && out.stderr.contains("wcon serve")
            && out.stderr.contains("--server"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("admin-token t"),
        "the token is never echoed"
    );

    let out = wcon(&["channels", "list", "--admin-token", "t"], &[]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("WCON_SERVER"), "{}", out.stderr);
    let out = wcon(&["dlq", "list", "ops", "--server", &url], &[]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("WCON_ADMIN_TOKEN"), "{}", out.stderr);
    let out = wcon(
        &[
            "dlq",
            "replay",
            "ops",
            "--server",
            &url,
            "--admin-token",
            "t",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("name what to replay"), "{}", out.stderr);
    let out = wcon(&["dlq", "purge", "ops"], &[]).await;
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("name what to purge"), "{}", out.stderr);
    let out = wcon(
        &[
            "dlq",
            "replay",
            "ops",
            "--all",
            "--since",
            "2026-01-01T00:00:00Z",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 2);
}

#[tokio::test]
async fn a_wrong_admin_token_is_a_runtime_error() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let out = wcon(
        &[
            "channels",
            "list",
            "--server",
            &serve.url(""),
            "--admin-token",
            "wrong",
        ],
        &[],
    )
    .await;
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("refused the admin token"),
        "{}",
        out.stderr
    );
}

/// Runs `wcon ARGS` with stderr on a pseudo-terminal; returns (exit code, stdout, what the
/// terminal got).
#[cfg(target_os = "linux")]
async fn wcon_with_tty_stderr(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Read as _;
    use std::os::fd::{FromRawFd as _, OwnedFd};
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
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_wcon"));
    cmd.args(args)
        .env_remove("WCON_SERVER")
        .env_remove("WCON_ADMIN_TOKEN")
        .env_remove("WCON_PROFILE")
        .env(
            "WCON_CONFIG_DIR",
            std::env::temp_dir().join("wcon-test-no-config"),
        )
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::from(slave));
    for (k, v) in env {
        cmd.env(k, v);
    }
    // Read the terminal while the command runs: Linux may drop what is unread once the last
    // slave descriptor closes.
    let mut terminal = std::fs::File::from(master);
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = terminal.read(&mut buf) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        got
    });
    // Not `output()`: it would replace stderr with a pipe.
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("wcon runs");
    let out = child.wait_with_output().await.expect("wcon ends");
    drop(cmd);
    let got = reader
        .join()
        .expect("the reader ends when the terminal closes");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&got).into_owned(),
    )
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bulk_replay_shows_a_progress_bar_on_a_terminal_only() {
    let dir = temp_dir();
    let serve = Wcon::serve(&relay("hook", "ops", json!({})), dir.path(), &[]);
    let sink = Sink::start().await;
    sink.set_status(400);
    let mut tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);
    for i in 0..3 {
        send(&serve, &format!(r#"{{"n":{i}}}"#)).await;
    }
    wait_dead(&serve, 3).await;
    // Nobody takes the replayed messages: they stay queued, so each replay is counted once.
    tunnel.kill9();
    let server = serve.url("");
    let env = [
        ("WCON_SERVER", server.as_str()),
        ("WCON_ADMIN_TOKEN", "admin-secret-token"),
    ];

    let piped = wcon(
        &["dlq", "replay", "ops", "--since", "2000-01-01T00:00:00Z"],
        &env,
    )
    .await;
    assert_eq!(
        (piped.code, piped.stdout.trim()),
        (0, "replayed 3 message(s) of ops"),
        "{}",
        piped.stderr
    );
    assert_eq!(piped.stderr, "", "nothing but the result on a pipe");
    let queued = admin_get(&serve, "/channels/ops/stats").await;
    assert_eq!(
        (
            queued["messages_queued"].as_u64(),
            queued["messages_dead_lettered"].as_u64()
        ),
        (Some(3), Some(0))
    );

    // Dead-letter them again through a tunnel, then replay on a terminal.
    let _tunnel = Wcon::tunnel("ops", serve.addr.unwrap(), &sink.target(), &[]);
    wait_dead(&serve, 3).await;
    let (code, stdout, terminal) =
        wcon_with_tty_stderr(&["dlq", "replay", "ops", "--all", "--yes"], &env).await;
    assert_eq!(code, 0, "{terminal}");
    assert_eq!(stdout.trim(), "replayed 3 message(s) of ops");
    assert!(
        terminal.contains("replaying"),
        "a bar was drawn: {terminal:?}"
    );
}

/// The subcommands a `--help` text lists (without `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn help_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"wcon \d+\.\d+\.\d+", "wcon [VERSION]");
    let _guard = settings.bind_to_scope();
    // Every command and subcommand, found from `wcon --help` down.
    let mut queue: Vec<Vec<String>> = vec![Vec::new()];
    let mut seen = 0;
    while let Some(path) = queue.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = wcon(&args, &[]).await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        let name = if path.is_empty() {
            "help_wcon".to_string()
        } else {
            format!("help_{}", path.join("_"))
        };
        insta::assert_snapshot!(name, out.stdout);
        seen += 1;
        for sub in subcommands(&out.stdout) {
            let mut next = path.clone();
            next.push(sub);
            queue.push(next);
        }
    }
    assert!(seen >= 17, "every command was found: {seen}");
}
