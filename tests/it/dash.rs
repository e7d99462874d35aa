//! `wcon dash` for real: the binary in a tmux pseudo-terminal against a real `wcon serve` with
//! traffic — counts on screen, channel detail, dead letters replayed and purged, the server going
//! away and coming back, and the terminal restored on quit and Ctrl-C. Without a TTY it refuses.

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

/// A detached tmux session on its own server socket, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `wcon ARGS` in a `width`x`height` pane; when it exits the pane prints its exit code.
    fn start(args: &[&str], width: u16, height: u16) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let socket = format!(
            "wcon-dash-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let mut line = format!("'{}'", env!("CARGO_BIN_EXE_wcon"));
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        line.push_str("; echo \"dash exited with $?\"; sleep 60");
        let tmux = Self { socket };
        tmux.run(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "dash",
            "-x",
            &width.to_string(),
            "-y",
            &height.to_string(),
            "-e",
            "WCON_ADMIN_TOKEN=admin-secret-token",
            &line,
        ]);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .env_remove("TMUX")
            .output()
            .expect("tmux runs (the end-to-end test of `wcon dash` needs tmux installed)");
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "dash"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "dash"];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// A pane flag such as `alternate_on` or `mouse_any_flag`.
    fn flag(&self, name: &str) -> String {
        self.run(&[
            "display-message",
            "-p",
            "-t",
            "dash",
            &format!("#{{{name}}}"),
        ])
        .trim()
        .to_string()
    }

    /// Polls the screen until `pred` holds; panics with the last screen after 20 s.
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if pred(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for_text(&self, text: &str) -> String {
        self.wait_for(&format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// The words of the overview row of `channel`, if it is on screen.
fn row<'a>(screen: &'a str, channel: &str) -> Option<Vec<&'a str>> {
    screen.lines().find_map(|l| {
        let words: Vec<&str> = l
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '│' || c == '▶'))
            .filter(|w| !w.is_empty())
            .collect();
        (words.first() == Some(&channel)).then_some(words)
    })
}

/// The last `n` columns of a row: …, FAIL/S, DEAD, CONN, OLDEST.
fn tail<'a>(words: &[&'a str], n: usize) -> Vec<&'a str> {
    words[words.len().saturating_sub(n)..].to_vec()
}

async fn send(serve: &Wcon, hook: &str, body: &str) {
    let (status, text) = post(
        &reqwest::Client::new(),
        &serve.url(&format!("/webhook/{hook}")),
        body.as_bytes().to_vec(),
        &[],
    )
    .await;
    assert_eq!(status, 200, "{text}");
}

