//! The test kit: real in-process backends, a real router, real clients.
//!
//! ```ignore
//! let a = Backend::start("a").await;
//! let router = Router::start(table(vec![app("hello", &["hello.localhost"], &[a.addr])])).await;
//! let resp = router.get("hello.localhost", "/").await;
//! ```

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_client::logs::LogShipper;
use berth_model::{AppRoute, Backend as RouteBackend, NewLogLine, RouteTable};
use berth_router::{RouterConfig, Routes};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;

/// How long any "eventually" condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub async fn eventually<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An app server on 127.0.0.1:0.
///
/// - `/headers`: the request headers, one `name: value` per line;
/// - `/slow`: waits for a permit of [`Backend::gate`];
/// - `/hop`: a response full of hop-by-hop headers;
/// - `/echo`: the request body;
/// - anything else: the backend's name.
///
/// Every response carries `x-backend: NAME`.
pub struct Backend {
    pub addr: SocketAddr,
    /// Requests received.
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// `/slow` requests waiting at the gate or let through.
    pub arrived: Arc<AtomicUsize>,
    /// Permits let `/slow` requests finish.
    pub gate: Arc<Semaphore>,
    _stop: oneshot::Sender<()>,
}

type TestBody = BoxBody<Bytes, hyper::Error>;

impl Backend {
    pub async fn start(name: &'static str) -> Self {
        Self::start_at(name, SocketAddr::from(([127, 0, 0, 1], 0))).await
    }

    /// A backend on `addr`: a port of the test's choosing, such as one a
    /// route already points at.
    pub async fn start_at(name: &'static str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let conns = Arc::new(AtomicUsize::new(0));
        let accepted = conns.clone();
        let arrived = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let state = (hits.clone(), arrived.clone(), gate.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (hits, arrived, gate) = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (hits, arrived, gate) = (hits.clone(), arrived.clone(), gate.clone());
                        async move {
                            hits.fetch_add(1, Ordering::SeqCst);
                            Ok::<_, Infallible>(answer(name, req, &arrived, &gate).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            hits,
            conns,
            arrived,
            gate,
            _stop: stop,
        }
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn arrived(&self) -> usize {
        self.arrived.load(Ordering::SeqCst)
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

/// How a [`Dying`] backend treats the requests it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Dying {
    /// Reads the request head, then closes the connection without a byte
    /// of response: a process killed with the request in its socket.
    CloseAfterHead,
    /// Reads the request head, then resets the connection.
    ResetAfterHead,
    /// Reads the request head, sends part of a response head, then closes:
    /// a process that died while answering.
    CloseMidAnswer,
    /// Answers the first request on each connection (keep-alive), then
    /// reads the next head and closes: an app's keep-alive timeout firing
    /// just as the router reuses the connection.
    AnswerOnceThenClose,
}

/// A raw TCP backend on 127.0.0.1:0 that fails requests the way dying app
/// processes do.
pub struct DyingBackend {
    pub addr: SocketAddr,
    /// TCP connections accepted.
    pub conns: Arc<AtomicUsize>,
    /// Request lines read (`GET / HTTP/1.1`), answered or not.
    pub requests: Arc<Mutex<Vec<String>>>,
    /// Requests read and then left without a (whole) answer.
    pub unanswered: Arc<AtomicUsize>,
    _stop: oneshot::Sender<()>,
}

impl DyingBackend {
    pub async fn start(mode: Dying) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let conns = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let unanswered = Arc::new(AtomicUsize::new(0));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let state = (conns.clone(), requests.clone(), unanswered.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let (conns, requests, unanswered) = state.clone();
                conns.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut stream = stream;
                    let mut answered = 0;
                    while let Some(line) = read_head(&mut stream).await {
                        // Recorded before the connection is touched, so a
                        // client that sees the close sees the count too.
                        requests.lock().expect("requests lock").push(line);
                        if mode == Dying::AnswerOnceThenClose && answered == 0 {
                            answered += 1;
                            let ok = "HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-backend: dying\r\n\r\ndying";
                            if stream.write_all(ok.as_bytes()).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        unanswered.fetch_add(1, Ordering::SeqCst);
                        if mode == Dying::CloseMidAnswer {
                            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-").await;
                        }
                        if mode == Dying::ResetAfterHead {
                            // Linger 0: closing sends RST instead of FIN.
                            let _ = stream.set_zero_linger();
                        }
                        return;
                    }
                });
            }
        });
        Self {
            addr,
            conns,
            requests,
            unanswered,
            _stop: stop,
        }
    }

