//! HTTP checks of one instance: the readiness probe every web process must
//! pass (it answers HTTP), and the app's health check (`GET path` with the
//! app's Host header; 2xx and 3xx pass, anything else or no answer fails).

use std::time::Duration;

use berth_model::HealthCheck;

/// What the readiness probe asks for: a path no app serves, so that the
/// probe has no side effect (any answer, a 404 included, means ready).
const READINESS_PATH: &str = "/.well-known/berth-readiness";

/// Checks one instance; cheap to clone.
#[derive(Clone)]
pub struct Checker {
    http: reqwest::Client,
}

impl Checker {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            // The check goes straight to the process: never through an
            // HTTP proxy from the agent's environment, never following a
            // redirect to somewhere else.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(0)
            .build()
            .unwrap_or_default();
        Self { http }
    }

    /// Whether the process on `addr` answers HTTP at all (any status): a pre-fork server listens before its workers have loaded the
    /// app, and requests queued in its backlog meanwhile would be reset if it
    /// were stopped then — so an instance is up only once it answers.
    pub async fn answers(&self, addr: &str, host: &str, timeout: Duration) -> Result<(), String> {
        self.http
            .head(format!("http://{addr}{READINESS_PATH}"))
            .header(reqwest::header::HOST, host)
            .header(reqwest::header::USER_AGENT, "berth-readiness-probe")
            .timeout(timeout)
            .send()
            .await
            .map(drop)
            .map_err(|e| {
                if e.is_timeout() {
                    format!(
                        "HEAD {READINESS_PATH} did not answer within {}s",
                        timeout.as_secs()
                    )
                } else {
                    format!("HEAD {READINESS_PATH} got no HTTP answer")
                }
            })
    }

    /// One check of the process listening on `addr`; `Err` says why it failed.
    pub async fn check(&self, addr: &str, host: &str, hc: &HealthCheck) -> Result<(), String> {
        let url = format!("http://{addr}{}", hc.path);
        let resp = self
            .http
            .get(&url)
            .header(reqwest::header::HOST, host)
            .header(reqwest::header::USER_AGENT, "berth-health-check")
            .timeout(Duration::from_millis(hc.timeout_ms))
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() || r.status().is_redirection() => Ok(()),
            Ok(r) => Err(format!("GET {} answered {}", hc.path, r.status())),
            Err(e) if e.is_timeout() => Err(format!(
                "GET {} did not answer within {}ms",
                hc.path, hc.timeout_ms
            )),
            Err(_) => Err(format!("GET {} could not connect", hc.path)),
        }
    }
}
