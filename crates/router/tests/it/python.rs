//! Python tools for tests (`h2`, `websockets`, …): a virtualenv per set of
//! packages, made once per machine with uv and shared by every test.
//!
//! Tests run in parallel processes (nextest), so a venv is built in a
//! scratch directory and renamed into place: whoever renames first wins and
//! the others use theirs. Wheels come from the suite's uv cache
//! (`BERTH_TEST_UV_CACHE`), so CI downloads them once.

use std::path::PathBuf;
use std::process::Command;

/// The uv cache shared with the rest of the suite.
fn uv_cache() -> PathBuf {
    std::env::var_os("BERTH_TEST_UV_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-test-uv-cache"))
}

/// The `python` of a venv holding `packages` (pip requirement strings),
/// built on first use. Run tools as `python -m module`.
pub fn python_with(packages: &[&str]) -> PathBuf {
    let key = fnv1a(packages.join("\n").as_bytes());
    let venv = std::env::temp_dir().join(format!("berth-router-py-{key:016x}"));
    let python = venv.join("bin/python");
    if python.exists() {
        return python;
    }
    let scratch = tempfile::Builder::new()
        .prefix("berth-router-py-build-")
        .tempdir_in(std::env::temp_dir())
        .expect("scratch dir for a venv");
    let building = scratch.path().join("venv");
    run(Command::new("uv")
        .args(["venv", "--quiet", "--relocatable", "--python", "python3"])
        .arg(&building));
    run(Command::new("uv")
        .args(["pip", "install", "--quiet", "--python"])
        .arg(building.join("bin/python"))
        .args(packages)
        .env("UV_CACHE_DIR", uv_cache()));
    // Another process may have won the race; its venv is as good as ours.
    if std::fs::rename(&building, &venv).is_err() {
        assert!(
            python.exists(),
            "venv {} could not be put in place",
            venv.display()
        );
    }
    python
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (is uv installed?): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A hash that stays the same across Rust releases, so venvs are reused.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[test]
fn a_venv_is_built_once_and_runs_its_packages() {
    let python = python_with(&["h11==0.16.0"]);
    let out = Command::new(&python)
        .args(["-c", "import h11; print(h11.__version__)"])
        .output()
        .expect("run the venv's python");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0.16.0");
    assert_eq!(python_with(&["h11==0.16.0"]), python);
}
