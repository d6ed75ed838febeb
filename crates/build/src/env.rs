//! The environment of build tools: cleared, then rebuilt from a short list.
//!
//! An app's `setup.py`, build backends and Django settings run arbitrary
//! code, so they must not see the agent's own environment (its control-plane
//! token, for one). They get, in increasing precedence:
//! 1. defaults: `LANG=C.UTF-8`, `PYTHONUNBUFFERED=1` (lines arrive as printed);
//! 2. the node's network settings taken from the agent's environment — CA
//!    bundle and proxy variables — without which uv cannot reach the package
//!    index behind a TLS-intercepting proxy (it ignores the system store);
//! 3. the app's config vars, so e.g. `UV_INDEX_URL` can point at a private
//!    index and settings modules find their `SECRET_KEY`;
//! 4. what the build must control: `PATH`, `HOME`, `VIRTUAL_ENV` and the
//!    `UV_*` settings below.
//!
//! `UV_NO_CONFIG=1` keeps uv from reading `uv.toml` files (the node's or the
//! user's) and the `[tool.uv]` settings of the app's pyproject; the build is
//! then the same on every node.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;

/// Agent-environment variables that describe how this node reaches the
/// network, passed through to build tools.
const NETWORK_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Used when the agent itself runs without `PATH`.
const FALLBACK_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// What a build takes from the agent's own environment; the one place this
/// crate reads it, so tests can build one by hand.
#[derive(Debug, Clone, Default)]
pub(crate) struct NodeEnv {
    /// The agent's `PATH`, the default interpreter search path.
    pub path: Option<OsString>,
    /// The [`NETWORK_VARS`] that are set.
    pub network: Vec<(OsString, OsString)>,
}

impl NodeEnv {
    /// Reads the agent process' environment.
    pub fn from_process() -> Self {
        Self {
            path: std::env::var_os("PATH"),
            network: NETWORK_VARS
                .iter()
                .filter_map(|name| Some((OsString::from(name), std::env::var_os(name)?)))
                .collect(),
        }
    }
}

/// The full environment of one build tool. `search_path` is where
/// interpreters are looked up; `venv_bin` goes in front for commands that
/// run the app's own Python.
pub(crate) fn tool_env(
    node: &NodeEnv,
    config: &BTreeMap<String, String>,
    search_path: Option<&OsString>,
    home: &Path,
    cache_dir: &Path,
    venv: &Path,
    venv_bin_first: bool,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
    env.insert("LANG".into(), "C.UTF-8".into());
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    env.extend(node.network.iter().cloned());
    env.extend(config.iter().map(|(k, v)| (k.into(), v.into())));

    let search = search_path
        .or(node.path.as_ref())
        .cloned()
        .unwrap_or_else(|| FALLBACK_PATH.into());
    let path = if venv_bin_first {
        let mut p = venv.join("bin").into_os_string();
        p.push(":");
        p.push(&search);
        p
    } else {
        search
    };
    let fixed: [(&str, OsString); 9] = [
        ("PATH", path),
        ("HOME", home.into()),
        ("VIRTUAL_ENV", venv.into()),
        ("UV_PROJECT_ENVIRONMENT", venv.into()),
        ("UV_CACHE_DIR", cache_dir.into()),
        ("UV_PYTHON_DOWNLOADS", "never".into()),
        ("UV_NO_CONFIG", "1".into()),
        // No spinners or progress bars: only whole lines reach the log.
        ("UV_NO_PROGRESS", "1".into()),
        ("NO_COLOR", "1".into()),
    ];
    env.extend(fixed.into_iter().map(|(k, v)| (k.into(), v)));
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_cannot_override_what_the_build_controls() {
        let node = NodeEnv {
            path: Some("/node/bin".into()),
            network: vec![("SSL_CERT_FILE".into(), "/ca.pem".into())],
        };
        let config = BTreeMap::from([
            ("PATH".to_string(), "/evil".to_string()),
            ("UV_PYTHON_DOWNLOADS".to_string(), "automatic".to_string()),
            ("SECRET_KEY".to_string(), "s".to_string()),
            ("LANG".to_string(), "fr_FR.UTF-8".to_string()),
        ]);
        let home = Path::new("/b/home");
        let venv = Path::new("/b/app/.venv");
        let env = tool_env(&node, &config, None, home, Path::new("/c"), venv, true);
        let get = |k: &str| env.get(&OsString::from(k)).cloned();
        assert_eq!(get("PATH"), Some("/b/app/.venv/bin:/node/bin".into()));
        assert_eq!(get("UV_PYTHON_DOWNLOADS"), Some("never".into()));
        assert_eq!(get("SECRET_KEY"), Some("s".into()));
        assert_eq!(get("LANG"), Some("fr_FR.UTF-8".into()));
        assert_eq!(get("SSL_CERT_FILE"), Some("/ca.pem".into()));
        assert_eq!(get("HOME"), Some("/b/home".into()));

        let search = OsString::from("/only/here");
        let env = tool_env(
            &node,
            &config,
            Some(&search),
            home,
            Path::new("/c"),
            venv,
            false,
        );
        assert_eq!(env.get(&OsString::from("PATH")), Some(&search));
    }
}
