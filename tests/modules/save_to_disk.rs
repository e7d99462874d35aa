//! save_to_disk on a temporary directory: file contents, mode, overwrite on redelivery,
//! traversal refused, an unwritable directory is retryable.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::support::{delivery, module, try_module};
use wcon::modules::NetworkPolicy;

#[tokio::test]
async fn writes_one_private_json_file_per_message() {
    let base = tempfile::tempdir().unwrap();
    let config = json!({"base_dir": base.path(), "path": "hooks/in"});
    let save = module("save_to_disk", config, None);
    let mut d = delivery(&json!({"order": 42, "items": ["a", "b"]}));
    save.deliver(&d).await.unwrap();

    let file = base
        .path()
        .join("hooks/in")
        .join(format!("{}.json", d.message_id));
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["message_id"], d.message_id.as_str());
    assert_eq!(written["webhook_id"], "orders");
    assert_eq!(
        written["payload"],
        json!({"order": 42, "items": ["a", "b"]})
    );
    assert_eq!(written["headers"]["x-github-event"], "push");
    assert!(written["received_at"].as_str().unwrap().ends_with('Z'));
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");

    // A redelivery of the same message replaces the file; no temporary file is left behind.
    d.payload = json!({"order": 43});
    save.deliver(&d).await.unwrap();
    let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    let written: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(written["payload"]["order"], 43);
}

#[tokio::test]
async fn paths_outside_base_dir_are_refused() {
    let base = tempfile::tempdir().unwrap();
    for path in ["..", "../elsewhere", "a/../../b", "/tmp"] {
        let err = try_module(
            "save_to_disk",
            json!({"base_dir": base.path(), "path": path}),
            None,
            NetworkPolicy::Tunnel,
        )
        .unwrap_err();
        assert!(err.contains("path"), "{path}: {err}");
    }

    // A symlink inside base_dir that leads out is refused at build time when it exists…
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), base.path().join("link")).unwrap();
    let err = try_module(
        "save_to_disk",
        json!({"base_dir": base.path(), "path": "link"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("outside base_dir"), "{err}");

    // …and at write time when it appears later, and nothing is written through it.
    let save = module(
        "save_to_disk",
        json!({"base_dir": base.path(), "path": "later"}),
        None,
    );
    std::os::unix::fs::symlink(outside.path(), base.path().join("later")).unwrap();
    let err = save.deliver(&delivery(&json!({"x": 1}))).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn an_unwritable_directory_is_retryable_and_config_errors_name_the_key() {
    let base = tempfile::tempdir().unwrap();
    // A file where the directory should be: cannot be written even by root.
    std::fs::write(base.path().join("blocked"), b"").unwrap();
    let save = module(
        "save_to_disk",
        json!({"base_dir": base.path(), "path": "blocked/inner"}),
        None,
    );
    let err = save.deliver(&delivery(&json!({"x": 1}))).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");

    let err = try_module(
        "save_to_disk",
        json!({"base_dir": base.path(), "dir": "x"}),
        None,
        NetworkPolicy::Tunnel,
    )
    .unwrap_err();
    assert!(err.contains("dir"), "{err}");
}
