//! Requests waiting at an app process's port, read from the kernel's tables
//! (`/proc/net/tcp`, `/proc/net/tcp6`).
//!
//! A drain waits for them: a request the router sent before it dropped the
//! instance may still sit in the listen backlog, accepted by the kernel but
//! not yet by a worker, and a pre-fork server told to stop closes its
//! listening socket and resets what the backlog holds. Such a connection
//! has unread bytes in its receive queue. Requests a worker has read are
//! the server's to finish on SIGTERM; idle keep-alive connections (the
//! routers' pools) have nothing unread and are not waited for.

use std::time::Duration;

/// `01` in the `st` column.
const ESTABLISHED: &str = "01";

/// Established TCP connections to local port `port` holding bytes the app
/// has not read.
pub fn unread_requests(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .map(|text| count(&text, port))
        .sum()
}

fn count(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(queues)) = (cols.get(1), cols.get(3), cols.get(4))
            else {
                return false;
            };
            let local_port = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            let unread = queues
                .split_once(':')
                .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
                .unwrap_or(0);
            local_port == Some(port) && *state == ESTABLISHED && unread > 0
        })
        .count()
}

/// Waits until no request waits unread at `port`, or `limit` passed;
/// returns how many are left.
pub async fn wait_unread(port: u16, limit: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let open = unread_requests(port);
        if open == 0 || tokio::time::Instant::now() >= deadline {
            return open;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn counts_connections_with_unread_bytes_to_a_local_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:A3C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1
   1: 0100007F:A3C5 0100007F:D2F0 01 00000000:0000004E 00:00000000 00000000     0        0 2 1
   2: 0100007F:A3C5 0100007F:D2F4 01 00000000:00000000 00:00000000 00000000     0        0 5 1
   3: 0100007F:D2F0 0100007F:A3C5 01 00000000:00000010 00:00000000 00000000     0        0 3 1
   4: 0100007F:A3C5 0100007F:D2F2 06 00000000:00000010 00:00000000 00000000     0        0 4 1
";
        // Port 0xA3C5: a listener, a connection with 78 unread bytes
        // (counted), an idle one, the client end of the first (another
        // local port), one in TIME_WAIT.
        assert_eq!(count(table, 0xA3C5), 1);
        assert_eq!(count(table, 0xD2F0), 1);
        assert_eq!(count(table, 80), 0);
    }

    #[tokio::test]
    async fn sees_a_request_in_the_backlog_until_it_is_read() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        assert_eq!(
            unread_requests(port),
            0,
            "an idle connection is not waited for"
        );
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        // Not accepted yet: in the backlog, its request unread.
        assert_eq!(wait_unread(port, Duration::ZERO).await, 1);
        let (mut server_side, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let n = server_side.read(&mut buf).unwrap();
        assert!(n > 0);
        assert_eq!(wait_unread(port, Duration::from_secs(5)).await, 0);
    }
}
