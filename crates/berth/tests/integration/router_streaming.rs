//! The standalone router under the loads users put on it: bodies of a
//! gigabyte each way with bounded memory, and an instance killed with
//! `SIGKILL` in the middle of a GET load.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::kit::*;

const GIB: u64 = 1 << 30;
const BLOCK: usize = 1 << 20;

/// A backend that counts the body of each request and answers the count,
/// or for `GET /big` answers a body of [`GIB`] zeros.
fn counting_backend() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_counting(stream));
        }
    });
    port
}

fn serve_counting(stream: TcpStream) {
    let mut out = stream.try_clone().expect("clone");
    let mut reader = BufReader::with_capacity(BLOCK, stream);
    let mut head = String::new();
    let mut length = 0u64;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    if head.starts_with("GET /big ") {
        let _ = write!(out, "HTTP/1.1 200 OK\r\ncontent-length: {GIB}\r\n\r\n");
        let zeros = vec![0u8; BLOCK];
        for _ in 0..GIB / BLOCK as u64 {
            if out.write_all(&zeros).is_err() {
                return;
            }
        }
        return;
    }
    let counted = std::io::copy(&mut reader.take(length), &mut std::io::sink()).unwrap_or(0);
    let body = counted.to_string();
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn a_gigabyte_streams_through_each_way_in_bounded_memory() {
    let backend = counting_backend();
    let router = StandaloneRouter::start(&format!(
        "listen = \"127.0.0.1:0\"\nthreads = 1\n[[apps]]\nname = \"big\"\nhosts = [\"big.localhost\"]\n\
         backends = [\"127.0.0.1:{backend}\"]\nmax_body = \"2GB\"\n"
    ));

    // Upload: the app counts every byte of the gigabyte.
    let mut up = TcpStream::connect(("127.0.0.1", router.port)).expect("connect");
    write!(
        up,
        "POST /upload HTTP/1.1\r\nHost: big.localhost\r\nContent-Length: {GIB}\r\n\r\n"
    )
    .expect("head");
    let zeros = vec![0u8; BLOCK];
    for _ in 0..GIB / BLOCK as u64 {
        up.write_all(&zeros).expect("upload block");
    }
    let mut answer = String::new();
    up.read_to_string(&mut answer).expect("answer");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.ends_with(&format!("\r\n\r\n{GIB}")),
        "the app got every byte: {answer}"
    );

    // Download: the client gets every byte of the gigabyte.
    let mut down = TcpStream::connect(("127.0.0.1", router.port)).expect("connect");
    write!(
        down,
        "GET /big HTTP/1.1\r\nHost: big.localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut reader = BufReader::with_capacity(BLOCK, down);
    let mut status = String::new();
    reader.read_line(&mut status).expect("status line");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).expect("header");
        if line == "\r\n" {
            break;
        }
    }
    let received = std::io::copy(&mut reader, &mut std::io::sink()).expect("body");
    assert_eq!(received, GIB);

    // A router that buffered either body would have held a gigabyte.
    let peak = router.peak_rss();
    assert!(
        peak < 128 << 20,
        "router peak memory {} MB for 1 GiB each way",
        peak >> 20
    );
}

/// A Python app server (the standard library's, keep-alive) on a free port.
fn python_backend(name: &str) -> (Child, u16) {
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // The whole answer goes out in one write, as gunicorn's does for small
    // bodies: a kill lands before or after an answer, never inside one.
    let script = format!(
        r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n{name}")
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", {port}), H).serve_forever()
"#,
        len = name.len()
    );
    let child = Command::new("python3")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .spawn()
        .expect("start python3");
    wait_for("the python backend", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
    });
    (child, port)
}

#[test]
fn an_instance_killed_under_get_load_costs_no_client_an_error() {
    let (mut doomed, a) = python_backend("a");
    let (mut survivor, b) = python_backend("b");
    let router = StandaloneRouter::start(&format!(
        "listen = \"127.0.0.1:0\"\nthreads = 1\n[[apps]]\nname = \"app\"\nhosts = [\"app.localhost\"]\n\
         backends = [\"127.0.0.1:{a}\", \"127.0.0.1:{b}\"]\n"
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicUsize::new(0));
    let from_a = Arc::new(AtomicUsize::new(0));
    let url = format!("http://127.0.0.1:{}/", router.port);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, served, from_a, url) =
                (stop.clone(), served.clone(), from_a.clone(), url.clone());
            std::thread::spawn(move || {
                let client = http_client();
                let mut errors = Vec::new();
                while !stop.load(Ordering::SeqCst) {
                    match client.get(&url).header("host", "app.localhost").send() {
                        Ok(r) if r.status() == 200 => {
                            if r.text().unwrap_or_default() == "a" {
                                from_a.fetch_add(1, Ordering::SeqCst);
                            }
                            served.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(r) => {
                            errors.push(format!("{} {}", r.status(), r.text().unwrap_or_default()))
                        }
                        Err(e) => errors.push(e.to_string()),
                    }
                }
                errors
            })
        })
        .collect();

    wait_for("load on both instances", Duration::from_secs(20), || {
        (served.load(Ordering::SeqCst) >= 300 && from_a.load(Ordering::SeqCst) > 0).then_some(())
    });
    doomed.kill().expect("SIGKILL the instance");
    let _ = doomed.wait();
    let at_kill = served.load(Ordering::SeqCst);
    wait_for("load after the kill", Duration::from_secs(20), || {
        (served.load(Ordering::SeqCst) >= at_kill + 300).then_some(())
    });
    stop.store(true, Ordering::SeqCst);
    let errors: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let _ = survivor.kill();
    let _ = survivor.wait();
    assert!(
        errors.is_empty(),
        "{} client errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
}
