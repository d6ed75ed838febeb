//! Header rewriting, both ways: hop-by-hop headers (and the one upgrade
//! passed on, WebSocket), the `X-Forwarded-*` family and the request id.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// `X-Request-Id`, the id that ties a request to its log lines.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// so a proxy must not pass them on. `Proxy-*` headers are matched by prefix.
/// A `static`, not a `const`: a const array would be built and dropped at
/// each use, once per header of every message.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    KEEP_ALIVE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers, including every header the `Connection`
/// header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none of them, or only `Connection` (a backend's
    // `Connection: keep-alive`): one pass over the names is cheaper than
    // hashing each of the names to remove.
    let (mut hop, mut proxy) = (false, false);
    for name in headers.keys() {
        if HOP_BY_HOP.contains(name) {
            hop = true;
        } else if name.as_str().starts_with("proxy-") {
            proxy = true;
        }
    }
    if hop {
        let mut connection = headers.get_all(header::CONNECTION).iter();
        match (connection.next().cloned(), connection.next()) {
            (None, _) => {}
            // The usual single `Connection` line: its copy is a reference
            // count, not an allocation.
            (Some(only), None) => remove_named(headers, &only),
            (Some(_), Some(_)) => {
                let all: Vec<HeaderValue> = headers
                    .get_all(header::CONNECTION)
                    .iter()
                    .cloned()
                    .collect();
                for value in &all {
                    remove_named(headers, value);
                }
            }
        }
        for name in &HOP_BY_HOP {
            headers.remove(name);
        }
    }
    if proxy {
        let named: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
}

/// Removes the headers a `Connection` value names. By `&str`: http looks
/// the name up without building a `HeaderName` (no allocation for names
/// it does not know).
fn remove_named(headers: &mut HeaderMap, connection: &HeaderValue) {
    let Ok(value) = connection.to_str() else {
        return;
    };
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        headers.remove(name);
    }
}

/// Whether a request asks to become a WebSocket (RFC 6455 §4.1): its
/// `Connection` names `upgrade` and its `Upgrade` names `websocket`. Only
/// that upgrade is passed on: for any other (`h2c`, unknown protocols) the
/// router would have to speak the new protocol to proxy it, so those
/// requests reach the app as plain requests, hop-by-hop headers stripped.
pub fn websocket_requested(headers: &HeaderMap) -> bool {
    // `Upgrade` first: most requests have none, and that is one lookup.
    has_token(headers, header::UPGRADE, "websocket")
        && has_token(headers, header::CONNECTION, "upgrade")
}

/// Whether a response agrees to a WebSocket request: `Upgrade: websocket`
/// (the caller checks for `101`).
pub fn websocket_accepted(headers: &HeaderMap) -> bool {
    has_token(headers, header::UPGRADE, "websocket")
}

/// Puts back the two headers of a WebSocket upgrade after
/// [`strip_hop_by_hop`], with only the `websocket` token: nothing else the
/// client's `Connection` named goes on.
pub fn set_websocket_upgrade(headers: &mut HeaderMap) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
}

/// Whether a comma-separated header lists `token` (any case). `Upgrade`
/// tokens may carry a version (`websocket/13` is not `websocket`).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The host the client asked for: the Host header, or the authority of an
/// absolute-form request target. `None` for a Host that is not text.
pub fn requested_host<B>(req: &http::Request<B>) -> Option<&str> {
    match req.headers().get(header::HOST) {
        Some(h) => h.to_str().ok(),
        None => req.uri().authority().map(|a| a.as_str()),
    }
}

/// Whether a request's `Transfer-Encoding` (if any) is the one framing the
/// router forwards: exactly `chunked`. hyper decodes chunked only and
/// refuses a coding list that does not end in it, but would accept
/// `gzip, chunked`; the router would then pass on the gzip bytes without
/// the coding that says so, and an app reading the header would disagree
/// with the router about the body — the seed of request smuggling.
pub fn framing_ok(headers: &HeaderMap) -> bool {
    let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter();
    match (codings.next(), codings.next()) {
        (None, _) => true,
        (Some(v), None) => v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked"),
        (Some(_), Some(_)) => false,
    }
}

