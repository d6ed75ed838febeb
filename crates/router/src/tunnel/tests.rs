//! The relay over in-memory streams with paused time: timers to the
//! millisecond without waiting for them. Real peers through a real router
//! are in `tests/it/websocket.rs`.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::task::JoinHandle;

use super::*;

/// A frame as a client sends it (masked).
fn from_client(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9, 8, 7, 6];
    let mut f = vec![0x80 | opcode, 0x80 | payload.len() as u8];
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// A frame as a server sends it.
fn from_server(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode, payload.len() as u8];
    f.extend_from_slice(payload);
    f
}

/// A close frame's code and reason, unmasked if need be.
fn close_of(frame: &[u8]) -> (u16, String) {
    assert_eq!(frame[0], 0x88, "a close frame: {frame:?}");
    let len = usize::from(frame[1] & 0x7f);
    let payload: Vec<u8> = if frame[1] & 0x80 != 0 {
        let key = &frame[2..6];
        frame[6..6 + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect()
    } else {
        frame[2..2 + len].to_vec()
    };
    (
        u16::from_be_bytes([payload[0], payload[1]]),
        String::from_utf8_lossy(&payload[2..]).into_owned(),
    )
}

struct Run {
    /// The test's end of the client's connection.
    client: DuplexStream,
    /// The test's end of the backend's connection.
    backend: DuplexStream,
    removed: CancellationToken,
    shutdown: CancellationToken,
    meter: Arc<Meter>,
    relay: JoinHandle<(Ended, Option<String>)>,
}

fn start(idle_timeout: Duration, grace: Duration) -> Run {
    let (client, client_side) = duplex(64 * 1024);
    let (backend, backend_side) = duplex(64 * 1024);
    let ends = Ends {
        removed: CancellationToken::new(),
        shutdown: CancellationToken::new(),
        idle_timeout,
        grace,
    };
    let (removed, shutdown) = (ends.removed.clone(), ends.shutdown.clone());
    let meter = Arc::new(Meter::new(Instant::now()));
    let m = Arc::clone(&meter);
    let relay = tokio::spawn(async move { relay(client_side, backend_side, &ends, &m).await });
    Run {
        client,
        backend,
        removed,
        shutdown,
        meter,
        relay,
    }
}

async fn read_n(s: &mut DuplexStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    s.read_exact(&mut buf)
        .await
        .expect("bytes through the tunnel");
    buf
}

/// Reads what is left until the relay closes the stream.
async fn rest(s: &mut DuplexStream) -> Vec<u8> {
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read to the end");
    buf
}

#[tokio::test(start_paused = true)]
async fn bytes_pass_both_ways_until_a_side_closes() {
    let mut run = start(Duration::from_secs(60), Duration::from_secs(30));
    let hello = from_client(0x1, b"hello");
    run.client.write_all(&hello).await.expect("write");
    assert_eq!(read_n(&mut run.backend, hello.len()).await, hello);
    let answer = from_server(0x2, &[0, 1, 2]);
    run.backend.write_all(&answer).await.expect("write");
    assert_eq!(read_n(&mut run.client, answer.len()).await, answer);

    // The backend closes its connection: the client's is closed after it.
    drop(run.backend);
    assert!(rest(&mut run.client).await.is_empty());
    drop(run.client);
    let (ended, error) = run.relay.await.expect("relay");
    assert_eq!((ended, error), (Ended::Closed, None));
    assert_eq!(run.meter.up.load(Ordering::Relaxed), hello.len() as u64);
    assert_eq!(run.meter.down.load(Ordering::Relaxed), answer.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn an_idle_session_gets_close_frames_after_the_timeout_and_not_before() {
    let mut run = start(Duration::from_secs(60), Duration::from_secs(30));
    run.client
        .write_all(&from_client(0x1, b"hi"))
        .await
        .expect("write");
    let _ = read_n(&mut run.backend, 8).await;

    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(!run.relay.is_finished(), "closed before the idle timeout");
    // A byte resets the clock.
    run.backend
        .write_all(&from_server(0x9, b""))
        .await
        .expect("ping");
    let _ = read_n(&mut run.client, 2).await;
    tokio::time::sleep(Duration::from_secs(59)).await;
    assert!(!run.relay.is_finished(), "a ping did not count as activity");

    tokio::time::sleep(Duration::from_secs(2)).await;
    let to_client = read_n(&mut run.client, 2 + 2 + 12).await;
    assert_eq!(close_of(&to_client), (1001, "idle timeout".into()));
    let to_backend = read_n(&mut run.backend, 2 + 4 + 2 + 12).await;
    assert_eq!(close_of(&to_backend), (1001, "idle timeout".into()));
    // Both answer; then the relay closes both.
    run.client
        .write_all(&from_client(0x8, &[0x03, 0xe9]))
        .await
        .expect("client's close");
    run.backend
        .write_all(&from_server(0x8, &[0x03, 0xe9]))
        .await
        .expect("backend's close");
    assert!(rest(&mut run.client).await.is_empty());
    assert!(rest(&mut run.backend).await.is_empty());
    assert_eq!(run.relay.await.expect("relay").0, Ended::Idle);
}

#[tokio::test(start_paused = true)]
async fn a_removed_instance_closes_at_a_frame_boundary_after_the_grace() {
    let mut run = start(Duration::from_secs(3600), Duration::from_secs(30));
    let frame = from_client(0x2, b"0123456789");
    let (head, tail) = frame.split_at(9);
    run.client.write_all(head).await.expect("write");
    assert_eq!(read_n(&mut run.backend, head.len()).await, head);

    run.removed.cancel();
    tokio::time::sleep(Duration::from_secs(29)).await;
    assert!(!run.relay.is_finished(), "closed before the grace");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The client is told at once; the backend once the frame under way is
    // whole, and the frame after it is not passed on.
    let to_client = read_n(&mut run.client, 2 + 2 + 19).await;
    assert_eq!(close_of(&to_client), (1001, "instance going away".into()));
    let mut more = tail.to_vec();
    more.extend(from_client(0x1, b"too late"));
    more.extend(from_client(0x8, &[0x03, 0xe9]));
    run.client.write_all(&more).await.expect("write");
    assert_eq!(read_n(&mut run.backend, tail.len()).await, tail);
    let to_backend = read_n(&mut run.backend, 2 + 4 + 2 + 19).await;
    assert_eq!(close_of(&to_backend), (1001, "instance going away".into()));
    run.backend
        .write_all(&from_server(0x8, &[0x03, 0xe9]))
        .await
        .expect("backend's close");
    assert!(rest(&mut run.backend).await.is_empty());
    assert!(rest(&mut run.client).await.is_empty());
    assert_eq!(run.relay.await.expect("relay").0, Ended::Removed);
}

#[tokio::test(start_paused = true)]
async fn sides_that_never_answer_the_close_are_cut_off() {
    let mut run = start(Duration::from_secs(3600), Duration::from_secs(1));
    run.shutdown.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _ = read_n(&mut run.client, 4).await;
    let _ = read_n(&mut run.backend, 8).await;
    tokio::time::sleep(CLOSE_WITHIN).await;
    let (ended, _) = run.relay.await.expect("relay");
    assert_eq!(ended, Ended::Shutdown);
}

#[tokio::test(start_paused = true)]
async fn a_close_handshake_under_way_gets_no_second_close_frame() {
    let mut run = start(Duration::from_secs(3600), Duration::from_secs(1));
    // The backend closes first; its close reaches the client.
    let backend_close = from_server(0x8, &[0x03, 0xe8]);
    run.backend.write_all(&backend_close).await.expect("write");
    assert_eq!(
        read_n(&mut run.client, backend_close.len()).await,
        backend_close
    );
    // The grace runs out before the client answered.
    run.removed.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The backend is told by the router; the client only gets its end.
    let to_backend = read_n(&mut run.backend, 2 + 4 + 2 + 19).await;
    assert_eq!(close_of(&to_backend), (1001, "instance going away".into()));
    run.client
        .write_all(&from_client(0x8, &[0x03, 0xe8]))
        .await
        .expect("client's close");
    assert!(
        rest(&mut run.client).await.is_empty(),
        "a second close frame went to the client"
    );
    assert_eq!(run.relay.await.expect("relay").0, Ended::Removed);
}