    pub fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    /// Request lines read so far.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("requests lock").clone()
    }

    pub fn unanswered(&self) -> usize {
        self.unanswered.load(Ordering::SeqCst)
    }
}

/// Reads one request head (bodies are not read) and returns its request
/// line; `None` when the connection ends first.
async fn read_head(stream: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing after the head is consumed.
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    text.lines().next().map(str::to_string)
}

fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into()).map_err(|e| match e {}).boxed()
}

async fn answer(
    name: &'static str,
    req: Request<Incoming>,
    arrived: &AtomicUsize,
    gate: &Semaphore,
) -> Response<TestBody> {
    let mut resp = match req.uri().path() {
        "/headers" => {
            let mut out = String::new();
            for (k, v) in req.headers() {
                out.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("<bin>")));
            }
            Response::new(full(out))
        }
        "/slow" => {
            arrived.fetch_add(1, Ordering::SeqCst);
            if let Ok(p) = gate.acquire().await {
                p.forget();
            }
            Response::new(full(name))
        }
        "/hop" => {
            let mut r = Response::new(full(name));
            let h = r.headers_mut();
            h.insert("connection", "x-internal".parse().expect("value"));
            h.insert("x-internal", "secret".parse().expect("value"));
            h.insert("keep-alive", "timeout=5".parse().expect("value"));
            h.insert("proxy-authenticate", "Basic".parse().expect("value"));
            h.insert("trailer", "x-checksum".parse().expect("value"));
            h.insert("x-kept", "yes".parse().expect("value"));
            r
        }
        "/echo" => Response::new(req.into_body().boxed()),
        _ => Response::new(full(name)),
    };
    resp.headers_mut()
        .insert("x-backend", name.parse().expect("value"));
    resp
}

/// A port of 127.0.0.1 held for as long as this lives by a socket that is
/// bound but never listens: a connect to it is refused, and no other test
/// running in parallel can be handed it (a port merely bound and released
/// could be). The socket allows address reuse, as tokio's `TcpListener::bind`
/// does, so the test itself may still start a listener on the port (a
/// backend coming back, a router's stats address).
pub struct HeldPort {
    pub addr: SocketAddr,
    _socket: TcpSocket,
}

impl HeldPort {
    pub fn bind() -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind");
        let addr = socket.local_addr().expect("addr");
        Self {
            addr,
            _socket: socket,
        }
    }
}

static REVISION: AtomicU64 = AtomicU64::new(1);

/// A route table with a fresh revision.
pub fn table(apps: Vec<AppRoute>) -> RouteTable {
    RouteTable {
        revision: REVISION.fetch_add(1, Ordering::SeqCst),
        apps,
    }
}

/// An app served at `hosts` by `backends` (named `v1/web.N`).
pub fn app(name: &str, hosts: &[&str], backends: &[SocketAddr]) -> AppRoute {
    AppRoute {
        name: name.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        backends: backends
            .iter()
            .enumerate()
            .map(|(i, a)| RouteBackend {
                addr: a.to_string(),
                id: format!("v1/web.{}", i + 1),
            })
            .collect(),
        static_files: None,
        settings: Default::default(),
    }
}

/// A router on 127.0.0.1:0 with an access log read by the test.
pub struct Router {
    pub addr: SocketAddr,
    pub routes: Routes,
    pub logs: mpsc::Receiver<NewLogLine>,
    pub task: JoinHandle<std::io::Result<()>>,
    stop: Option<oneshot::Sender<()>>,
    client: reqwest::Client,
}

