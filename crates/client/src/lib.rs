//! Typed client for Berth's `/v1` HTTP API.
//!
//! One client serves every role that talks to the control plane: the CLI,
//! the agents (desired state, reports, build claims) and the routers (route
//! table). Long-polls take a `wait` and get a request timeout beyond it.
//!
//! # Layout
//! - [`Client`]: the calls, one method each.
//! - [`ClientError`]: what went wrong, split into "could not reach the
//!   server" and "the server said no" so callers can retry only the first.
//! - [`logs`]: a batching log shipper for agents and routers.
//! - [`attach`]: the WebSocket ends of an attached one-off process.

pub mod attach;
pub mod logs;

use std::time::Duration;

use berth_model::*;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use thiserror::Error;

/// What went wrong talking to the control plane.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("cannot reach the Berth server at {url}: {reason} — is it running? (start it with `berth up`, or set BERTH_URL)")]
    Unreachable { url: String, reason: String },
    #[error("{message}")]
    Api { status: u16, message: String },
    #[error("unexpected answer from the Berth server ({what}): {reason}")]
    Decode { what: String, reason: String },
    #[error("invalid server URL {0:?}: use e.g. http://127.0.0.1:7070")]
    BadUrl(String),
}

impl ClientError {
    /// True when the server was not reached or failed in a way worth retrying.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unreachable { .. } => true,
            Self::Api { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The HTTP status the server answered with, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A handle on one Berth server; cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Extra time a long-poll request gets beyond the wait the server honours.
const LONG_POLL_SLACK: Duration = Duration::from_secs(15);
/// Timeout of ordinary API calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Client {
    /// A client for the server at `base` (e.g. `http://127.0.0.1:7070`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base));
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::BadUrl(format!("{base}: {e}")))?;
        Ok(Self { http, base, token })
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str, timeout: Duration) -> reqwest::RequestBuilder {
        let mut req = self
            .http
            .request(method, format!("{}{}", self.base, path))
            .timeout(timeout);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, ClientError> {
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ApiError>(&body)
            .map(|e| e.error)
            .unwrap_or_else(|_| {
                if body.trim().is_empty() {
                    format!("the server answered {status}")
                } else {
                    format!("the server answered {status}: {}", body.trim())
                }
            });
        Err(ClientError::Api {
            status: status.as_u16(),
            message,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<T, ClientError> {
        let resp = self.send(req).await?;
        resp.json::<T>().await.map_err(|e| ClientError::Decode {
            what: what.to_string(),
            reason: error_chain(&e),
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.json(self.request(Method::GET, path, CALL_TIMEOUT), path)
            .await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.json(
            self.request(Method::POST, path, CALL_TIMEOUT).json(body),
            path,
        )
        .await
    }

    async fn long_poll<T: DeserializeOwned>(
        &self,
        path: &str,
        wait: Duration,
    ) -> Result<T, ClientError> {
        self.json(
            self.request(Method::GET, path, wait + LONG_POLL_SLACK),
            path,
        )
        .await
    }

    /// `GET /v1/info`.
    pub async fn info(&self) -> Result<Info, ClientError> {
        self.get("/v1/info").await
    }

    /// `GET /v1/apps`.
    pub async fn list_apps(&self) -> Result<Vec<App>, ClientError> {
        self.get("/v1/apps").await
    }

    /// `POST /v1/apps`.
    pub async fn create_app(&self, name: &str) -> Result<App, ClientError> {
        self.post("/v1/apps", &CreateApp { name: name.into() })
            .await
    }

    /// `GET /v1/apps/{app}`.
    pub async fn app(&self, app: &str) -> Result<App, ClientError> {
        self.get(&format!("/v1/apps/{app}")).await
    }

    /// `DELETE /v1/apps/{app}`.
    pub async fn destroy_app(&self, app: &str) -> Result<(), ClientError> {
        self.send(self.request(Method::DELETE, &format!("/v1/apps/{app}"), CALL_TIMEOUT))
            .await
            .map(drop)
    }

    /// `POST /v1/apps/{app}/formation`: sets instance counts.
    pub async fn scale(
        &self,
        app: &str,
        counts: &std::collections::BTreeMap<String, u32>,
    ) -> Result<App, ClientError> {
        self.post(&format!("/v1/apps/{app}/formation"), counts)
            .await
    }

    /// `POST /v1/apps/{app}/domains`.
    pub async fn add_domain(&self, app: &str, domain: &str) -> Result<App, ClientError> {
        self.post(
            &format!("/v1/apps/{app}/domains"),
            &AddDomain {
                domain: domain.into(),
            },
        )
        .await
    }

    /// `DELETE /v1/apps/{app}/domains/{domain}`.
    pub async fn remove_domain(&self, app: &str, domain: &str) -> Result<App, ClientError> {
        self.json(
            self.request(
                Method::DELETE,
                &format!("/v1/apps/{app}/domains/{domain}"),
                CALL_TIMEOUT,
            ),
            "domains",
        )
        .await
    }

    /// `POST /v1/apps/{app}/builds`: uploads a gzipped tar of the source.
    pub async fn upload_source(&self, app: &str, archive: Vec<u8>) -> Result<Build, ClientError> {
        let req = self
            .request(
                Method::POST,
                &format!("/v1/apps/{app}/builds"),
                Duration::from_secs(600),
            )
            .header("content-type", "application/gzip")
            .body(archive);
        self.json(req, "upload").await
    }

    /// `GET /v1/apps/{app}/builds/{id}`.
    pub async fn build(&self, app: &str, id: &str) -> Result<Build, ClientError> {
        self.get(&format!("/v1/apps/{app}/builds/{id}")).await
    }

    /// `GET /v1/builds/{id}/source`: the uploaded archive.
    pub async fn build_source(&self, id: &str) -> Result<bytes::Bytes, ClientError> {
        let resp = self
            .send(self.request(
                Method::GET,
                &format!("/v1/builds/{id}/source"),
                Duration::from_secs(600),
            ))
            .await?;
        resp.bytes().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: error_chain(&e),
        })
    }

    /// `POST /v1/builds/{id}/claim`: `Ok(false)` when another node has it.
    pub async fn claim_build(&self, id: &str, node: &str) -> Result<bool, ClientError> {
        let path = format!("/v1/builds/{id}/claim");
        claimed(
            self.post::<_, Build>(&path, &Claim { node: node.into() })
                .await,
        )
    }

    /// `POST /v1/builds/{id}/result`.
    pub async fn build_result(&self, id: &str, result: &BuildResult) -> Result<Build, ClientError> {
        self.post(&format!("/v1/builds/{id}/result"), result).await
    }

    /// `GET /v1/apps/{app}/releases`, newest first.
    pub async fn releases(&self, app: &str) -> Result<Vec<Release>, ClientError> {
        self.get(&format!("/v1/apps/{app}/releases")).await
    }

    /// `GET /v1/apps/{app}/releases/{version}`.
    pub async fn release(&self, app: &str, version: u32) -> Result<Release, ClientError> {
        self.get(&format!("/v1/apps/{app}/releases/{version}"))
            .await
    }

    /// `POST /v1/apps/{app}/releases/{v}/claim`: `Ok(false)` when taken.
    pub async fn claim_release(
        &self,
        app: &str,
        version: u32,
        node: &str,
    ) -> Result<bool, ClientError> {
        let path = format!("/v1/apps/{app}/releases/{version}/claim");
        claimed(
            self.post::<_, Release>(&path, &Claim { node: node.into() })
                .await,
        )
    }

    /// `POST /v1/apps/{app}/releases/{v}/phase`.
    pub async fn release_phase_result(
        &self,
        app: &str,
        version: u32,
        result: &ReleasePhaseResult,
    ) -> Result<Release, ClientError> {
        self.post(&format!("/v1/apps/{app}/releases/{version}/phase"), result)
            .await
    }

    /// `GET /v1/apps/{app}/instances`.
    pub async fn instances(&self, app: &str) -> Result<Vec<Instance>, ClientError> {
        self.get(&format!("/v1/apps/{app}/instances")).await
    }

    /// `GET /v1/apps/{app}/logs`: lines after `after`, waiting up to `wait`
    /// for new ones when there are none; `scope` filters to one build.
    pub async fn logs(
        &self,
        app: &str,
        after: Option<i64>,
        tail: Option<u32>,
        wait: Duration,
        scope: Option<&str>,
    ) -> Result<LogPage, ClientError> {
        let mut q = vec![format!("wait={}", wait.as_secs())];
        if let Some(a) = after {
            q.push(format!("after={a}"));
        }
        if let Some(t) = tail {
            q.push(format!("tail={t}"));
        }
        if let Some(s) = scope {
            q.push(format!("scope={s}"));
        }
        self.long_poll(&format!("/v1/apps/{app}/logs?{}", q.join("&")), wait)
            .await
    }

    /// `POST /v1/logs`: appends lines to (possibly several) apps' logs.
    pub async fn append_logs(&self, lines: &[NewLogLine]) -> Result<(), ClientError> {
        self.send(
            self.request(Method::POST, "/v1/logs", CALL_TIMEOUT)
                .json(lines),
        )
        .await
        .map(drop)
    }

    /// `GET /v1/nodes/{node}/desired`: waits up to `wait` for a revision
    /// after `after`.
    pub async fn node_desired(
        &self,
        node: &str,
        after: Revision,
        wait: Duration,
    ) -> Result<NodeDesired, ClientError> {
        self.long_poll(
            &format!(
                "/v1/nodes/{node}/desired?after={after}&wait={}",
                wait.as_secs()
            ),
            wait,
        )
        .await
    }

    /// `PUT /v1/nodes/{node}/instances`: the node's whole actual state.
    /// `PUT /v1/nodes/{node}/instances`: the node's whole actual state;
    /// answers the revision that holds it.
    pub async fn report(
        &self,
        node: &str,
        report: &NodeReport,
    ) -> Result<ReportAnswer, ClientError> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/v1/nodes/{node}/instances"),
                CALL_TIMEOUT,
            )
            .json(report),
            "report",
        )
        .await
    }

    /// `GET /v1/routes`: waits up to `wait` for a revision after `after`;
    /// `router` names the caller, whose poll acknowledges `after` and
    /// reports the WebSocket sessions it still carries to instances it no
    /// longer routes to (replacing what it reported before).
    pub async fn routes(
        &self,
        after: Revision,
        wait: Duration,
        router: Option<(&str, &[DepartedSessions])>,
    ) -> Result<RouteTable, ClientError> {
        let mut path = format!("/v1/routes?after={after}&wait={}", wait.as_secs());
        if let Some((name, sessions)) = router {
            path.push_str(&format!("&router={}", query_escape(name)));
            if !sessions.is_empty() {
                // Plain data of our own: serialising cannot fail.
                let json = serde_json::to_string(sessions).unwrap_or_default();
                path.push_str(&format!("&sessions={}", query_escape(&json)));
            }
        }
        self.long_poll(&path, wait).await
    }

    /// `GET /v1/routers/sessions`: waits up to `wait` for live routers to
    /// carry no WebSocket session to the instance `id` of `app` at `addr`;
    /// answers those still open.
    pub async fn router_sessions(
        &self,
        app: &str,
        addr: &str,
        id: &str,
        wait: Duration,
    ) -> Result<RouterSessions, ClientError> {
        self.long_poll(
            &format!(
                "/v1/routers/sessions?app={}&addr={}&id={}&wait={}",
                query_escape(app),
                query_escape(addr),
                query_escape(id),
                wait.as_secs()
            ),
            wait,
        )
        .await
    }

    /// `GET /v1/routers/applied`: waits up to `wait` for every live router to
    /// route by `revision` or later.
    pub async fn routers_applied(
        &self,
        revision: Revision,
        wait: Duration,
    ) -> Result<RoutersApplied, ClientError> {
        self.long_poll(
            &format!(
                "/v1/routers/applied?revision={revision}&wait={}",
                wait.as_secs()
            ),
            wait,
        )
        .await
    }

    /// `GET /v1/apps/{app}/config`.
    pub async fn config(&self, app: &str, reveal: bool) -> Result<ConfigAnswer, ClientError> {
        self.get(&format!("/v1/apps/{app}/config?reveal={reveal}"))
            .await
    }

    /// `PATCH /v1/apps/{app}/config` (or `/secrets`): sets and unsets vars.
    pub async fn change_config(
        &self,
        app: &str,
        change: &ConfigChange,
        secrets: bool,
    ) -> Result<ConfigAnswer, ClientError> {
        let what = if secrets { "secrets" } else { "config" };
        self.json(
            self.request(
                Method::PATCH,
                &format!("/v1/apps/{app}/{what}"),
                CALL_TIMEOUT,
            )
            .json(change),
            what,
        )
        .await
    }

    /// `POST /v1/apps/{app}/rollback`.
    pub async fn rollback(&self, app: &str, version: u32) -> Result<Release, ClientError> {
        self.post(
            &format!("/v1/apps/{app}/rollback"),
            &RollbackRequest { version },
        )
        .await
    }

    /// `POST /v1/apps/{app}/restart`.
    pub async fn restart(&self, app: &str, process_types: Vec<String>) -> Result<App, ClientError> {
        self.post(
            &format!("/v1/apps/{app}/restart"),
            &RestartRequest { process_types },
        )
        .await
    }

    /// `PUT /v1/apps/{app}/settings`.
    pub async fn set_settings(
        &self,
        app: &str,
        settings: &AppSettings,
    ) -> Result<App, ClientError> {
        self.json(
            self.request(
                Method::PUT,
                &format!("/v1/apps/{app}/settings"),
                CALL_TIMEOUT,
            )
            .json(settings),
            "settings",
        )
        .await
    }

    /// `POST /v1/apps/{app}/runs`.
    pub async fn create_run(&self, app: &str, run: &NewRun) -> Result<Run, ClientError> {
        self.post(&format!("/v1/apps/{app}/runs"), run).await
    }

    /// `GET /v1/apps/{app}/runs`: one-off processes that have not ended.
    pub async fn runs(&self, app: &str) -> Result<Vec<Run>, ClientError> {
        self.get(&format!("/v1/apps/{app}/runs")).await
    }

    /// `GET /v1/apps/{app}/runs/{n}`.
    pub async fn run(&self, app: &str, number: u32) -> Result<Run, ClientError> {
        self.get(&format!("/v1/apps/{app}/runs/{number}")).await
    }

    /// `POST /v1/apps/{app}/runs/{n}/kill`.
    pub async fn kill_run(&self, app: &str, number: u32) -> Result<Run, ClientError> {
        self.post(&format!("/v1/apps/{app}/runs/{number}/kill"), &())
            .await
    }

    /// `PUT /v1/apps/{app}/runs/{n}/status`.
    pub async fn report_run(
        &self,
        app: &str,
        number: u32,
        report: &RunReport,
    ) -> Result<Run, ClientError> {
        let path = format!("/v1/apps/{app}/runs/{number}/status");
        self.json(
            self.request(Method::PUT, &path, CALL_TIMEOUT).json(report),
            &path,
        )
        .await
    }

    /// `GET /v1/apps/{app}/events`: events after `after`, waiting up to `wait`.
    pub async fn events(
        &self,
        app: &str,
        after: i64,
        wait: Duration,
    ) -> Result<LogPage, ClientError> {
        self.long_poll(
            &format!(
                "/v1/apps/{app}/events?after={after}&wait={}",
                wait.as_secs()
            ),
            wait,
        )
        .await
    }
}

/// Percent-encodes what is not safe in a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Calls `f` until it succeeds, fails for good, or `attempts` transient
/// failures (server away, 5xx) have passed, backing off from 200 ms to 5 s.
/// For results that must arrive (a build's outcome), not for reads.
pub async fn retry_transient<T, F, Fut>(attempts: u32, mut f: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut left = attempts.max(1);
    loop {
        match f().await {
            Err(e) if e.is_transient() && left > 1 => {
                left -= 1;
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            other => return other,
        }
    }
}

/// A 409 on a claim means another node won it, which is not an error.
fn claimed<T>(r: Result<T, ClientError>) -> Result<bool, ClientError> {
    match r {
        Ok(_) => Ok(true),
        Err(ClientError::Api { status, .. }) if status == StatusCode::CONFLICT.as_u16() => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// The error and its causes on one line: reqwest's top-level message alone
/// ("error sending request") hides the reason.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
