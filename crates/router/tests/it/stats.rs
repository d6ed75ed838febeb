//! The stats listener: Prometheus text and an HTML page with per-app and
//! per-instance counters, on its own address.

use berth_router::RouterConfig;

use crate::util::*;

#[tokio::test]
async fn counters_per_app_and_instance_on_the_stats_address() {
    let a = Backend::start("a").await;
    let dead_port = HeldPort::bind();
    let dead = dead_port.addr;
    let stats_port = HeldPort::bind();
    let stats_addr = stats_port.addr;
    let config = RouterConfig {
        stats_listen: Some(stats_addr),
        ..Default::default()
    };
    let router = Router::start_with(
        config,
        table(vec![
            app("shop", &["shop.localhost"], &[a.addr]),
            app("gone", &["gone.localhost"], &[dead]),
        ]),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(router.text("shop.localhost", "/").await, "a");
    }
    assert_eq!(router.get("gone.localhost", "/").await.status(), 502);

    let client = http_client();
    let metrics_url = format!("http://{stats_addr}/metrics");
    eventually("the counters to settle", || {
        let (client, url) = (client.clone(), metrics_url.clone());
        async move {
            let Ok(resp) = client.get(&url).send().await else {
                return false;
            };
            let text = resp.text().await.unwrap_or_default();
            text.contains("berth_router_requests_total{app=\"shop\",class=\"2xx\"} 3")
                && text.contains("berth_router_requests_total{app=\"gone\",class=\"5xx\"} 1")
        }
    })
    .await;
    let metrics = client
        .get(&metrics_url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("berth_router_request_duration_seconds_count{app=\"shop\"} 3"),
        "{metrics}"
    );
    let shop = format!("app=\"shop\",instance=\"v1/web.1\",addr=\"{}\"", a.addr);
    assert!(
        metrics.contains(&format!("berth_router_backend_requests_total{{{shop}}} 3")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("berth_router_backend_up{{{shop}}} 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!(
            "berth_router_backend_request_duration_seconds_count{{{shop}}} 3"
        )),
        "per-instance latency: {metrics}"
    );
    let gone = format!("app=\"gone\",instance=\"v1/web.1\",addr=\"{dead}\"");
    assert!(
        metrics.contains(&format!("berth_router_backend_failures_total{{{gone}}} 1")),
        "{metrics}"
    );

    let page = client
        .get(format!("http://{stats_addr}/"))
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("text");
    assert!(
        page.contains("<h2>shop</h2>") && page.contains("<h2>gone</h2>"),
        "{page}"
    );
    assert!(page.contains(&a.addr.to_string()), "{page}");

    // The app listener does not serve the stats.
    let resp = router.get("shop.localhost", "/metrics").await;
    assert_eq!(
        resp.text().await.unwrap_or_default(),
        "a",
        "an app's own /metrics is the app's"
    );
}