impl Router {
    pub async fn start(table: RouteTable) -> Self {
        Self::start_with(RouterConfig::default(), table).await
    }

    pub async fn start_with(config: RouterConfig, table: RouteTable) -> Self {
        let routes = Routes::new();
        routes.update(table);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (shipper, logs) = LogShipper::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(berth_router::run(
            listener,
            routes.clone(),
            config,
            Some(shipper),
            async move {
                let _ = stopped.await;
            },
        ));
        Self {
            addr,
            routes,
            logs,
            task,
            stop: Some(stop),
            client: http_client(),
        }
    }

    /// `GET path` with `Host: host`.
    pub async fn get(&self, host: &str, path: &str) -> reqwest::Response {
        self.request(reqwest::Method::GET, host, path)
            .send()
            .await
            .expect("router answers")
    }

    /// The body of `GET path` with `Host: host` (empty on a failed read).
    pub async fn text(&self, host: &str, path: &str) -> String {
        self.get(host, path).await.text().await.unwrap_or_default()
    }

    /// A request builder aimed at the router with `Host: host`.
    pub fn request(
        &self,
        method: reqwest::Method,
        host: &str,
        path: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("http://{}{}", self.addr, path))
            .header("host", host)
    }

    /// Signals shutdown; `task` then drains and ends.
    pub fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client that ignores proxy settings of the environment.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
}

/// Sends `request` verbatim on a new connection and reads the whole answer
/// (use `Connection: close`). For what reqwest would tidy up: `..` in paths,
/// hop-by-hop headers.
pub async fn raw(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("answer within deadline")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP answer.
pub fn raw_status(answer: &str) -> u16 {
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One request as a [`Recorder`] saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    /// The whole body, or why it could not be read to its end.
    pub body: Result<Vec<u8>, String>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// A backend on 127.0.0.1:0 that reads every request whole and records it,
/// then answers `200` with the body length — for asserting what the router
/// passed on (or never did).
pub struct Recorder {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _stop: oneshot::Sender<()>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop, mut stopped) = oneshot::channel::<()>();
        let log = seen.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = &mut stopped => return,
                    r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let log = log.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = match body.collect().await {
                                Ok(b) => Ok(b.to_bytes().to_vec()),
                                Err(e) => Err(e.to_string()),
                            };
                            let len = body.as_ref().map_or(0, Vec::len);
                            log.lock().expect("seen lock").push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (
                                            k.to_string(),
                                            String::from_utf8_lossy(v.as_bytes()).into(),
                                        )
                                    })
                                    .collect(),
                                body,
                            });
                            Ok::<_, Infallible>(Response::new(full(format!("got {len} bytes"))))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            _stop: stop,
        }
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// A TCP connection to `to` from the loopback address `from` (any of
/// 127.0.0.0/8), so a test can be "another client" to per-address limits.
pub async fn connect_from(from: [u8; 4], to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(to).await
}

/// Whether the peer closed `stream` (EOF or reset) within [`DEADLINE`],
/// reading and discarding whatever it sent first.
pub async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(DEADLINE, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    });
    read.await.is_ok()
}

/// What the code under test logs through `tracing` on this thread, as an
/// operator reads it, for as long as this lives. A `#[tokio::test]` runs
/// its tasks on its own thread, so their lines are caught and no other
/// test's are; work moved to `spawn_blocking` is not.
pub struct Logs {
    text: Arc<Mutex<Vec<u8>>>,
    _scope: tracing::subscriber::DefaultGuard,
}

impl Logs {
    pub fn capture() -> Self {
        let text = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&text);
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || LogSink(Arc::clone(&sink)))
            .finish();
        Self {
            text,
            _scope: tracing::subscriber::set_default(subscriber),
        }
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        let text = self.text.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&text).into_owned()
    }
}

struct LogSink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut text = self.0.lock().unwrap_or_else(|p| p.into_inner());
        text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
