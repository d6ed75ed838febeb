//! What kind of app was uploaded: where its root is, how its dependencies
//! are declared, and its Procfile.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_model::procfile::{self, Procfile};

use crate::BuildError;

/// Files that mark the root of an app.
const MARKERS: &[&str] = &[
    "requirements.txt",
    "pyproject.toml",
    "Procfile",
    "manage.py",
];

/// How the app's dependencies get installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Installer {
    /// `pyproject.toml` with a `uv.lock`: `uv sync --frozen`.
    UvLock,
    /// `requirements.txt`: a virtualenv and `uv pip install -r`.
    Requirements,
    /// `pyproject.toml` with a `[project]` table but no lock: `uv sync`.
    Pyproject,
}

impl Installer {
    /// The file the dependencies come from, for the log and the stack.
    pub fn source(self) -> &'static str {
        match self {
            Self::UvLock => "uv.lock",
            Self::Requirements => "requirements.txt",
            Self::Pyproject => "pyproject.toml",
        }
    }
}

/// The app directory inside the unpacked `source`: `source` itself, or its
/// only entry when that is a directory and `source` holds none of the usual
/// root files (archives made with `git archive --prefix=app/`, or a tar of
/// the directory rather than its contents). Canonical, so that paths given
/// to tools and in the artifact are absolute.
pub(crate) fn app_root(source: &Path) -> Result<PathBuf, BuildError> {
    let source = canonical(source)?;
    if MARKERS.iter().any(|m| source.join(m).exists()) {
        return Ok(source);
    }
    let read = |e| BuildError::io(format!("reading {}", source.display()), e);
    let entries: Vec<fs::DirEntry> = fs::read_dir(&source)
        .map_err(read)?
        .collect::<io::Result<_>>()
        .map_err(read)?;
    match entries.as_slice() {
        [only] if only.file_type().is_ok_and(|t| t.is_dir()) => canonical(&only.path()),
        _ => Ok(source),
    }
}

fn canonical(path: &Path) -> Result<PathBuf, BuildError> {
    path.canonicalize()
        .map_err(|e| BuildError::io(format!("resolving {}", path.display()), e))
}

/// Picks the installer. A lock file is the most precise statement of what
/// to install, so it wins; then `requirements.txt`, which many apps keep
/// next to a `pyproject.toml` that only configures tools.
pub(crate) fn installer(app: &Path) -> Result<Installer, BuildError> {
    let has = |name: &str| app.join(name).is_file();
    let project = match has("pyproject.toml") {
        true => Some(pyproject_has_project(&read(app, "pyproject.toml")?)?),
        false => None,
    };
    match project {
        Some(true) if has("uv.lock") => Ok(Installer::UvLock),
        _ if has("requirements.txt") => Ok(Installer::Requirements),
        Some(true) => Ok(Installer::Pyproject),
        Some(false) => Err(BuildError::NoProjectTable),
        None => Err(BuildError::NoPythonApp),
    }
}

/// Whether a pyproject.toml declares a project (and so dependencies).
fn pyproject_has_project(text: &str) -> Result<bool, BuildError> {
    let table: toml::Table = toml::from_str(text).map_err(|e| BuildError::InvalidPyproject {
        reason: e.message().to_owned(),
    })?;
    Ok(table.get("project").is_some_and(toml::Value::is_table))
}

/// The app's Procfile, parsed, if it has one.
pub(crate) fn procfile(app: &Path) -> Result<Option<Procfile>, BuildError> {
    if !app.join("Procfile").is_file() {
        return Ok(None);
    }
    Ok(Some(procfile::parse(&read(app, "Procfile")?)?))
}

/// Reads a text file of the app.
pub(crate) fn read(app: &Path, name: &str) -> Result<String, BuildError> {
    let bytes =
        fs::read(app.join(name)).map_err(|e| BuildError::io(format!("reading {name}"), e))?;
    String::from_utf8(bytes).map_err(|_| {
        BuildError::io(
            format!("reading {name}"),
            io::Error::new(io::ErrorKind::InvalidData, "it is not UTF-8 text"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    const PROJECT: &str = "[project]\nname = \"x\"\nversion = \"0\"\n";

    #[test]
    fn picks_the_installer() {
        let cases: &[(&[(&str, &str)], Installer)] = &[
            (&[("requirements.txt", "")], Installer::Requirements),
            (&[("pyproject.toml", PROJECT)], Installer::Pyproject),
            (
                &[("pyproject.toml", PROJECT), ("uv.lock", "")],
                Installer::UvLock,
            ),
            (
                &[
                    ("pyproject.toml", "[tool.black]\n"),
                    ("requirements.txt", ""),
                ],
                Installer::Requirements,
            ),
            (
                &[("pyproject.toml", PROJECT), ("requirements.txt", "")],
                Installer::Requirements,
            ),
        ];
        for (files, want) in cases {
            let dir = app(files);
            assert_eq!(installer(dir.path()).unwrap(), *want, "{files:?}");
        }
    }

    #[test]
    fn explains_what_is_missing() {
        let dir = app(&[("app.py", "")]);
        let err = installer(dir.path()).unwrap_err();
        assert!(matches!(err, BuildError::NoPythonApp));
        assert!(err.to_string().contains("requirements.txt"), "{err}");

        let dir = app(&[("pyproject.toml", "[tool.ruff]\n")]);
        let err = installer(dir.path()).unwrap_err();
        assert!(err.to_string().contains("[project]"), "{err}");

        let dir = app(&[("pyproject.toml", "[project\n")]);
        let err = installer(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }

    #[test]
    fn unwraps_a_single_top_level_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("myapp")).unwrap();
        fs::write(dir.path().join("myapp/requirements.txt"), "").unwrap();
        let root = app_root(dir.path()).unwrap();
        assert!(root.ends_with("myapp"), "{}", root.display());

        fs::write(dir.path().join("requirements.txt"), "").unwrap();
        let root = app_root(dir.path()).unwrap();
        assert_eq!(root, dir.path().canonicalize().unwrap());
    }

    #[test]
    fn procfile_errors_carry_the_line() {
        let dir = app(&[("Procfile", "web gunicorn\n")]);
        let err = procfile(dir.path()).unwrap_err();
        assert!(err.to_string().starts_with("Procfile line 1"), "{err}");
        assert_eq!(procfile(app(&[]).path()).unwrap(), None);
    }
}
