//! The build step of `berth deploy`: from an uploaded source archive to an
//! app directory with its own virtualenv and a list of processes to run.
//!
//! A build unpacks the archive into `<dest>/app`, finds out how the app
//! declares its dependencies, installs them with `uv` into `<app>/.venv`,
//! and reads the Procfile — or, for a Django app without one, writes the
//! `web` process itself and collects its static files. Every line the tools
//! print goes to a [`LogSink`] as it comes, so `berth deploy` can show it live.
//!
//! Build tools run with a cleared environment (see the `env` module): the
//! agent's own secrets never reach an app's `setup.py` or settings module.
//!
//! # Layout
//! - [`unpack()`]: safe extraction of the archive (no `..`, no escaping links).
//! - `detect`: which installer (`uv.lock`, `requirements.txt`, `pyproject.toml`),
//!   the Procfile, a single wrapping top-level directory.
//! - `python`: the pinned interpreter (`.python-version`, `runtime.txt`).
//! - `env`: the environment build tools see; `steps`: running them with
//!   streamed output; `install`: the uv commands.
//! - `django`: settings, the generated `web` process, `collectstatic`.
//! - [`BuildError`]: every way a build fails, in words for the user.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use berth_model::procfile::Procfile;
use berth_model::Artifact;
use tokio::sync::mpsc;

mod detect;
mod django;
mod env;
mod error;
mod install;
mod python;
mod steps;
mod unpack;

pub use error::BuildError;
pub use unpack::unpack;

use env::NodeEnv;
use steps::Tools;

/// Node-level settings of a build; the same for every build of an agent
/// except `env`, which is the app's config.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The `uv` binary.
    pub uv: PathBuf,
    /// `UV_CACHE_DIR`: kept across builds so that a redeploy with unchanged
    /// dependencies downloads and builds nothing.
    pub cache_dir: PathBuf,
    /// The app's config vars, visible to build steps (e.g. `collectstatic`).
    pub env: BTreeMap<String, String>,
    /// `PATH` used to find Python interpreters; `None` = the agent's `PATH`.
    pub python_search_path: Option<OsString>,
}

impl BuildOptions {
    /// Options with no config vars and the agent's `PATH` for interpreters.
    pub fn new(uv: impl Into<PathBuf>, cache_dir: impl Into<PathBuf>) -> Self {
        Self {
            uv: uv.into(),
            cache_dir: cache_dir.into(),
            env: BTreeMap::new(),
            python_search_path: None,
        }
    }
}

/// Where build output goes, one line at a time, without trailing newline.
///
/// Lines are the tools' own output, unprefixed, plus `-----> ` headers
/// before each step and ` !     ` notices; the receiver adds source and time.
/// Implemented for an unbounded channel sender (sending never blocks a build)
/// and for closures.
pub trait LogSink: Sync {
    /// Takes one line of build output.
    fn line(&self, line: &str);
}

impl LogSink for mpsc::UnboundedSender<String> {
    fn line(&self, line: &str) {
        // A closed receiver means nobody is watching; the build goes on.
        let _ = self.send(line.to_owned());
    }
}

impl<F: Fn(&str) + Sync> LogSink for F {
    fn line(&self, line: &str) {
        self(line)
    }
}

/// Builds the gzipped tar `archive` in the fresh directory `dest`.
///
/// The app lands in `<dest>/app` (or, when the archive wraps everything in
/// one top-level directory, in that directory), with its virtualenv in
/// `.venv`; `<dest>/home` is the tools' `HOME`. Dropping the future kills
/// the running tool.
#[tracing::instrument(skip_all, fields(dest = %dest.display()))]
pub async fn build(
    archive: &Path,
    dest: &Path,
    opts: &BuildOptions,
    log: &impl LogSink,
) -> Result<Artifact, BuildError> {
    let source = dest.join("app");
    let (from, to) = (archive.to_path_buf(), source.clone());
    tokio::task::spawn_blocking(move || unpack(&from, &to))
        .await
        .map_err(|e| BuildError::io("unpacking the source archive", std::io::Error::other(e)))??;
    let app = detect::app_root(&source)?;
    let home = dest.join("home");
    std::fs::create_dir_all(&home)
        .map_err(|e| BuildError::io(format!("creating {}", home.display()), e))?;
    let tools = Tools::new(opts, app, home, NodeEnv::from_process(), log);

    let installer = detect::installer(&tools.app)?;
    let procfile = detect::procfile(&tools.app)?;
    let manage_py = tools.app.join("manage.py").is_file();
    if procfile.is_none() && !manage_py {
        // Fail before spending a minute installing dependencies.
        return Err(BuildError::NoProcfile);
    }
    tools.header(&format!(
        "Python app detected (dependencies from {})",
        installer.source()
    ));

    let request = python::read_request(&tools.app)?;
    let python = python::resolve(&tools, request.as_ref()).await?;
    install::install(&tools, installer, &python).await?;

    let django = match manage_py {
        true => django::inspect(&tools).await?,
        false => None,
    };
    let static_files = match &django {
        Some(settings) => django::collect_static(&tools, settings).await?,
        None => None,
    };
    let procfile = match (procfile, &django) {
        (Some(procfile), _) => procfile,
        (None, Some(settings)) => django::procfile(&tools, settings).await?,
        (None, None) => return Err(BuildError::NoProcfile),
    };
    let types: Vec<&str> = procfile.processes.keys().map(String::as_str).collect();
    tools.header(&format!("Procfile declares types -> {}", types.join(", ")));

    let mut stack = format!("python {}, {}", python.version, installer.source());
    if django.is_some() {
        stack.push_str(", django");
    }
    let Procfile { processes, release } = procfile;
    Ok(Artifact {
        dir: tools.app.display().to_string(),
        processes,
        release_command: release,
        static_files,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[test]
    fn build_future_is_send() {
        let (tx, _rx) = mpsc::unbounded_channel::<String>();
        let opts = BuildOptions::new("uv", "/nonexistent");
        let fut = build(Path::new("a.tgz"), Path::new("d"), &opts, &tx);
        assert_send(&fut);
    }
}
