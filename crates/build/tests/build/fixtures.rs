//! Test kit: source archives made on the fly, and builds run with the real
//! uv against PyPI through one cache shared by every test and every run.
//! Set `BERTH_TEST_SHOW_LOG=1` (with `--nocapture`) to print every build's log.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use berth_build::{build, BuildError, BuildOptions};
use berth_model::Artifact;
use flate2::write::GzEncoder;
use flate2::Compression;
use tokio::sync::mpsc;

/// A minimal Flask app with a Procfile.
pub const FLASK_APP: &[(&str, &str)] = &[
    ("requirements.txt", "flask\ngunicorn\n"),
    (
        "Procfile",
        "web: gunicorn app:app\nrelease: python -c 'print(\"migrated\")'\n",
    ),
    (
        "app.py",
        "from flask import Flask\n\napp = Flask(__name__)\n\n\n@app.route(\"/\")\ndef hello():\n    return \"hello\"\n",
    ),
];

/// A minimal Django project without a Procfile and without gunicorn in its
/// requirements. Its settings fail to import if the test process'
/// environment leaks into the build, or if config vars do not reach it.
pub const DJANGO_APP: &[(&str, &str)] = &[
    ("requirements.txt", "django\n"),
    (
        "manage.py",
        r#"#!/usr/bin/env python
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"#,
    ),
    ("mysite/__init__.py", ""),
    (
        "mysite/settings.py",
        r#"import os
from pathlib import Path

assert "CARGO_MANIFEST_DIR" not in os.environ, "the agent's environment leaked into the build"

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ["SECRET_KEY"]
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["django.contrib.staticfiles"]
ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "assets"]
"#,
    ),
    ("mysite/urls.py", "urlpatterns = []\n"),
    (
        "mysite/wsgi.py",
        r#"import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
application = get_wsgi_application()
"#,
    ),
    ("assets/site.css", "body { color: teal; }\n"),
];

/// A temp dir for one test (next to the shared uv cache, so uv can hardlink
/// from the cache) and the build options every test uses.
pub struct Kit {
    pub dir: tempfile::TempDir,
    pub opts: BuildOptions,
}

/// What a build returned and what it logged.
pub struct Built {
    pub result: Result<Artifact, BuildError>,
    pub log: Vec<String>,
    pub took: Duration,
}

impl Built {
    pub fn artifact(&self) -> &Artifact {
        match &self.result {
            Ok(a) => a,
            Err(e) => panic!("build failed: {e}\n--- log ---\n{}", self.log.join("\n")),
        }
    }

    pub fn error(&self) -> String {
        match &self.result {
            Ok(a) => panic!(
                "build succeeded: {a:?}\n--- log ---\n{}",
                self.log.join("\n")
            ),
            Err(e) => e.to_string(),
        }
    }
}

impl Kit {
    pub fn new() -> Self {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let dir = tempfile::Builder::new()
            .prefix("berth-build-")
            .tempdir_in(base)
            .expect("creating the test dir");
        let opts = BuildOptions::new(uv(), base.join("uv-cache"));
        Self { dir, opts }
    }

    /// Writes a gzipped tar of `files` (paths relative to the app root).
    pub fn archive(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, text) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(text.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, path, text.as_bytes())
                .expect("adding to the archive");
        }
        let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
        gz.write_all(&tar.into_inner().expect("finishing the tar"))
            .expect("compressing");
        let path = self.dir.path().join(format!("{name}.tar.gz"));
        std::fs::write(&path, gz.finish().expect("compressing")).expect("writing the archive");
        path
    }

    /// Builds `files` into `<dir>/<name>`.
    pub async fn build(&self, name: &str, files: &[(&str, &str)]) -> Built {
        let archive = self.archive(name, files);
        self.build_archive(&archive, name).await
    }

    pub async fn build_archive(&self, archive: &Path, name: &str) -> Built {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let start = Instant::now();
        let result = build(archive, &self.dir.path().join(name), &self.opts, &tx).await;
        let took = start.elapsed();
        drop(tx);
        let mut log = Vec::new();
        while let Some(line) = rx.recv().await {
            log.push(line);
        }
        if std::env::var_os("BERTH_TEST_SHOW_LOG").is_some() {
            let outcome = match &result {
                Ok(a) => format!("{a:#?}"),
                Err(e) => format!("error: {e}"),
            };
            println!("=== {name} ({took:?})\n{}\n=== {outcome}", log.join("\n"));
        }
        Built { result, log, took }
    }
}

/// The real uv: `$BERTH_TEST_UV`, else `uv` on `PATH` (through `pyenv
/// which` when that is a pyenv shim, to skip the shim's bash on every call).
fn uv() -> PathBuf {
    if let Some(uv) = std::env::var_os("BERTH_TEST_UV") {
        return uv.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("uv"))
        .find(|p| p.is_file())
        .expect("these tests need uv on PATH (or BERTH_TEST_UV)");
    if found.parent().is_some_and(|d| d.ends_with("shims")) {
        if let Ok(out) = Command::new("pyenv").args(["which", "uv"]).output() {
            let real = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() && !real.is_empty() {
                return real.into();
            }
        }
    }
    found
}

/// Runs the virtualenv's python of `artifact` with `code`.
pub fn venv_python(artifact: &Artifact, code: &str) -> String {
    let python = Path::new(&artifact.dir).join(".venv/bin/python");
    let out = Command::new(&python)
        .args(["-c", code])
        .output()
        .expect("running the venv's python");
    assert!(
        out.status.success(),
        "{code}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
