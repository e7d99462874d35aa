//! Operator profiles: `config.toml` in the platform config directory (or `$WCON_CONFIG_DIR`),
//! one `[profiles.NAME]` table per server with `server`, `admin_token` and saved channel tokens.
//!
//! Flags beat environment variables, which beat the profile. The file holds secrets: it is
//! written with mode 0600 and its values never appear in `Debug` output or errors.
//!
//! ```toml
//! [profiles.prod]
//! server = "https://hooks.example.com"
//! admin_token = "…"
//!
//! [profiles.prod.channel_tokens]
//! stripe-payments = "ch_tok_…"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, anyhow};
use serde::Deserialize;

use crate::Failure;

/// The profile used when no `--profile` / `WCON_PROFILE` is given (if the file has it).
pub const DEFAULT: &str = "default";

/// One profile of config.toml.
#[derive(Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// URL of `wcon serve`.
    #[serde(default)]
    pub server: Option<String>,
    /// The server's admin token.
    #[serde(default)]
    pub admin_token: Option<String>,
    /// Channel tokens saved by `wcon channels rotate-token --save`, by channel.
    #[serde(default)]
    pub channel_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("server", &self.server)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field(
                "channel_tokens",
                &self.channel_tokens.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

/// The profile chosen on the command line, loaded.
#[derive(Debug, Clone)]
pub struct Selected {
    /// Its name.
    pub name: String,
    /// Its values (empty when the default profile is not in the file).
    pub profile: Profile,
}

/// The directory holding config.toml: `$WCON_CONFIG_DIR`, else the platform config directory.
pub fn config_dir() -> Result<PathBuf, Failure> {
    if let Some(dir) = std::env::var_os("WCON_CONFIG_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    directories::ProjectDirs::from("", "", "wcon")
        .map(|p| p.config_dir().to_path_buf())
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "no home directory to find config.toml in; set WCON_CONFIG_DIR"
            ))
        })
}

/// The path of config.toml.
pub fn config_path() -> Result<PathBuf, Failure> {
    Ok(config_dir()?.join("config.toml"))
}

/// Loads the profile `name` (from `--profile` or `WCON_PROFILE`). A named profile must exist
/// (exit 2 otherwise); without a name, `default` is used when the file has it.
pub fn load(name: Option<&str>) -> Result<Selected, Failure> {
    let path = config_path()?;
    let file: File = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text).map_err(|e| {
            Failure::usage(anyhow!(
                "`{}` is not a valid wcon config: {}",
                path.display(),
                e.message()
            ))
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => File::default(),
        Err(e) => {
            return Err(Failure::usage(
                anyhow!(e).context(format!("cannot read `{}`", path.display())),
            ));
        }
    };
    match name {
        Some(name) => {
            let profile = file.profiles.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = file.profiles.keys().map(String::as_str).collect();
                Failure::usage(anyhow!(
                    "no profile `{name}` in `{}`{}; add a [profiles.{name}] table with `server` and `admin_token`",
                    path.display(),
                    if known.is_empty() {
                        String::new()
                    } else {
                        format!(" (it has: {})", known.join(", "))
                    }
                ))
            })?;
            Ok(Selected {
                name: name.to_string(),
                profile,
            })
        }
        None => Ok(Selected {
            name: DEFAULT.to_string(),
            profile: file.profiles.get(DEFAULT).cloned().unwrap_or_default(),
        }),
    }
}

/// Stores `token` as the channel token of `channel` in profile `profile` (created if needed),
/// keeping everything else in the file; the file is written with mode 0600.
pub fn save_channel_token(profile: &str, channel: &str, token: &str) -> anyhow::Result<PathBuf> {
    let path = config_path().map_err(Failure::into_error)?;
    let mut doc: toml::Table = match std::fs::read_to_string(&path) {
        Ok(text) => toml::from_str(&text)
            .with_context(|| format!("`{}` is not valid TOML", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
        Err(e) => return Err(anyhow!(e).context(format!("cannot read `{}`", path.display()))),
    };
    let profiles = child(&mut doc, "profiles")?;
    let entry = child(profiles, profile)?;
    let tokens = child(entry, "channel_tokens")?;
    tokens.insert(channel.to_string(), toml::Value::String(token.to_string()));
    let text = toml::to_string_pretty(&doc).expect("a TOML table serialises");
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    use std::io::Write as _;
    let mut file = options
        .open(&path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    // `mode` applies only to a new file; one created by hand is made private before writing.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make `{}` private (mode 0600)", path.display()))?;
    }
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(path)
}

/// The table `key` of `parent`, created when missing.
fn child<'a>(parent: &'a mut toml::Table, key: &str) -> anyhow::Result<&'a mut toml::Table> {
    parent
        .entry(key.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or_else(|| anyhow!("`{key}` in config.toml is not a table"))
}
