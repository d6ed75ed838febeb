//! Which Python the app runs on: the version it pins, if any, resolved to an
//! interpreter installed on the node (uv never downloads one here).

use std::path::{Path, PathBuf};

use crate::detect::read;
use crate::steps::{Step, Tools};
use crate::{BuildError, LogSink};

/// A version pinned by the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PythonRequest {
    /// What uv is asked for, e.g. `3.11` or `3.11.7`.
    pub version: String,
    /// The file that asked for it.
    pub file: &'static str,
}

/// The interpreter the virtualenv is made from.
#[derive(Debug, Clone)]
pub(crate) struct Interpreter {
    /// Its real executable (not a pyenv-style shim, whose meaning changes
    /// when the node's default version does).
    pub path: PathBuf,
    /// Its full version, e.g. `3.11.7`.
    pub version: String,
}

/// Prints the real executable and the version of an interpreter.
const IDENTIFY: &str =
    "import platform, sys; print(sys.executable); print(platform.python_version())";

/// Reads `.python-version` (uv's file; first non-comment line) or, failing
/// that, Heroku's `runtime.txt` (`python-3.11.7`).
pub(crate) fn read_request(app: &Path) -> Result<Option<PythonRequest>, BuildError> {
    if app.join(".python-version").is_file() {
        let text = read(app, ".python-version")?;
        let version = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .unwrap_or("");
        return parse_request(version, ".python-version", version, "3.11").map(Some);
    }
    if app.join("runtime.txt").is_file() {
        let text = read(app, "runtime.txt")?;
        let text = text.trim();
        let version = text.strip_prefix("python-").unwrap_or("");
        let numeric = version.split('.').count() >= 2
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let version = if numeric { version } else { "" };
        return parse_request(version, "runtime.txt", text, "python-3.11.7").map(Some);
    }
    Ok(None)
}

/// Checks a request is something uv understands as a version request and
/// not, say, a command-line flag.
fn parse_request(
    version: &str,
    file: &'static str,
    text: &str,
    example: &'static str,
) -> Result<PythonRequest, BuildError> {
    let ok = version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".@+_-<>=,!~*".contains(c));
    if !ok {
        return Err(BuildError::InvalidPythonVersion {
            file,
            text: text.to_owned(),
            example,
        });
    }
    Ok(PythonRequest {
        version: version.to_owned(),
        file,
    })
}

/// Finds the interpreter for `request`, or uv's default one, among those
/// installed on the node.
pub(crate) async fn resolve<L: LogSink>(
    tools: &Tools<'_, L>,
    request: Option<&PythonRequest>,
) -> Result<Interpreter, BuildError> {
    // `--system`: never report the interpreter of a virtualenv, such as one
    // that came with the upload. Run outside the app: the request is explicit,
    // and version-manager shims (pyenv's) would obey the app's own
    // .python-version and fail when it names a missing version.
    let mut find = tools.uv();
    find.current_dir(&tools.home)
        .args(["python", "find", "--system"]);
    if let Some(r) = request {
        find.arg(&r.version);
    }
    let found = tools.capture(find).await?;
    let path = found.stdout.trim();
    if !found.status.success() || path.is_empty() {
        return Err(match request {
            Some(r) => BuildError::PythonNotInstalled {
                requested: r.version.clone(),
                file: r.file,
                installed: installed(tools).await,
            },
            None => BuildError::NoPython {
                output: found.stderr.trim().to_owned(),
            },
        });
    }

    // Ask the interpreter itself for its real path and exact version.
    let mut identify = tools.command(Path::new(path), false);
    identify.current_dir(&tools.home).args(["-c", IDENTIFY]);
    let step = Step {
        what: format!("running the Python interpreter at {path}"),
        hint: "the interpreter uv found does not run; check the Python installations on the node"
            .into(),
    };
    let ran = tools.capture(identify).await?;
    let mut lines = ran.stdout.lines().map(str::trim);
    let (Some(real), Some(version), true) = (lines.next(), lines.next(), ran.status.success())
    else {
        return Err(ran.failure(&step));
    };
    let real = match real.is_empty() {
        true => PathBuf::from(path),
        false => PathBuf::from(real),
    };
    let from = match request {
        Some(r) => format!("from {}", r.file),
        None => "the node's default; pin one with .python-version".to_owned(),
    };
    tools.header(&format!("Using Python {version} ({from})"));
    Ok(Interpreter {
        path: real,
        version: version.to_owned(),
    })
}

/// The versions of the interpreters uv can see, for an error message.
async fn installed<L: LogSink>(tools: &Tools<'_, L>) -> String {
    let mut list = tools.uv();
    list.current_dir(&tools.home).args([
        "python",
        "list",
        "--only-installed",
        "--output-format",
        "json",
    ]);
    let versions = match tools.capture(list).await {
        Ok(out) if out.status.success() => versions(&out.stdout),
        _ => Vec::new(),
    };
    match versions.is_empty() {
        true => "none".to_owned(),
        false => versions.join(", "),
    }
}

/// The distinct `version`s of `uv python list --output-format json`, in order.
fn versions(json: &str) -> Vec<String> {
    let list: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for item in list {
        if let Some(v) = item.get("version").and_then(|v| v.as_str()) {
            if !out.iter().any(|seen| seen == v) {
                out.push(v.to_owned());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(files: &[(&str, &str)]) -> Result<Option<PythonRequest>, BuildError> {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        read_request(dir.path())
    }

    #[test]
    fn reads_pinned_versions() {
        let got = request(&[(".python-version", "# pinned\n\n3.11\n")]).unwrap();
        assert_eq!(
            got,
            Some(PythonRequest {
                version: "3.11".into(),
                file: ".python-version"
            })
        );
        let got = request(&[("runtime.txt", "python-3.11.7\n")]).unwrap();
        assert_eq!(got.map(|r| r.version), Some("3.11.7".into()));
        let got = request(&[
            (".python-version", "3.12"),
            ("runtime.txt", "python-3.11.7"),
        ]);
        assert_eq!(got.unwrap().map(|r| r.file), Some(".python-version"));
        assert_eq!(request(&[]).unwrap(), None);
    }

    #[test]
    fn refuses_what_is_not_a_version() {
        for (file, text) in [
            (".python-version", "--python=/bin/sh"),
            (".python-version", ""),
            ("runtime.txt", "3.11.7"),
            ("runtime.txt", "python-3"),
            ("runtime.txt", "python-3.x"),
        ] {
            let err = request(&[(file, text)]).unwrap_err();
            assert!(err.to_string().contains("not a Python version"), "{err}");
        }
    }

    #[test]
    fn lists_distinct_versions() {
        let json = r#"[{"version":"3.11.7","path":"/a"},{"version":"3.11.7","path":"/b"},{"version":"3.11.2"}]"#;
        assert_eq!(versions(json), ["3.11.7", "3.11.2"]);
        assert!(versions("not json").is_empty());
    }
}
