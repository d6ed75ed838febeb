//! The test kit: `Berth::up()` starts a real `berth up` on free ports in a
//! temp dir with its own HOME; helpers run CLI commands against it and send
//! HTTP requests through its router.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The binary under test, built once by cargo for the whole suite.
pub const BERTH: &str = env!("CARGO_BIN_EXE_berth");

/// The uv cache shared by every test's builds, so wheels download once per
/// machine (CI points BERTH_TEST_UV_CACHE at a cached directory).
pub fn uv_cache() -> PathBuf {
    std::env::var_os("BERTH_TEST_UV_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("berth-test-uv-cache"))
}

/// The repository's `examples/` folder.
pub fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies a folder (for fixtures derived from an example).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A running `berth up`.
pub struct Berth {
    pub dir: TempDir,
    pub router_port: u16,
    child: Child,
    extra: Vec<String>,
}

/// Starts `berth up` in `dir` (log appended to `up.log`); returns it and
/// its router's port.
fn start_up(dir: &Path, extra: &[String]) -> (Child, u16) {
    let log_path = dir.join("up.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .unwrap();
    let skip = std::fs::read_to_string(&log_path)
        .map(|t| t.len())
        .unwrap_or(0);
    let child = Command::new(BERTH)
        .arg("up")
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
        ])
        .args(["--stop-grace", "5"])
        .args(extra)
        .env("HOME", dir.join("home"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("BERTH_URL")
        .env_remove("BERTH_TOKEN")
        .env("BERTH_UV_CACHE_DIR", uv_cache())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start berth up");
    let port = wait_for("berth up to start", Duration::from_secs(30), || {
        let text = std::fs::read_to_string(&log_path).ok()?;
        let line = text
            .get(skip..)?
            .lines()
            .find(|l| l.trim_start().starts_with("apps:"))?;
        let port = line
            .split("localhost:")
            .nth(1)?
            .split(|c: char| !c.is_ascii_digit())
            .next()?;
        port.parse().ok()
    });
    (child, port)
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Berth {
    /// Starts `berth up` with default settings.
    pub fn up() -> Self {
        Self::up_with(&[])
    }

    /// Starts `berth up` with extra flags.
    pub fn up_with(extra: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-test-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home")).unwrap();
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, router_port) = start_up(dir.path(), &extra);
        Self {
            dir,
            router_port,
            child,
            extra,
        }
    }

    /// Stops `berth up` (its app processes with it) and starts it again on
    /// the same data dir, as after a reboot.
    pub fn restart(&mut self) {
        self.stop();
        let (child, router_port) = start_up(self.dir.path(), &self.extra);
        self.child = child;
        self.router_port = router_port;
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("up.log")).unwrap_or_default()
    }

    /// A `berth` command with this Berth's HOME (and so its CLI config).
    pub fn command(&self) -> Command {
        let mut c = Command::new(BERTH);
        c.env("HOME", self.dir.path().join("home"))
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("BERTH_URL")
            .env_remove("BERTH_TOKEN")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    /// `berth run --app APP -- python -c CODE`, attached.
    pub fn run_python(&self, app: &str, code: &str) -> Output {
        self.run(&["run", "--app", app, "--", "python", "-c", code])
    }

    /// Runs a CLI command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`berth {}` failed:\n{}\n{}\n--- berth up log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a CLI command that must fail; returns stdout + stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success(),
            "`berth {}` should have failed:\n{text}",
            args.join(" ")
        );
        text
    }

    /// `ok` and parse stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Creates an app and deploys `dir` to it.
    pub fn create_and_deploy(&self, app: &str, dir: &Path) -> String {
        self.ok(&["apps", "create", app]);
        self.ok(&["deploy", dir.to_str().unwrap(), "--app", app])
    }

    /// Sends a request through the router with the given Host.
    pub fn request(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let client = http_client();
        let mut req = client
            .request(
                method.parse().unwrap(),
                format!("http://127.0.0.1:{}{path}", self.router_port),
            )
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req
            .send()
            .unwrap_or_else(|e| panic!("{method} {host}{path}: {e}"));
        Answer {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().unwrap_or_default(),
        }
    }

    pub fn get(&self, host: &str, path: &str) -> Answer {
        self.request("GET", host, path, &[])
    }

    /// The instances of an app, from `berth ps --json`.
    pub fn instances(&self, app: &str) -> Vec<serde_json::Value> {
        self.json(&["ps", "--app", app, "--json"])["instances"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

/// Requests sent without pause from several threads, counting every
/// answer that is not right. Threads alternate `GET path` with
/// `POST /echo` (a body the app must send back: a POST is never retried by
/// the router, so it shows any request lost); even threads keep their
/// connection alive as browsers and upstream proxies do, odd ones open a
/// new connection per request.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(u64, Vec<String>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failures: Vec<String>,
}

impl Load {
    pub fn start(berth: &Berth, host: &str, path: &str, threads: usize) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let base = format!("http://127.0.0.1:{}", berth.router_port);
        let threads = (0..threads)
            .map(|t| {
                let (stop, host) = (stop.clone(), host.to_string());
                let (get, echo) = (format!("{base}{path}"), format!("{base}/echo"));
                std::thread::spawn(move || {
                    let client = if t.is_multiple_of(2) {
                        http_client()
                    } else {
                        fresh_connection_client()
                    };
                    let (mut ok, mut failures) = (0, Vec::new());
                    let mut n = 0u64;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        n += 1;
                        let body = format!("thread {t} request {n}");
                        let post = n.is_multiple_of(2);
                        let sent = if post {
                            client.post(&echo).body(body.clone())
                        } else {
                            client.get(&get)
                        }
                        .header("host", &host)
                        .send();
                        match sent {
                            Ok(r) if r.status() == 200 => {
                                let text = r.text().unwrap_or_default();
                                if post && text != body {
                                    failures.push(format!(
                                        "POST /echo answered {text:?}, not {body:?}"
                                    ));
                                } else {
                                    ok += 1;
                                }
                            }
                            Ok(r) => failures.push(format!(
                                "{} {}: {}",
                                if post { "POST" } else { "GET" },
                                r.status(),
                                r.text().unwrap_or_default().trim()
                            )),
                            Err(e) => {
                                failures.push(format!("{}: {e}", if post { "POST" } else { "GET" }))
                            }
                        }
                    }
                    (ok, failures)
                })
            })
            .collect();
        Self { stop, threads }
    }

    pub fn stop(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut report = LoadReport {
            ok: 0,
            failures: Vec::new(),
        };
        for t in self.threads {
            let (ok, failures) = t.join().unwrap();
            report.ok += ok;
            report.failures.extend(failures);
        }
        report
    }
}

