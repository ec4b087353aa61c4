//! The HTTP proxy against real backends on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use composure_net::{
    Endpoint, Endpoints, Listener, ListenerConfig, Protocol, RouteConfig, Router, UpstreamConfig,
};
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn requests_spread_over_every_backend() {
    let backends = [
        HttpBackend::start("a").await,
        HttpBackend::start("b").await,
        HttpBackend::start("c").await,
    ];
    let (_tx, up) = upstream(
        "web",
        backends.iter().map(HttpBackend::endpoint).collect(),
        UpstreamConfig::default(),
    );
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    let mut bodies = Vec::new();
    for _ in 0..60 {
        let (status, body) = get(&client, proxy.addr, "/").await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
    }
    let tally = tally(&bodies);
    assert_eq!(tally.len(), 3, "{tally:?}");
    let metrics = up.metrics();
    assert_eq!(metrics.iter().map(|m| m.requests).sum::<u64>(), 60);
    assert!(metrics.iter().all(|m| m.ready && m.errors == 0));
}

#[tokio::test]
async fn a_removed_backend_finishes_its_request_and_gets_no_new_ones() {
    let a = HttpBackend::start("a").await;
    let b = HttpBackend::start("b").await;
    let (tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();

    let held = tokio::spawn({
        let client = client.clone();
        async move { get(&client, proxy.addr, "/hold").await }
    });
    a.wait_held().await;
    assert_eq!(up.active(&a.task()), 1);

    // `a` leaves the set (say it is being replaced by `b`).
    tx.send(Endpoints::new([b.endpoint()])).unwrap();
    for _ in 0..20 {
        assert_eq!(
            get(&client, proxy.addr, "/").await,
            (StatusCode::OK, "b".into())
        );
    }
    assert_eq!(a.requests(), 1, "a drained backend got a new request");
    assert_eq!(up.active(&a.task()), 1);
    let metrics = up.metrics();
    assert!(metrics.iter().any(|m| m.task == a.task() && !m.ready));

    a.release();
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "a".into()));
    let deadline = tokio::time::Instant::now() + DEADLINE;
    assert_eq!(up.drain(&a.task(), deadline).await, 0);
}

#[tokio::test]
async fn drain_reports_what_is_left_at_the_deadline() {
    let a = HttpBackend::start("a").await;
    let (tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    let held = tokio::spawn({
        let client = client.clone();
        async move { get(&client, proxy.addr, "/hold").await }
    });
    a.wait_held().await;
    tx.send(Endpoints::default()).unwrap();
    // A deadline already passed: the request is still in flight.
    assert_eq!(up.drain(&a.task(), tokio::time::Instant::now()).await, 1);
    a.release();
    assert_eq!(held.await.unwrap().0, StatusCode::OK);
}

#[tokio::test]
async fn a_closed_port_is_retried_on_another_backend() {
    let live = HttpBackend::start("live").await;
    let dead = Endpoint::new("dead", closed_port().await);
    let (_tx, up) = upstream(
        "web",
        vec![dead.clone(), live.endpoint()],
        UpstreamConfig::default(),
    );
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    for _ in 0..30 {
        assert_eq!(
            get(&client, proxy.addr, "/").await,
            (StatusCode::OK, "live".into())
        );
    }
    // A POST with a body is retried too: nothing reached the dead backend.
    for _ in 0..10 {
        let req = Request::post(format!("http://{}/echo", proxy.addr))
            .body(Full::new(Bytes::from_static(b"payload")))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"payload");
    }
    let dead_metrics = up
        .metrics()
        .into_iter()
        .find(|m| m.task == dead.task)
        .unwrap();
    assert!(dead_metrics.errors > 0, "{dead_metrics:?}");
}

#[tokio::test]
async fn a_failing_backend_is_ejected() {
    let bad = HttpBackend::start("bad").await;
    let good = HttpBackend::start("good").await;
    bad.failing.store(true, std::sync::atomic::Ordering::SeqCst);
    let config = UpstreamConfig {
        eject_after: 2,
        eject_for: Duration::from_secs(3600),
        ..UpstreamConfig::default()
    };
    let (_tx, up) = upstream("web", vec![bad.endpoint(), good.endpoint()], config);
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !up
        .metrics()
        .iter()
        .any(|m| m.task == bad.task() && m.ejected)
    {
        assert!(tokio::time::Instant::now() < deadline, "never ejected");
        get(&client, proxy.addr, "/").await;
    }
    let before = bad.requests();
    for _ in 0..30 {
        assert_eq!(
            get(&client, proxy.addr, "/").await,
            (StatusCode::OK, "good".into())
        );
    }
    assert_eq!(bad.requests(), before, "an ejected backend got requests");
}

