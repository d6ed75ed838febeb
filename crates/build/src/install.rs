//! Installing the app's dependencies into `<app>/.venv` with uv.

use std::fs;

use crate::detect::Installer;
use crate::python::Interpreter;
use crate::steps::{Step, Tools};
use crate::{BuildError, LogSink};

/// Creates the virtualenv and installs into it, as `installer` says.
pub(crate) async fn install<L: LogSink>(
    tools: &Tools<'_, L>,
    installer: Installer,
    python: &Interpreter,
) -> Result<(), BuildError> {
    let venv = tools.venv();
    if fs::symlink_metadata(&venv).is_ok() {
        // One built elsewhere would point at another machine's interpreter.
        tools.notice("the upload contains a .venv directory; it is replaced by a fresh one (leave it out of your upload to make deploys smaller)");
        let removed = match fs::symlink_metadata(&venv).map(|m| m.is_dir()) {
            Ok(true) => fs::remove_dir_all(&venv),
            _ => fs::remove_file(&venv),
        };
        removed.map_err(|e| BuildError::io("removing the uploaded .venv", e))?;
    }
    match installer {
        Installer::Requirements => requirements(tools, python).await,
        Installer::UvLock | Installer::Pyproject => sync(tools, installer, python).await,
    }
}

async fn requirements<L: LogSink>(
    tools: &Tools<'_, L>,
    python: &Interpreter,
) -> Result<(), BuildError> {
    tools.header("Creating virtualenv");
    let mut venv = tools.uv();
    venv.args(["venv", "--no-project", "--python"])
        .arg(&python.path)
        .arg(tools.venv());
    let step = Step {
        what: "creating the virtualenv".into(),
        hint: format!(
            "uv could not create a virtualenv with {}; check that interpreter on the node",
            python.path.display()
        ),
    };
    tools.stream(venv, &step).await?;

    tools.header("Installing dependencies from requirements.txt with uv");
    let mut pip = tools.uv();
    pip.args(["pip", "install", "--python"])
        .arg(tools.venv_python())
        .args(["-r", "requirements.txt"]);
    let step = Step {
        what: "installing dependencies from requirements.txt".into(),
        hint: format!(
            "check requirements.txt: a package name or version may be wrong, or not available for Python {}",
            python.version
        ),
    };
    tools.stream(pip, &step).await
}

async fn sync<L: LogSink>(
    tools: &Tools<'_, L>,
    installer: Installer,
    python: &Interpreter,
) -> Result<(), BuildError> {
    let (frozen, header, hint) = match installer {
        Installer::UvLock => (
            true,
            "Installing dependencies from uv.lock with uv sync",
            "check that uv.lock is up to date with pyproject.toml (run `uv lock` and deploy again)",
        ),
        _ => (
            false,
            "Installing dependencies from pyproject.toml with uv sync (no uv.lock: versions are resolved now; commit a uv.lock for repeatable builds)",
            "check the dependencies in pyproject.toml: a package name or version may be wrong",
        ),
    };
    tools.header(header);
    // UV_PROJECT_ENVIRONMENT (see `env`) makes the environment `<app>/.venv`.
    let mut sync = tools.uv();
    sync.arg("sync");
    if frozen {
        sync.arg("--frozen");
    }
    sync.args(["--no-dev", "--python"]).arg(&python.path);
    let step = Step {
        what: format!("installing dependencies from {}", installer.source()),
        hint: format!("{hint}; the app runs on Python {}", python.version),
    };
    tools.stream(sync, &step).await
}

/// Adds packages the build needs (e.g. gunicorn for a generated Procfile).
pub(crate) async fn add_packages<L: LogSink>(
    tools: &Tools<'_, L>,
    packages: &[&str],
    hint: &str,
) -> Result<(), BuildError> {
    let mut pip = tools.uv();
    pip.args(["pip", "install", "--python"])
        .arg(tools.venv_python())
        .args(packages);
    let step = Step {
        what: format!("installing {}", packages.join(", ")),
        hint: hint.to_owned(),
    };
    tools.stream(pip, &step).await
}
