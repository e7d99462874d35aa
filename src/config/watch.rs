//! Watching config files for live reload: one signal after a burst of changes has settled.
//!
//! Watches the directories holding the files (editors and `mv` replace a file rather than write
//! it, which a watch on the file itself would miss) and reports changes to the named files only,
//! once the changes have been quiet for the debounce time. What a reload does is the caller's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

/// How long changes must be quiet before a reload (an editor's save is several events).
pub const DEBOUNCE: Duration = Duration::from_millis(300);

/// A live watch; dropping it stops watching.
pub struct FileWatch {
    _watcher: RecommendedWatcher,
}

impl std::fmt::Debug for FileWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileWatch")
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Watches `files`; sends `()` on `changed` once after each settled burst of changes to any of
/// them. Must be called inside a Tokio runtime.
pub fn watch(files: &[PathBuf], changed: mpsc::Sender<()>) -> notify::Result<FileWatch> {
    let files: BTreeSet<PathBuf> = files.iter().map(|f| absolute(f)).collect();
    let dirs: BTreeSet<PathBuf> = files
        .iter()
        .filter_map(|f| f.parent().map(Path::to_path_buf))
        .collect();
    let (raw_tx, mut raw_rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        if event.paths.iter().any(|p| files.contains(&absolute(p))) {
            let _ = raw_tx.send(());
        }
    })?;
    for dir in &dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tokio::spawn(async move {
        while raw_rx.recv().await.is_some() {
            // Wait for quiet: every further change restarts the wait.
            loop {
                match tokio::time::timeout(DEBOUNCE, raw_rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            if changed.send(()).await.is_err() {
                return;
            }
        }
    });
    Ok(FileWatch { _watcher: watcher })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_of_writes_is_one_signal_and_other_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("connector.json");
        std::fs::write(&file, "{}").unwrap();
        let (tx, mut rx) = mpsc::channel(4);
        let _watch = watch(std::slice::from_ref(&file), tx).unwrap();
        std::fs::write(dir.path().join("other.json"), "{}").unwrap();
        for i in 0..3 {
            std::fs::write(&file, format!("{{\"n\": {i}}}")).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a signal")
            .unwrap();
        assert!(
            tokio::time::timeout(DEBOUNCE * 3, rx.recv()).await.is_err(),
            "one signal for the burst"
        );
        // Replaced by a rename, as editors do.
        let tmp = dir.path().join(".connector.json.tmp");
        std::fs::write(&tmp, "{\"n\": 9}").unwrap();
        std::fs::rename(&tmp, &file).unwrap();
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a signal after a rename")
            .unwrap();
    }
}