async fn admin_until(serve: &Wcon, path: &str, pred: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let v = admin_get(serve, path).await;
        if pred(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "timed out on {path}: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_live_counts_acts_on_dead_letters_and_survives_a_restart() {
    let dir = temp_dir();
    let mut webhooks = relay("hook", "ops", json!({}));
    webhooks["idle-hook"] = relay("idle-hook", "idle", json!({}))["idle-hook"].clone();
    let mut serve = Wcon::serve(&webhooks, dir.path(), &[]);
    let addr = serve.addr.unwrap();
    let sink = Sink::start().await;
    sink.set_status(400);
    let _tunnel = Wcon::tunnel("ops", addr, &sink.target(), &[]);
    for n in 0..3 {
        send(&serve, "hook", &format!(r#"{{"order":{n}}}"#)).await;
    }
    send(&serve, "idle-hook", r#"{"idle":1}"#).await;
    send(&serve, "idle-hook", r#"{"idle":2}"#).await;
    admin_until(&serve, "/channels/ops/stats", |v| {
        v["messages_dead_lettered"] == 3
    })
    .await;

    let server = format!("http://{addr}");
    let tmux = Tmux::start(
        &["dash", "--server", &server, "--interval", "200ms"],
        120,
        32,
    );

    // Overview: one row per channel with its counts and state.
    let screen = tmux.wait_for("both channel rows", |s| {
        row(s, "ops").is_some_and(|w| tail(&w, 3) == ["3", "1", "-"])
            && row(s, "idle").is_some_and(|w| w[1..5] == ["no", "connector", "2", "0"])
    });
    assert!(screen.contains("● connected"), "{screen}");
    assert!(screen.contains("buffer embedded healthy"), "{screen}");
    let ops = row(&screen, "ops").unwrap();
    assert_eq!(ops[1..3], ["dead", "letters"], "{screen}");
    let idle = row(&screen, "idle").unwrap();
    assert_eq!(tail(&idle, 3)[..2], ["0", "0"], "{screen}");
    assert!(idle.last().unwrap().ends_with('s'), "an age: {screen}");

    // Channel detail of `ops` (channels are sorted: idle, ops).
    tmux.keys(&["Down", "Enter"]);
    let screen = tmux.wait_for_text("connectors (1)");
    assert!(screen.contains("channel ops"), "{screen}");
    assert!(screen.contains("127.0.0.1"), "{screen}");
    assert!(screen.contains("age of undelivered messages"), "{screen}");

    // Dead letters: list, one message's body, replay it, purge another.
    tmux.keys(&["d"]);
    tmux.wait_for_text("dead letters of ops: 3 shown of 3");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for_text("body: line 1 of");
    assert!(
        screen.contains("\"order\": 0"),
        "pretty JSON body: {screen}"
    );
    sink.set_status(200);
    tmux.keys(&["r"]);
    tmux.wait_for_text("replayed 1 of 1 dead letter(s) of ops");
    sink.wait_until(Duration::from_secs(20), "the replayed delivery", |s| {
        s.all().iter().any(|r| r.status == 200)
    })
    .await;
    tmux.wait_for_text("dead letters of ops: 2 shown of 2");
    tmux.keys(&["x"]);
    tmux.wait_for_text("They are deleted for good.");
    tmux.keys(&["y"]);
    tmux.wait_for_text("purged 1 of 1 dead letter(s) of ops");
    tmux.wait_for_text("dead letters of ops: 1 shown of 1");

    // The server goes away: the dashboard says so and recovers when it is back.
    serve.kill9();
    tmux.wait_for_text("disconnected, retrying");
    serve = Wcon::serve_again(dir.path(), addr);
    tmux.wait_for_text("● connected");
    tmux.wait_for_text("dead letters of ops: 1 shown of 1");

    // q goes back screen by screen, then quits and gives the terminal back.
    tmux.keys(&["q"]);
    tmux.wait_for_text("connectors (");
    tmux.keys(&["q"]);
    tmux.wait_for_text("TOTAL (2)");
    tmux.keys(&["q"]);
    tmux.wait_for_text("dash exited with 0");
    assert_eq!(tmux.flag("alternate_on"), "0");
    assert_eq!(tmux.flag("mouse_any_flag"), "0");
    drop(serve);
}

#[test]
fn ctrl_c_quits_while_the_server_is_unreachable_and_restores_the_terminal() {
    // Port 9 (discard) is closed on a test machine: every poll fails at once.
    let tmux = Tmux::start(
        &[
            "dash",
            "--server",
            "http://127.0.0.1:9",
            "--interval",
            "200ms",
        ],
        80,
        24,
    );
    tmux.wait_for_text("disconnected, retrying");
    assert_eq!(tmux.flag("alternate_on"), "1");
    tmux.keys(&["C-c"]);
    tmux.wait_for_text("dash exited with 0");
    assert_eq!(tmux.flag("alternate_on"), "0");
    assert_eq!(tmux.flag("mouse_any_flag"), "0");
}

#[test]
fn without_a_terminal_it_refuses_and_points_to_the_json_commands() {
    let dir = temp_dir();
    let out = Wcon::run(
        &[
            "dash",
            "--server",
            "http://127.0.0.1:9",
            "--admin-token",
            "t",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs an interactive terminal"), "{stderr}");
    assert!(stderr.contains("wcon channels list --json"), "{stderr}");
    let out = Wcon::run(&["dash", "--interval", "5ms"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("100ms"));
}