/// A client that opens a new connection for every request.
fn fresh_connection_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(0)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl Drop for Berth {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Berth {
    fn stop(&mut self) {
        // SIGTERM: berth stops its app processes before it exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `berth router --config` on a file holding `text`, killed on drop.
pub struct StandaloneRouter {
    child: Child,
    pub port: u16,
    dir: TempDir,
}

impl StandaloneRouter {
    pub fn start(text: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("router.toml");
        std::fs::write(&config, text).expect("write router.toml");
        let log_path = dir.path().join("router.log");
        let log = std::fs::File::create(&log_path).expect("router.log");
        let child = Command::new(BERTH)
            .args(["router", "--config"])
            .arg(&config)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start berth router");
        let port = wait_for("the router to listen", Duration::from_secs(10), || {
            let text = std::fs::read_to_string(&log_path).ok()?;
            text.split("listening on http://127.0.0.1:")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        });
        Self { child, port, dir }
    }

    /// Replaces the config file as editors and config tools do: write,
    /// then rename over it.
    pub fn write_config(&self, text: &str) {
        let tmp = self.dir.path().join("router.toml.tmp");
        std::fs::write(&tmp, text).expect("write router.toml");
        std::fs::rename(&tmp, self.dir.path().join("router.toml")).expect("rename router.toml");
    }

    /// What the router printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("router.log")).unwrap_or_default()
    }

    /// The most memory the router process has held (VmHWM), in bytes.
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("router's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmHWM")
            * 1024
    }
}

impl Drop for StandaloneRouter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
