//! What drains learn of routers, over the real API: several routers'
//! reports of the WebSocket sessions they still carry to a drained
//! instance, a drain's wait woken by their polls, and the report of a
//! router that went away expiring with it.

use std::sync::Arc;
use std::time::Duration;

use berth_client::Client;
use berth_model::DepartedSessions;
use berth_server::ServerConfig;
use berth_store::SqliteStore;
use tokio::net::TcpListener;

const TOKEN: &str = "test-token";

/// A server on a free port with an in-memory store; stops on drop.
struct Server {
    client: Client,
    _sources: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn server(router_timeout: Duration) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let store = SqliteStore::in_memory().await.expect("store");
    let sources = tempfile::tempdir().expect("tempdir");
    let config = ServerConfig {
        admin_token: TOKEN.into(),
        sources_dir: sources.path().to_path_buf(),
        router_timeout,
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(berth_server::run(
        listener,
        Arc::new(store),
        config,
        async {
            let _ = stopped.await;
        },
    ));
    Server {
        client: Client::new(&url, Some(TOKEN.into())).expect("client"),
        _sources: sources,
        _stop: stop,
    }
}

fn carried(open: u64) -> DepartedSessions {
    DepartedSessions {
        app: "chat".into(),
        addr: "127.0.0.1:4000".into(),
        id: "v1/web.1".into(),
        open,
        grace_ms: 30_000,
    }
}

/// One poll of router `name`, reporting `sessions`.
async fn poll(client: &Client, name: &str, sessions: &[DepartedSessions]) {
    client
        .routes(0, Duration::ZERO, Some((name, sessions)))
        .await
        .expect("route table");
}

async fn sessions(client: &Client, wait: Duration) -> berth_model::RouterSessions {
    client
        .router_sessions("chat", "127.0.0.1:4000", "v1/web.1", wait)
        .await
        .expect("router sessions")
}

#[tokio::test]
async fn a_drain_sees_every_routers_sessions_and_wakes_when_the_last_one_ends() {
    let s = server(Duration::from_secs(45)).await;
    poll(&s.client, "r1", &[carried(2)]).await;
    poll(&s.client, "r2", &[carried(1)]).await;
    poll(&s.client, "r3", &[]).await;
    let open = sessions(&s.client, Duration::ZERO).await;
    assert_eq!(open.open(), 3);
    assert_eq!(open.routers.keys().collect::<Vec<_>>(), ["r1", "r2"]);
    assert_eq!(open.grace(), Duration::from_secs(30));

    // Another instance, or the same address in another app, is not this one.
    let other = s
        .client
        .router_sessions("other", "127.0.0.1:4000", "v1/web.1", Duration::ZERO)
        .await
        .expect("router sessions");
    assert_eq!(other.open(), 0);

    // A drain waiting for them is answered once both routers report none.
    let waiting = tokio::spawn({
        let client = s.client.clone();
        async move { sessions(&client, Duration::from_secs(20)).await }
    });
    poll(&s.client, "r1", &[]).await;
    poll(&s.client, "r2", &[carried(0)]).await;
    let answer = waiting.await.expect("waiter");
    assert_eq!(answer.open(), 0, "{:?}", answer.routers);
}

#[tokio::test]
async fn the_sessions_of_a_router_that_went_away_are_not_waited_for() {
    let s = server(Duration::from_secs(1)).await;
    poll(&s.client, "gone", &[carried(5)]).await;
    assert_eq!(sessions(&s.client, Duration::ZERO).await.open(), 5);
    // It polls no more: by the end of this wait, past the router timeout,
    // its report is stale.
    let answer = sessions(&s.client, Duration::from_secs(3)).await;
    assert_eq!(answer.open(), 0, "{:?}", answer.routers);
}
