//! `berth router --config FILE`: the router alone, from a hot-reloaded TOML.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::time::Duration;

use crate::kit::*;

/// A tiny HTTP backend answering every request with `body`.
fn backend(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    let mut content_length = 0;
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            content_length = v.trim().parse().unwrap_or(0);
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut skip = vec![0; content_length];
                    let _ = reader.read_exact(&mut skip);
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    port
}

fn get(port: u16, host: &str) -> Option<(u16, String)> {
    let resp = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{port}/"))
        .header("host", host)
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?;
    Some((resp.status().as_u16(), resp.text().ok()?))
}

#[test]
fn standalone_router_follows_its_config_file() {
    let (one, two) = (backend("one"), backend("two"));
    let router = StandaloneRouter::start(&format!(
        "listen = \"127.0.0.1:0\"\nthreads = 1\n[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"127.0.0.1:{one}\"]\n"
    ));
    let port = router.port;
    assert_eq!(get(port, "one.localhost"), Some((200, "one".into())));
    assert_eq!(get(port, "two.localhost").map(|r| r.0), Some(404));

    // Adding an app to the file routes it without a restart.
    router.write_config(&format!(
        "listen = \"127.0.0.1:0\"\nthreads = 1\n[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"127.0.0.1:{one}\"]\n[[apps]]\nname = \"two\"\nhosts = [\"two.localhost\"]\nbackends = [\"127.0.0.1:{two}\"]\n"
    ));
    wait_for("the new route", Duration::from_secs(10), || {
        (get(port, "two.localhost") == Some((200, "two".into()))).then_some(())
    });

    // An invalid file is refused, naming the line; the last good table serves.
    router.write_config("listen = \"127.0.0.1:0\"\n[[apps]]\nname = \"one\"\nhosts = [\"one.localhost\"]\nbackends = [\"not-an-address\"]\n");
    wait_for(
        "the router to report the bad file",
        Duration::from_secs(10),
        || router.log().contains("not-an-address").then_some(()),
    );
    let text = router.log();
    assert!(text.contains("line 5"), "the error names the line:\n{text}");
    assert_eq!(get(port, "two.localhost"), Some((200, "two".into())));
}
