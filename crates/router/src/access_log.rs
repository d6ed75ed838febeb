//! The access log: one line per request of a known app, in the shape of
//! Heroku's router log, shipped into the app's own log.
//!
//! ```text
//! method=GET path="/x" host=hello.localhost request_id=… backend=v1/web.1 status=200 bytes=123 duration_ms=4 client=127.0.0.1
//! ```
//!
//! A WebSocket session gets its line when it ends, with `status=101`, the
//! bytes of both directions and how it ended:
//!
//! ```text
//! method=GET path="/chat" … status=101 bytes=5120 duration_ms=64000 client=127.0.0.1 bytes_in=812 ended=closed
//! ```

use std::fmt::Write;
use std::net::IpAddr;
use std::time::Instant;

use berth_client::logs::LogShipper;
use berth_model::NewLogLine;
use http::{Method, StatusCode};

/// What the log line of one request says; filled in as the phases run.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub app: String,
    pub method: Method,
    pub path: String,
    pub host: String,
    pub request_id: String,
    /// `v1/web.1`, `static`, or `-` when no backend was reached.
    pub backend: String,
    pub status: StatusCode,
    pub client: IpAddr,
    pub started: Instant,
    /// Why the request failed, for error statuses made by the router.
    pub error: Option<String>,
}

impl Entry {
    /// The log line, once `bytes` of body went out.
    pub fn line(&self, bytes: u64) -> String {
        let mut s = String::with_capacity(200);
        let _ = write!(
            s,
            "method={} path={} host={} request_id={} backend={} status={} bytes={} duration_ms={} client={}",
            self.method,
            quoted(&self.path),
            value(&self.host),
            value(&self.request_id),
            value(&self.backend),
            self.status.as_u16(),
            bytes,
            self.started.elapsed().as_millis(),
            self.client,
        );
        if let Some(e) = &self.error {
            let _ = write!(s, " error={}", quoted(e));
        }
        s
    }

    /// Ships the line; never waits (a full buffer drops it).
    pub fn send(&self, shipper: &LogShipper, bytes: u64) {
        self.ship(shipper, self.line(bytes));
    }

    /// The line of a WebSocket session that ended (`ended`: how, see
    /// [`crate::tunnel`]): `to_client` bytes went to the client and
    /// `from_client` came from it through the tunnel (logged as `bytes` and
    /// `bytes_in`); the duration is the whole session's.
    pub fn tunnel_line(&self, to_client: u64, from_client: u64, ended: &str) -> String {
        let mut plain = self.clone();
        let error = plain.error.take();
        let mut s = plain.line(to_client);
        let _ = write!(s, " bytes_in={from_client} ended={}", value(ended));
        if let Some(e) = error {
            let _ = write!(s, " error={}", quoted(&e));
        }
        s
    }

    /// Ships the line of a WebSocket session that ended.
    pub fn send_tunnel(&self, shipper: &LogShipper, to_client: u64, from_client: u64, ended: &str) {
        self.ship(shipper, self.tunnel_line(to_client, from_client, ended));
    }

    fn ship(&self, shipper: &LogShipper, line: String) {
        shipper.send(NewLogLine {
            app: self.app.clone(),
            ts: berth_model::now_millis(),
            source: "router".to_string(),
            scope: None,
            line,
            event: None,
        });
    }
}

/// A value as is when it is a plain token, quoted otherwise, so that a
/// hostile Host header cannot forge extra `key=value` fields.
fn value(v: &str) -> String {
    if !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'=')
    {
        v.to_string()
    } else {
        quoted(v)
    }
}

fn quoted(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(s, "\\u{{{:x}}}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn heroku_shaped_line() {
        let e = Entry {
            app: "hello".into(),
            method: Method::GET,
            path: "/x?a=\"1\"".into(),
            host: "hello.localhost".into(),
            request_id: "abc".into(),
            backend: "v1/web.1".into(),
            status: StatusCode::OK,
            client: Ipv4Addr::LOCALHOST.into(),
            started: Instant::now(),
            error: None,
        };
        let line = e.line(123);
        assert!(
            line.starts_with(
                "method=GET path=\"/x?a=\\\"1\\\"\" host=hello.localhost request_id=abc backend=v1/web.1 status=200 bytes=123 duration_ms="
            ),
            "{line}"
        );
        assert!(line.ends_with(" client=127.0.0.1"), "{line}");
        assert_eq!(value("a b=c"), "\"a b=c\"");

        let ws = Entry {
            status: StatusCode::SWITCHING_PROTOCOLS,
            error: Some("backend connection: reset".into()),
            ..e
        };
        let line = ws.tunnel_line(10, 20, "error");
        assert!(line.contains(" status=101 bytes=10 "), "{line}");
        assert!(
            line.ends_with(" bytes_in=20 ended=error error=\"backend connection: reset\""),
            "{line}"
        );
    }
}