#[tokio::test]
async fn an_ejected_backend_comes_back_after_the_cool_down() {
    let flaky = HttpBackend::start("flaky").await;
    let good = HttpBackend::start("good").await;
    flaky
        .failing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let config = UpstreamConfig {
        eject_after: 1,
        eject_for: Duration::from_millis(50),
        ..UpstreamConfig::default()
    };
    let (_tx, up) = upstream("web", vec![flaky.endpoint(), good.endpoint()], config);
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while flaky.requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "flaky never tried");
        get(&client, proxy.addr, "/").await;
    }
    // It failed once: ejected. Now it recovers and must get traffic again.
    flaky
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let mut bodies = Vec::new();
    while !bodies.iter().any(|b| b == "flaky") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "flaky never came back"
        );
        let (status, body) = get(&client, proxy.addr, "/").await;
        assert_eq!(status, StatusCode::OK);
        bodies.push(body);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let m = up
        .metrics()
        .into_iter()
        .find(|m| m.task == flaky.task())
        .unwrap();
    assert!(!m.ejected);
}

#[tokio::test]
async fn backend_connections_are_kept_alive_and_reused() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    // A new client connection for every request: reuse is the proxy's doing.
    for _ in 0..20 {
        let client = client();
        assert_eq!(get(&client, proxy.addr, "/").await.0, StatusCode::OK);
    }
    assert_eq!(a.requests(), 20);
    assert_eq!(a.connections(), 1);
}

#[tokio::test]
async fn large_bodies_stream_both_ways_on_a_kept_connection() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    let client = client();
    // Far more than a socket buffer: both bodies cross the proxy in many pieces.
    let payload = Bytes::from((0..4 << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    for _ in 0..3 {
        let req = Request::post(format!("http://{}/echo", proxy.addr))
            .body(Full::new(payload.clone()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(body == payload, "echoed {} bytes", body.len());
    }
    assert_eq!(a.connections(), 1);
}

#[tokio::test]
async fn answers_without_a_body_keep_the_connection() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    let client = client();
    for _ in 0..5 {
        let req = Request::head(format!("http://{}/", proxy.addr))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = client.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
        assert_eq!(get(&client, proxy.addr, "/").await.1, "a");
    }
    assert_eq!(a.requests(), 10);
    assert_eq!(a.connections(), 1);
}

#[tokio::test]
async fn a_streamed_answer_is_passed_on_as_it_comes() {
    // Sends the first piece of a chunked answer, the rest only when told to.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (more_tx, mut more) = tokio::sync::mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let _ = read_head(&mut stream).await;
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n")
            .await
            .unwrap();
        more.recv().await.unwrap();
        stream.write_all(b"6\r\nsecond\r\n0\r\n\r\n").await.unwrap();
        // Keep the connection open: the proxy decides when to close it.
        let _ = stream.read(&mut [0u8; 1]).await;
    });
    let (_tx, up) = upstream(
        "web",
        vec![Endpoint::new("stream", addr)],
        UpstreamConfig::default(),
    );
    let proxy = run_http(Router::single(up)).await;
    let req = Request::get(format!("http://{}/", proxy.addr))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first");
    more_tx.send(()).unwrap();
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn a_kept_connection_that_the_backend_closed_is_replaced() {
    // Answers one request per connection, as keep-alive, and closes the connection
    // when told to: by then the proxy has pooled it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (close_tx, mut close) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = read_head(&mut stream).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await
                .unwrap();
            close.recv().await.unwrap();
            drop(stream);
            closed_tx.send(()).unwrap();
        }
    });
    let (_tx, up) = upstream(
        "web",
        vec![Endpoint::new("once", addr)],
        UpstreamConfig::default(),
    );
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    for _ in 0..3 {
        assert_eq!(
            get(&client, proxy.addr, "/").await,
            (StatusCode::OK, "ok".into())
        );
        close_tx.send(()).unwrap();
        closed.recv().await.unwrap();
    }
    assert!(
        up.metrics().iter().all(|m| m.errors == 0),
        "{:?}",
        up.metrics()
    );
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up.clone())).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_head(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for message in ["hello", "again"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; message.len()];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, message.as_bytes());
    }
    // The tunnel counts as in flight until it closes.
    assert_eq!(up.active(&a.task()), 1);
    drop(stream);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    assert_eq!(up.drain(&a.task(), deadline).await, 0);
}

