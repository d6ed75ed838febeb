//! Bodies pass through as they come: a server-sent-events stream reaches
//! the client event by event, and an upload reaches the app chunk by chunk
//! while the client is still sending. A router that buffered would hold
//! each until its end, and both tests would wait forever.

use std::convert::Infallible;

use bytes::Bytes;
use futures_util::StreamExt;
use http::Response;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::util::*;

type Events = mpsc::Receiver<Result<Frame<Bytes>, Infallible>>;

/// An app whose `/events` answer is fed by the test, and which reports each
/// chunk of a request body the moment it reads it.
async fn streaming_app(events: Events, chunks: mpsc::Sender<Bytes>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let events = std::sync::Arc::new(tokio::sync::Mutex::new(Some(events)));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (events, chunks) = (events.clone(), chunks.clone());
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let (events, chunks) = (events.clone(), chunks.clone());
                async move {
                    if req.uri().path() == "/events" {
                        let rx = events.lock().await.take().expect("one event stream");
                        let body = StreamBody::new(tokio_stream_of(rx));
                        let resp = Response::builder()
                            .header("content-type", "text/event-stream")
                            .body(BodyExt::boxed(body))
                            .expect("response");
                        return Ok::<_, Infallible>(resp);
                    }
                    let mut body = req.into_body();
                    while let Some(Ok(frame)) = body.frame().await {
                        if let Ok(data) = frame.into_data() {
                            let _ = chunks.send(data).await;
                        }
                    }
                    Ok(Response::new(
                        http_body_util::Full::new(Bytes::from("done"))
                            .map_err(|never| match never {})
                            .boxed(),
                    ))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    addr
}

fn tokio_stream_of(
    mut rx: Events,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn server_sent_events_reach_the_client_one_by_one() {
    let (events, rx) = mpsc::channel(1);
    let (chunks, _) = mpsc::channel(1);
    let app_addr = streaming_app(rx, chunks).await;
    let router = Router::start(table(vec![app("s", &["s.localhost"], &[app_addr])])).await;
    let resp = router.get("s.localhost", "/events").await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    for n in 0..5 {
        let event = format!("data: {n}\n\n");
        events
            .send(Ok(Frame::data(Bytes::from(event.clone()))))
            .await
            .expect("app takes the event");
        // The next event is only sent once this one arrived.
        let got = tokio::time::timeout(DEADLINE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("event {n} held back by the router"))
            .expect("stream open")
            .expect("event bytes");
        assert_eq!(got, event.as_bytes());
    }
}

#[tokio::test]
async fn an_upload_reaches_the_app_while_the_client_still_sends() {
    let (_events, rx) = mpsc::channel(1);
    let (chunks, mut arrived) = mpsc::channel(1);
    let app_addr = streaming_app(rx, chunks).await;
    let router = Router::start(table(vec![app("s", &["s.localhost"], &[app_addr])])).await;
    let (send, body) = mpsc::channel::<Result<Bytes, Infallible>>(1);
    let upload = router
        .request(reqwest::Method::POST, "s.localhost", "/upload")
        .body(reqwest::Body::wrap_stream(tokio_stream_of_bytes(body)))
        .send();
    let answer = tokio::spawn(upload);
    for n in 0..5 {
        let chunk = Bytes::from(format!("chunk {n};"));
        send.send(Ok(chunk.clone())).await.expect("client sends");
        // The next chunk is only sent once the app read this one.
        let got = tokio::time::timeout(DEADLINE, arrived.recv())
            .await
            .unwrap_or_else(|_| panic!("chunk {n} held back by the router"))
            .expect("app reading");
        assert_eq!(got, chunk);
    }
    drop(send);
    let resp = answer.await.expect("task").expect("answer");
    assert_eq!(resp.status(), 200);
}

fn tokio_stream_of_bytes(
    mut rx: mpsc::Receiver<Result<Bytes, Infallible>>,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