/// The request's id: the client's if it is well-formed (so a chain of
/// proxies can share one), otherwise a new random one.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        let ok = (1..=200).contains(&b.len())
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'));
        if ok {
            return v.clone();
        }
    }
    // 32 hex digits, written without the formatting machinery (this runs
    // for every request).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let n = rand::random::<u128>();
    let mut id = [0u8; 32];
    for (i, digit) in id.iter_mut().enumerate() {
        *digit = HEX[((n >> (124 - 4 * i)) & 0xf) as usize];
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A client connection's address, with the `X-Forwarded-For` value it
/// gives, made once per connection rather than once per request.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
    forwarded_for: HeaderValue,
}

impl Peer {
    pub fn new(ip: IpAddr) -> Self {
        let forwarded_for = HeaderValue::from_str(&ip.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        Self { ip, forwarded_for }
    }
}

/// What the backend sees of a request's headers: hop-by-hop headers and
/// the client's framing out, `Host` as the client asked, `X-Forwarded-*`
/// and the request id in.
pub fn rewrite_request(
    headers: &mut HeaderMap,
    host: Option<HeaderValue>,
    peer: &Peer,
    trusted_peer: bool,
    secure: bool,
    request_id: &HeaderValue,
) {
    strip_hop_by_hop(headers);
    // Framing is the router's to choose, never the client's: the backend
    // gets a length from the body hyper decoded (or chunked when unknown),
    // so no stray `Content-Length` can disagree with what is sent.
    headers.remove(header::CONTENT_LENGTH);
    // The router already answered the expectation to the client (hyper sends
    // `100 Continue` when the body is first read) and sends the body without
    // waiting, so passing it on would only make the backend send a stray 100.
    headers.remove(header::EXPECT);
    if let Some(h) = &host {
        headers.insert(header::HOST, h.clone());
    }
    set_forwarded(
        headers,
        peer,
        trusted_peer,
        secure,
        host.as_ref(),
        request_id,
    );
}

/// Sets the headers an app reads to learn about the original request.
///
/// From an untrusted peer (`trusted` false) `X-Forwarded-For`, `-Proto` and
/// `-Host` are replaced, not appended to: the router is the edge, so
/// anything a client sent there is a claim nobody checked. A trusted proxy's
/// chain is kept with the peer appended, and its `-Proto`/`-Host` stand.
/// `-Proto` is otherwise `https` when the request came over TLS (`secure`),
/// `http` if not.
pub fn set_forwarded(
    headers: &mut HeaderMap,
    peer: &Peer,
    trusted: bool,
    secure: bool,
    host: Option<&HeaderValue>,
    request_id: &HeaderValue,
) {
    let chain = if trusted {
        let earlier: Vec<&str> = headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if earlier.is_empty() {
            Some(peer.forwarded_for.clone())
        } else {
            HeaderValue::from_str(&format!("{}, {}", earlier.join(", "), peer.ip)).ok()
        }
    } else {
        Some(peer.forwarded_for.clone())
    };
    if let Some(v) = chain {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(trusted && headers.contains_key(X_FORWARDED_PROTO)) {
        let proto = if secure { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(trusted && headers.contains_key(X_FORWARDED_HOST)) {
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST, h.clone()),
            None => headers.remove(X_FORWARDED_HOST),
        };
    }
    headers.insert(X_REQUEST_ID, request_id.clone());
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("proxy-authorization", "Basic x"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("content-type", "text/plain"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["content-type"]);
    }

    #[test]
    fn every_connection_line_names_headers_to_drop() {
        let mut h = map(&[
            ("connection", "X-One"),
            ("connection", " x-two ,, "),
            ("x-one", "1"),
            ("x-two", "2"),
            ("x-kept", "3"),
        ]);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    #[test]
    fn only_websocket_upgrades_are_recognised() {
        let ws = map(&[
            ("connection", "keep-alive, Upgrade"),
            ("upgrade", "WebSocket"),
        ]);
        assert!(websocket_requested(&ws));
        for not in [
            &[("connection", "upgrade"), ("upgrade", "h2c")][..],
            &[
                ("connection", "upgrade, http2-settings"),
                ("upgrade", "h2c, websocket/13"),
            ],
            &[("upgrade", "websocket")],
            &[("connection", "upgrade")],
            &[("connection", "keep-alive"), ("upgrade", "websocket")],
        ] {
            assert!(!websocket_requested(&map(not)), "{not:?}");
        }

        let mut h = map(&[
            ("connection", "Upgrade, X-Secret"),
            ("upgrade", "websocket, h2c"),
            ("x-secret", "1"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ]);
        strip_hop_by_hop(&mut h);
        set_websocket_upgrade(&mut h);
        assert_eq!(h["connection"], "upgrade");
        assert_eq!(h["upgrade"], "websocket");
        assert!(h.get("x-secret").is_none());
        assert!(h.contains_key("sec-websocket-key"));
    }

    #[test]
    fn only_a_lone_chunked_is_forwardable_framing() {
        assert!(framing_ok(&map(&[])));
        assert!(framing_ok(&map(&[("transfer-encoding", "Chunked ")])));
        for bad in [
            &[("transfer-encoding", "gzip, chunked")][..],
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "chunked"),
            ],
        ] {
            assert!(!framing_ok(&map(bad)), "{bad:?}");
        }
    }

    #[test]
    fn request_ids() {
        let kept = request_id(&map(&[("x-request-id", "abc-1.2_3")]));
        assert_eq!(kept, "abc-1.2_3");
        for bad in ["", "has space", "semi;colon"] {
            let mut h = HeaderMap::new();
            h.insert(X_REQUEST_ID, HeaderValue::from_static(bad));
            let id = request_id(&h);
            assert_eq!(id.len(), 32, "{bad:?} replaced by a fresh id");
            assert!(id.as_bytes().iter().all(u8::is_ascii_hexdigit));
        }
        let long = "a".repeat(201);
        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_str(&long).expect("ascii"));
        assert_eq!(request_id(&h).len(), 32);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn forwarded_for_is_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-host", "evil"),
            ("x-forwarded-proto", "https"),
        ]);
        let id = HeaderValue::from_static("id1");
        let peer = Peer::new(Ipv4Addr::LOCALHOST.into());
        set_forwarded(&mut h, &peer, false, false, None, &id);
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert!(h.get("x-forwarded-host").is_none());
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-request-id"], "id1");
    }

    #[test]
    fn a_trusted_proxys_chain_is_kept() {
        let mut h = map(&[
            ("x-forwarded-for", "1.2.3.4"),
            ("x-forwarded-for", "5.6.7.8"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "shop.example"),
        ]);
        let host = HeaderValue::from_static("internal");
        let id = HeaderValue::from_static("id1");
        set_forwarded(
            &mut h,
            &Peer::new(Ipv4Addr::LOCALHOST.into()),
            true,
            false,
            Some(&host),
            &id,
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 5.6.7.8, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "shop.example");
    }

    #[test]
    fn forwarded_proto_says_how_the_request_came() {
        let id = HeaderValue::from_static("id1");
        for (secure, trusted, sent, want) in [
            (true, false, None, "https"),
            (false, false, None, "http"),
            (true, false, Some("http"), "https"),
            (false, false, Some("https"), "http"),
            // A trusted proxy in front terminated TLS itself (or not).
            (false, true, Some("https"), "https"),
            (true, true, Some("http"), "http"),
            (true, true, None, "https"),
        ] {
            let mut h = HeaderMap::new();
            if let Some(v) = sent {
                h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(v));
            }
            set_forwarded(
                &mut h,
                &Peer::new(Ipv4Addr::LOCALHOST.into()),
                trusted,
                secure,
                None,
                &id,
            );
            assert_eq!(h[X_FORWARDED_PROTO], want, "{secure} {trusted} {sent:?}");
        }
    }
}
