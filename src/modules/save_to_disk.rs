//! The `save_to_disk` module: writes each webhook as one JSON file in a directory.
//!
//! Keys: `base_dir` (default: the working directory) and `path` (".", a directory inside
//! `base_dir`). Each webhook becomes `<message_id>.json` holding
//! `{"message_id","webhook_id","received_at","headers","payload"}`, so a redelivery overwrites
//! its earlier copy instead of adding a second one. Files are written atomically (a temporary
//! file in the same directory, fsync, rename, fsync of the directory) with mode 0600.
//!
//! It must never write outside `base_dir`: an absolute `path` or one with `..` is refused when
//! the module is built, and a directory that resolves outside `base_dir` (through a symlink)
//! is refused when writing.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::json;

use super::registry::ModuleSpec;
use super::{Delivery, Module, ModuleError, headers_json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SaveToDiskConfig {
    #[serde(default)]
    base_dir: Option<PathBuf>,
    #[serde(default = "dot")]
    path: String,
}

fn dot() -> String {
    ".".to_owned()
}

/// See the module docs.
#[derive(Debug, Clone)]
pub struct SaveToDisk {
    base_dir: PathBuf,
    dir: PathBuf,
}

impl SaveToDisk {
    /// Builds it from its spec; refuses a `path` that leaves `base_dir`.
    pub fn build(spec: &ModuleSpec<'_>) -> Result<Self, String> {
        spec.no_connection()?;
        let config: SaveToDiskConfig = spec.config()?;
        let base_dir = match config.base_dir {
            Some(dir) => dir,
            None => std::env::current_dir()
                .map_err(|e| format!("save_to_disk: cannot read the working directory: {e}"))?,
        };
        Self::new(base_dir, &config.path)
    }

    /// Writes into `base_dir/path`.
    pub fn new(base_dir: PathBuf, path: &str) -> Result<Self, String> {
        let relative = Path::new(path);
        for component in relative.components() {
            match component {
                Component::Normal(_) | Component::CurDir => {}
                Component::ParentDir => {
                    return Err(format!(
                        "module-config.path: `{path}` contains `..`; it must stay inside base_dir"
                    ));
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(format!(
                        "module-config.path: `{path}` is absolute; give a directory relative to base_dir (`{}`)",
                        base_dir.display()
                    ));
                }
            }
        }
        let module = Self {
            dir: base_dir.join(relative).components().collect(),
            base_dir,
        };
        // Where both exist already, a symlink that leads out is refused now rather than at
        // the first webhook; the same check runs again before every write.
        if let (Ok(base), Ok(dir)) = (module.base_dir.canonicalize(), module.dir.canonicalize())
            && !dir.starts_with(&base)
        {
            return Err(format!(
                "module-config.path: `{path}` resolves to `{}`, outside base_dir `{}`",
                dir.display(),
                base.display()
            ));
        }
        Ok(module)
    }

    fn write(&self, name: &str, contents: &[u8]) -> Result<(), ModuleError> {
        let io = |what: &str, e: std::io::Error| {
            ModuleError::retryable(format!(
                "save_to_disk: {what} `{}`: {e}",
                self.dir.display()
            ))
        };
        create_dir_private(&self.dir).map_err(|e| io("cannot create directory", e))?;
        let base = self
            .base_dir
            .canonicalize()
            .map_err(|e| io("cannot resolve base_dir of", e))?;
        let dir = self
            .dir
            .canonicalize()
            .map_err(|e| io("cannot resolve", e))?;
        if !dir.starts_with(&base) {
            return Err(ModuleError::rejected(format!(
                "save_to_disk: `{}` resolves to `{}`, outside base_dir `{}`",
                self.dir.display(),
                dir.display(),
                base.display()
            )));
        }
        let target = dir.join(name);
        let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
        let written = write_new_private(&temp, contents).and_then(|()| fs::rename(&temp, &target));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io("cannot write a file in", e));
        }
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync directory", e))
    }
}

/// Creates a directory (and its parents) readable only by the owner.
fn create_dir_private(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `path` (which must not exist) with mode 0600, writes and fsyncs it.
fn write_new_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// The file name of a message: its id, when that is a plain name.
fn file_name(delivery: &Delivery) -> Result<String, ModuleError> {
    let id = delivery.message_id.as_str();
    let plain = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        Ok(format!("{id}.json"))
    } else {
        Err(ModuleError::rejected(format!(
            "save_to_disk: message id `{}` cannot be a file name",
            id.escape_debug()
        )))
    }
}

#[async_trait]
impl Module for SaveToDisk {
    async fn deliver(&self, delivery: &Delivery) -> Result<(), ModuleError> {
        let name = file_name(delivery)?;
        let record = json!({
            "message_id": delivery.message_id,
            "webhook_id": delivery.webhook_id,
            "received_at": crate::time::rfc3339(delivery.received_at),
            "headers": headers_json(&delivery.headers),
            "payload": delivery.payload,
        });
        let mut contents = serde_json::to_vec_pretty(&record).map_err(ModuleError::rejected)?;
        contents.push(b'\n');
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.write(&name, &contents))
            .await
            .map_err(|e| ModuleError::retryable(format!("save_to_disk: writer task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::tests_support::delivery;

    #[test]
    fn paths_that_leave_base_dir_are_refused() {
        let base = PathBuf::from("/srv/hooks");
        for bad in ["..", "a/../../b", "/etc", "a/.."] {
            assert!(SaveToDisk::new(base.clone(), bad).is_err(), "{bad}");
        }
        for good in [".", "a", "a/b", "./a"] {
            assert!(SaveToDisk::new(base.clone(), good).is_ok(), "{good}");
        }
    }

    #[test]
    fn odd_message_ids_are_not_file_names() {
        let mut d = delivery(b"{}");
        d.message_id = "../../etc/passwd".into();
        assert!(!file_name(&d).unwrap_err().is_retryable());
        d.message_id = "msg_00ff".into();
        assert_eq!(file_name(&d).unwrap(), "msg_00ff.json");
    }
}
