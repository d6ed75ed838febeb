//! The one error type of a build, with messages meant for the person deploying.

use std::io;

use berth_model::procfile::ProcfileError;
use thiserror::Error;

/// Why a build failed. Every message says what went wrong and, where the
/// user can fix it, what to change; the agent stores it as the build's error.
#[derive(Debug, Error)]
pub enum BuildError {
    /// A filesystem operation of the build itself failed (not the app's fault).
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },

    /// The upload is not a readable gzipped tar.
    #[error(
        "cannot read the source archive: {reason} — upload a gzipped tar of your app directory"
    )]
    Archive { reason: String },

    /// An entry that would write outside the app or is not a plain file,
    /// directory or link.
    #[error("refusing archive entry {entry:?}: {reason}")]
    UnsafeEntry { entry: String, reason: String },

    /// Nothing the build knows how to install.
    #[error("no Python app found: looked for requirements.txt, or pyproject.toml (with or without uv.lock), at the root of the source — add a requirements.txt that lists your dependencies")]
    NoPythonApp,

    /// A pyproject.toml that only configures tools, with no requirements.txt
    /// next to it.
    #[error("pyproject.toml has no [project] table, so it lists no dependencies — add a [project] table with `dependencies = [...]` (as `uv init` writes it), or add a requirements.txt")]
    NoProjectTable,

    /// pyproject.toml could not be parsed.
    #[error("pyproject.toml is not valid TOML: {reason}")]
    InvalidPyproject { reason: String },

    /// `.python-version` or `runtime.txt` holds something that is not a version.
    #[error("{file} reads {text:?}, which is not a Python version — write a version such as {example:?}")]
    InvalidPythonVersion {
        file: &'static str,
        text: String,
        example: &'static str,
    },

    /// The pinned Python version is not installed on this node.
    #[error("Python {requested} was requested by {file}, but only these interpreters are installed: {installed} — change {file} or install it on the node")]
    PythonNotInstalled {
        requested: String,
        file: &'static str,
        installed: String,
    },

    /// No version was pinned and uv found no interpreter at all.
    #[error("no Python interpreter found on the node:\n{output}\ninstall python3 on the node, or check the agent's interpreter search path")]
    NoPython { output: String },

    /// A tool (uv, the virtualenv's python) could not be started at all.
    #[error("could not start {program}: {source} — check that it is installed on the node")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },

    /// A build step ran and failed; `output` holds its last lines.
    #[error("{step} failed ({status}): {hint}\n{output}")]
    StepFailed {
        step: String,
        status: String,
        hint: String,
        output: String,
    },

    /// The app's Procfile does not parse.
    #[error(transparent)]
    Procfile(#[from] ProcfileError),

    /// No Procfile, and no framework the build can write one for.
    #[error("no Procfile found. Add a file named Procfile at the root of your app, e.g.:\n  web: gunicorn app:app\n(or for ASGI: web: uvicorn main:app --host 0.0.0.0 --port $PORT)")]
    NoProcfile,

    /// The Django settings say something the build cannot work with.
    #[error("Django app: {problem} — {hint}")]
    Django { problem: String, hint: String },
}

impl BuildError {
    /// An [`BuildError::Io`] saying what was being done.
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}
