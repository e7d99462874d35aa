//! The committed `completions/` match `wcon completions SHELL` byte for byte.

use std::path::Path;

const SHELLS: &[(&str, &str)] = &[
    ("bash", "wcon.bash"),
    ("zsh", "_wcon"),
    ("fish", "wcon.fish"),
    ("powershell", "_wcon.ps1"),
    ("elvish", "wcon.elv"),
];

#[test]
fn committed_completions_match_the_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("completions");
    for (shell, file) in SHELLS {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
            .args(["completions", shell])
            .output()
            .expect("wcon runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "no script for {shell}");
        let committed = std::fs::read(dir.join(file)).unwrap_or_default();
        assert!(
            committed == out.stdout,
            "completions/{file} is out of date; run `wcon completions {shell} > completions/{file}` \
             (or `scripts/completions.sh`) and commit it"
        );
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wcon"))
        .args(["completions", "tcsh"])
        .output()
        .expect("wcon runs");
    assert_eq!(out.status.code(), Some(2));
}
