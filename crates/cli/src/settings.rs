//! Where the CLI finds its server: `--url`/`BERTH_URL` and
//! `--token`/`BERTH_TOKEN` first, then the config file that `berth up`
//! writes (`$XDG_CONFIG_HOME/berth/config.toml`, else
//! `~/.config/berth/config.toml`), then the local default.

use std::path::{Path, PathBuf};

use anyhow::Context;
use berth_client::Client;
use serde::{Deserialize, Serialize};

/// The API address of a local `berth up` with default flags.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7070";

/// The config file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ConfigFile {
    /// The server's API URL.
    pub url: Option<String>,
    /// The API token.
    pub token: Option<String>,
}

/// The resolved server and token.
#[derive(Debug, Clone)]
pub struct Settings {
    pub url: String,
    pub token: Option<String>,
}

impl Settings {
    /// Resolves flags/environment values over the config file over defaults.
    pub fn resolve(url: Option<String>, token: Option<String>) -> anyhow::Result<Self> {
        let file = match config_path() {
            Some(p) => read_config(&p)?,
            None => ConfigFile::default(),
        };
        Ok(Self {
            url: url.or(file.url).unwrap_or_else(|| DEFAULT_URL.to_string()),
            token: token.or(file.token),
        })
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        Ok(Client::new(&self.url, self.token.clone())?)
    }
}

/// The config file path, from `XDG_CONFIG_HOME` or `HOME`.
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("berth").join("config.toml"))
}

/// Reads the config file; a missing file is an empty config.
pub fn read_config(path: &Path) -> anyhow::Result<ConfigFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid Berth config file; fix or delete it",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ConfigFile::default()),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the config file with mode 0600: it holds a token.
pub fn write_config(path: &Path, config: &ConfigFile) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(toml::to_string(config)?.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
