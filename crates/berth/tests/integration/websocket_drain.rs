//! WebSocket sessions across a deploy under `berth up`: a session to the
//! replaced release stays usable for the router's grace and ends with the
//! router's `1001`, while new sessions reach the new release; the drain
//! waits for open sessions and for nothing else.
//!
//! The app is a plain ASGI echo on uvicorn (with wsproto), whose shutdown
//! on SIGTERM closes its sessions with `1012`: a session cut by the app's
//! own shutdown and one closed by the router tell apart.

use std::net::TcpStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::kit::*;

const HOST: &str = "chat.localhost";

/// Echoes every text message prefixed with its release; answers HTTP with
/// the release.
const APP: &str = r#"import os

RELEASE = os.environ.get("BERTH_RELEASE", "dev")


async def app(scope, receive, send):
    if scope["type"] == "http":
        body = f"{RELEASE}\n".encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})
    elif scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": f"{RELEASE}: {event.get('text')}"})
"#;

/// The app's source, in the test's dir.
fn chat_source(berth: &Berth) -> PathBuf {
    let dir = berth.dir.path().join("chat");
    std::fs::create_dir_all(&dir).expect("app dir");
    std::fs::write(dir.join("app.py"), APP).expect("app.py");
    std::fs::write(
        dir.join("requirements.txt"),
        "uvicorn==0.54.0\nwsproto==1.3.2\n",
    )
    .expect("requirements.txt");
    std::fs::write(
        dir.join("Procfile"),
        "web: uvicorn app:app --host 127.0.0.1 --port $PORT --ws wsproto --lifespan off\n",
    )
    .expect("Procfile");
    dir
}

fn deploy(berth: &Berth, src: &std::path::Path) -> String {
    berth.ok(&["deploy", src.to_str().expect("utf-8 path"), "--app", "chat"])
}

type Ws = tungstenite::WebSocket<TcpStream>;

/// A WebSocket session through the router.
fn connect(berth: &Berth) -> Ws {
    let stream = TcpStream::connect(("127.0.0.1", berth.router_port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let request = format!("ws://{HOST}/")
        .into_client_request()
        .expect("request");
    let (ws, _) = tungstenite::client(request, stream).expect("handshake through the router");
    ws
}

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// A close frame: its code and reason.
    Close(u16, String),
    /// No close frame: a close frame without a code, or a broken connection.
    Abrupt(String),
}

/// Sends `text`; the echo (which names the release that answered), or how
/// the session ended instead.
fn echo(ws: &mut Ws, text: &str) -> Result<String, End> {
    if let Err(e) = ws.send(Message::text(text)) {
        return Err(end_of(ws, e));
    }
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Ok(t.to_string()),
            Ok(Message::Close(Some(f))) => {
                return Err(End::Close(f.code.into(), f.reason.to_string()))
            }
            Ok(Message::Close(None)) => {
                return Err(End::Abrupt("close frame without a code".into()))
            }
            Ok(_) => continue,
            Err(e) => return Err(end_of(ws, e)),
        }
    }
}

/// After a failed send: the close frame already received, if any.
fn end_of(ws: &mut Ws, e: tungstenite::Error) -> End {
    loop {
        match ws.read() {
            Ok(Message::Close(Some(f))) => return End::Close(f.code.into(), f.reason.to_string()),
            Ok(Message::Close(None)) => return End::Abrupt("close frame without a code".into()),
            Ok(_) => continue,
            Err(_) => return End::Abrupt(e.to_string()),
        }
    }
}

/// Whether any instance of `release` is still running.
fn runs(berth: &Berth, release: u64) -> bool {
    berth
        .instances("chat")
        .iter()
        .any(|i| i["release"].as_u64() == Some(release))
}

#[test]
fn a_replaced_instances_websocket_sessions_live_for_the_grace_then_get_1001() {
    let berth = Berth::up_with(&["--websocket-grace", "6s"]);
    let src = chat_source(&berth);
    berth.create_and_deploy("chat", &src);
    let mut old = connect(&berth);
    assert_eq!(echo(&mut old, "hello"), Ok("v1: hello".into()));

    let started = Instant::now();
    let out = deploy(&berth, &src);
    eprintln!("deploy with one session open: {:?}", started.elapsed());
    assert!(out.contains("v2 deployed"), "{out}");

    // New sessions reach v2 meanwhile; the old one goes on with v1.
    let mut new = connect(&berth);
    assert_eq!(echo(&mut new, "hi"), Ok("v2: hi".into()));
    let mut answered = 0;
    let end = loop {
        match echo(&mut old, &format!("message {answered}")) {
            Ok(text) => {
                assert_eq!(text, format!("v1: message {answered}"));
                answered += 1;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(end) => break end,
        }
    };
    assert!(
        answered > 0,
        "the session to v1 was usable after the deploy"
    );
    assert_eq!(
        end,
        End::Close(1001, "instance going away".into()),
        "the router closes the session at the end of its grace (the app's own shutdown sends 1012)"
    );
    eprintln!(
        "session to v1 closed by the router {:?} after the deploy began, {answered} messages after it ended",
        started.elapsed()
    );

    wait_for("v1 to stop", Duration::from_secs(30), || {
        (!runs(&berth, 1)).then_some(())
    });
    let events = berth.ok(&["events", "--app", "chat"]);
    assert!(
        events.contains("web.1 (v1): waiting for 1 WebSocket session(s) to close (grace 6s)"),
        "the drain says why it waits:\n{events}"
    );
    assert_eq!(echo(&mut new, "still here"), Ok("v2: still here".into()));
}

#[test]
fn a_drain_waits_for_open_websocket_sessions_and_for_nothing_else() {
    // A grace far longer than any wait below: the drains must end with
    // the sessions, not with the grace.
    let berth = Berth::up_with(&["--websocket-grace", "300s"]);
    let src = chat_source(&berth);
    berth.create_and_deploy("chat", &src);
    let mut old = connect(&berth);
    assert_eq!(echo(&mut old, "hello"), Ok("v1: hello".into()));

    deploy(&berth, &src);
    assert_eq!(
        echo(&mut old, "after the deploy"),
        Ok("v1: after the deploy".into()),
        "v1 keeps running while its session is open"
    );
    assert!(runs(&berth, 1));

    // The user leaves: v1 stops once the router reported it.
    old.close(None).expect("close");
    let closed = Instant::now();
    while old.read().is_ok() {}
    // As browsers do once the close handshake is done (the router gives a
    // side that keeps its connection open 5 s more).
    drop(old);
    wait_for(
        "v1 to stop once its last session closed",
        Duration::from_secs(30),
        || (!runs(&berth, 1)).then_some(()),
    );
    eprintln!(
        "v1 stopped {:?} after its last session closed",
        closed.elapsed()
    );

    // No session to v2: its drain does not wait for one.
    let started = Instant::now();
    deploy(&berth, &src);
    wait_for("v2 to stop", Duration::from_secs(30), || {
        (!runs(&berth, 2)).then_some(())
    });
    eprintln!("deploy of v3 until v2 stopped: {:?}", started.elapsed());
    let events = berth.ok(&["events", "--app", "chat"]);
    assert!(
        events.contains("web.1 (v1): waiting for 1 WebSocket session(s) to close (grace 300s)"),
        "{events}"
    );
    assert!(
        !events.contains("web.1 (v2): waiting for"),
        "v2 had no session to wait for:\n{events}"
    );
}
