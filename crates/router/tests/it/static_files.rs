//! Static files served by the router itself.

use berth_model::StaticFiles;

use crate::util::*;

struct Site {
    _dir: tempfile::TempDir,
    app: Backend,
    router: Router,
}

async fn site() -> Site {
    let dir = tempfile::tempdir().expect("tempdir");
    let public = dir.path().join("public");
    std::fs::create_dir_all(public.join("css")).expect("mkdir");
    std::fs::write(public.join("css/app.css"), "body { color: red }").expect("write");
    std::fs::write(dir.path().join("secret.txt"), "TOP SECRET").expect("write");
    let backend = Backend::start("app").await;
    let mut route = app("one", &["one.localhost"], &[backend.addr]);
    route.static_files = Some(StaticFiles {
        url_prefix: "/static/".into(),
        dir: public.to_string_lossy().into_owned(),
    });
    let router = Router::start(table(vec![route])).await;
    Site {
        _dir: dir,
        app: backend,
        router,
    }
}

#[tokio::test]
async fn files_are_served_with_validators_and_304s() {
    let s = site().await;
    let r = s.router.get("one.localhost", "/static/css/app.css").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/css; charset=utf-8");
    assert_eq!(r.headers()["cache-control"], "public, max-age=3600");
    assert!(r.headers().contains_key("last-modified"));
    let etag = r.headers()["etag"].to_str().expect("ascii").to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert_eq!(r.text().await.expect("body"), "body { color: red }");

    let r = s
        .router
        .request(reqwest::Method::GET, "one.localhost", "/static/css/app.css")
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 304);
    assert_eq!(r.text().await.expect("body"), "");

    let r = s
        .router
        .request(
            reqwest::Method::HEAD,
            "one.localhost",
            "/static/css/app.css",
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], "19");

    assert_eq!(s.app.hits(), 0, "the app never saw a static request");
}

#[tokio::test]
async fn traversal_missing_files_and_directories_are_404() {
    let s = site().await;
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/css/..%2f..%2fsecret.txt",
        "/static/..\\secret.txt",
        "/static/css%00/app.css",
        "/static/missing.css",
        "/static/css",
        "/static/",
    ] {
        let answer = raw(
            s.router.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: one.localhost\r\nConnection: close\r\n\r\n"),
        )
        .await;
        // hyper may refuse the most broken request lines itself (400);
        // either way nothing is served.
        let status = raw_status(&answer);
        assert!(status == 404 || status == 400, "{path}: {answer}");
        assert!(!answer.contains("TOP SECRET"), "{path}");
    }
    assert_eq!(
        s.app.hits(),
        0,
        "a missing static file does not fall back to the app"
    );

    // Outside the prefix, and non-GET methods, go to the app.
    let r = s.router.get("one.localhost", "/other").await;
    assert_eq!(r.text().await.expect("body"), "app");
    let r = s
        .router
        .request(
            reqwest::Method::POST,
            "one.localhost",
            "/static/css/app.css",
        )
        .send()
        .await
        .expect("answer");
    assert_eq!(r.text().await.expect("body"), "app");
}