/// Reads an HTTP head byte by byte, so nothing after it is consumed.
async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn forwarded_headers_tell_the_backend_about_the_client() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    let client = client();
    let headers = [
        ("host", "app.test:8080"),
        ("x-forwarded-for", "203.0.113.7"),
        ("keep-alive", "timeout=5"),
        ("x-custom", "kept"),
    ];
    assert_eq!(
        get_with(&client, proxy.addr, "/", &headers).await.0,
        StatusCode::OK
    );
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(seen["x-forwarded-proto"], "http");
    assert_eq!(seen["x-forwarded-host"], "app.test:8080");
    assert_eq!(seen["host"], "app.test:8080");
    assert_eq!(seen["x-custom"], "kept");
    assert!(!seen.contains_key("keep-alive"));
}

#[tokio::test]
async fn routes_pick_the_service_by_host_and_path() {
    let web = HttpBackend::start("web").await;
    let api = HttpBackend::start("api").await;
    let admin = HttpBackend::start("admin").await;
    let (_t1, web_up) = upstream("web", vec![web.endpoint()], UpstreamConfig::default());
    let (_t2, api_up) = upstream("api", vec![api.endpoint()], UpstreamConfig::default());
    let (_t3, admin_up) = upstream("admin", vec![admin.endpoint()], UpstreamConfig::default());
    let config = ListenerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        protocol: Protocol::Http,
        routes: vec![
            RouteConfig {
                host: Some("*.shop.test".into()),
                ..RouteConfig::to_service("web", 80)
            },
            RouteConfig {
                host: Some("api.shop.test".into()),
                ..RouteConfig::to_service("api", 80)
            },
            RouteConfig {
                path_prefix: Some("/admin".into()),
                ..RouteConfig::to_service("admin", 80)
            },
        ],
        tls: Vec::new(),
    };
    let ups = [web_up, api_up, admin_up];
    let listener = Listener::bind(&config, |route| {
        ups.iter().find(|u| u.name() == route.service).cloned()
    })
    .await
    .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(listener.serve(std::future::pending()));
    let client = client();
    let cases = [
        ("www.shop.test", "/", StatusCode::OK, "web"),
        ("api.shop.test", "/v1", StatusCode::OK, "api"),
        ("other.test", "/admin/users", StatusCode::OK, "admin"),
        ("other.test", "/", StatusCode::NOT_FOUND, ""),
    ];
    for (host, path, status, body) in cases {
        let (got_status, got_body) = get_with(&client, addr, path, &[("host", host)]).await;
        assert_eq!(got_status, status, "{host}{path}");
        if status == StatusCode::OK {
            assert_eq!(got_body, body, "{host}{path}");
        }
    }
    assert!(
        Listener::bind(&config, |_| None).await.is_err(),
        "an unknown service is an error"
    );
}

#[tokio::test]
async fn no_ready_replica_answers_503_and_none_reachable_502() {
    let (tx, up) = upstream("web", vec![], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    let client = client();
    let (status, body) = get(&client, proxy.addr, "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no ready replica"), "{body}");

    tx.send(Endpoints::new([
        Endpoint::new("d1", closed_port().await),
        Endpoint::new("d2", closed_port().await),
    ]))
    .unwrap();
    let (status, body) = get(&client, proxy.addr, "/").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(body.contains("could be reached"), "{body}");
}

/// A replica that takes the request and never answers (a stopped process): the client
/// gets 504 once the response timeout is over, not when its own patience runs out, and the
/// replica is ejected after `eject_after` timeouts, so later requests go to the others.
#[tokio::test]
async fn a_hung_replica_answers_504_after_the_response_timeout_and_is_ejected() {
    let hung = HttpBackend::start("hung").await;
    let good = HttpBackend::start("good").await;
    let config = UpstreamConfig {
        eject_after: 2,
        eject_for: Duration::from_secs(3600),
        response_timeout: Some(Duration::from_millis(200)),
        ..UpstreamConfig::default()
    };
    let (tx, up) = upstream("web", vec![hung.endpoint()], config);
    let proxy = run_http(Router::single(up.clone())).await;
    let client = client();
    for _ in 0..2 {
        let (status, body) = tokio::time::timeout(DEADLINE, get(&client, proxy.addr, "/hold"))
            .await
            .expect("the proxy answers before the client gives up");
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert!(body.contains("did not answer within 200ms"), "{body}");
    }
    assert!(
        up.metrics()
            .iter()
            .any(|m| m.task == hung.task() && m.ejected)
    );

    // With another replica ready, the ejected one gets nothing.
    tx.send(Endpoints::new([hung.endpoint(), good.endpoint()]))
        .unwrap();
    let before = hung.requests();
    for _ in 0..10 {
        assert_eq!(
            get(&client, proxy.addr, "/").await,
            (StatusCode::OK, "good".into())
        );
    }
    assert_eq!(hung.requests(), before);

    // No limit (`response_timeout: 0`): a slow answer is waited for, past the old limit.
    up.set_config(UpstreamConfig {
        response_timeout: None,
        ..UpstreamConfig::default()
    });
    let slow = {
        let client = client.clone();
        tokio::spawn(async move { get(&client, proxy.addr, "/hold").await })
    };
    good.wait_held().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    good.release();
    assert_eq!(slow.await.unwrap(), (StatusCode::OK, "good".into()));
    hung.release();
}

#[tokio::test]
async fn h2c_clients_are_served() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_http(Router::single(up)).await;
    let stream = TcpStream::connect(proxy.addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    for _ in 0..3 {
        let req = Request::get(format!("http://app.test:{}/", proxy.addr.port()))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"a");
    }
    let seen = a.last_headers.lock().unwrap().clone().unwrap();
    assert_eq!(seen["host"], format!("app.test:{}", proxy.addr.port()));
}

#[tokio::test]
async fn routes_can_be_replaced_while_running() {
    let a = HttpBackend::start("a").await;
    let b = HttpBackend::start("b").await;
    let (_ta, up_a) = upstream("a", vec![a.endpoint()], UpstreamConfig::default());
    let (_tb, up_b) = upstream("b", vec![b.endpoint()], UpstreamConfig::default());
    let proxy =
        composure_net::HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up_a))
            .await
            .unwrap();
    let addr = proxy.local_addr();
    let handle = proxy.router();
    tokio::spawn(proxy.serve(std::future::pending()));
    let client = client();
    assert_eq!(get(&client, addr, "/").await.1, "a");
    handle.replace(Router::single(Arc::clone(&up_b)));
    assert_eq!(get(&client, addr, "/").await.1, "b");
}

#[tokio::test]
async fn worker_threads_serve_and_shut_down_gracefully() {
    let a = HttpBackend::start("a").await;
    let (_tx, up) = upstream("web", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = composure_net::HttpProxy::bind("127.0.0.1:0".parse().unwrap(), Router::single(up))
        .await
        .unwrap();
    let addr = proxy.local_addr();
    let workers = composure_net::Workers::start(2).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        proxy
            .serve_on(&workers, async move {
                let _ = stopped.await;
            })
            .await
    });
    // Several client connections, spread over both threads.
    let clients: Vec<HttpClient> = (0..6).map(|_| client()).collect();
    for c in &clients {
        assert_eq!(get(c, addr, "/").await, (StatusCode::OK, "a".into()));
    }

    let held = tokio::spawn({
        let client = clients[0].clone();
        async move { get(&client, addr, "/hold").await }
    });
    a.wait_held().await;
    stop.send(()).unwrap();
    // The request in flight is answered before the proxy stops.
    a.release();
    assert_eq!(held.await.unwrap(), (StatusCode::OK, "a".into()));
    tokio::time::timeout(DEADLINE, served)
        .await
        .expect("the proxy stops once its connections are done")
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err(), "still listening");
}
