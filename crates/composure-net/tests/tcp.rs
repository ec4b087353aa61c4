//! The TCP proxy against real backends on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use composure_net::{Endpoint, Endpoints, UpstreamConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that reads until the client has finished sending (half-close), then
/// answers its name followed by what it read, and closes.
struct TcpBackend {
    name: String,
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl TcpBackend {
    async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        let tag = name.to_string();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tag = tag.clone();
                tokio::spawn(async move {
                    let mut input = Vec::new();
                    if stream.read_to_end(&mut input).await.is_err() {
                        return;
                    }
                    let mut out = format!("{tag}:").into_bytes();
                    out.extend_from_slice(&input);
                    let _ = stream.write_all(&out).await;
                });
            }
        });
        TcpBackend {
            name: name.to_string(),
            addr,
            connections,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.name.clone(), self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

/// Sends `message`, half-closes, and reads the answer to its end.
async fn exchange(proxy: SocketAddr, message: &str) -> String {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    stream.write_all(message.as_bytes()).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
}

#[tokio::test]
async fn bytes_pass_both_ways_and_a_half_close_is_passed_on() {
    let a = TcpBackend::start("a").await;
    let (_tx, up) = upstream("db", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_tcp(up).await;
    let big = "x".repeat(1 << 20);
    assert_eq!(exchange(proxy.addr, "ping").await, "a:ping");
    assert_eq!(exchange(proxy.addr, &big).await, format!("a:{big}"));
}

#[tokio::test]
async fn connections_spread_over_every_backend() {
    let backends = [
        TcpBackend::start("a").await,
        TcpBackend::start("b").await,
        TcpBackend::start("c").await,
    ];
    let (_tx, up) = upstream(
        "db",
        backends.iter().map(TcpBackend::endpoint).collect(),
        UpstreamConfig::default(),
    );
    let proxy = run_tcp(up.clone()).await;
    for _ in 0..60 {
        exchange(proxy.addr, "hi").await;
    }
    for b in &backends {
        assert!(b.connections() > 0, "{} got no connection", b.name);
    }
    assert_eq!(up.metrics().iter().map(|m| m.requests).sum::<u64>(), 60);
}

#[tokio::test]
async fn a_closed_port_is_retried_on_another_backend() {
    let live = TcpBackend::start("live").await;
    let (_tx, up) = upstream(
        "db",
        vec![Endpoint::new("dead", closed_port().await), live.endpoint()],
        UpstreamConfig::default(),
    );
    let proxy = run_tcp(up).await;
    for _ in 0..30 {
        assert_eq!(exchange(proxy.addr, "hi").await, "live:hi");
    }
}

#[tokio::test]
async fn a_removed_backend_keeps_its_connection_and_gets_no_new_ones() {
    let a = TcpBackend::start("a").await;
    let b = TcpBackend::start("b").await;
    let (tx, up) = upstream("db", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = run_tcp(up.clone()).await;

    // An open connection to `a`, not finished yet.
    let mut open = TcpStream::connect(proxy.addr).await.unwrap();
    open.write_all(b"first half ").await.unwrap();
    let task = a.endpoint().task;
    eventually("the connection to reach a", || up.active(&task) == 1).await;

    tx.send(Endpoints::new([b.endpoint()])).unwrap();
    for _ in 0..10 {
        assert_eq!(exchange(proxy.addr, "new").await, "b:new");
    }
    assert_eq!(a.connections(), 1);

    // The drained connection still works to its end.
    open.write_all(b"second half").await.unwrap();
    open.shutdown().await.unwrap();
    let mut answer = String::new();
    open.read_to_string(&mut answer).await.unwrap();
    assert_eq!(answer, "a:first half second half");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    assert_eq!(up.drain(&task, deadline).await, 0);
}

#[tokio::test]
async fn no_backend_closes_the_connection() {
    let (_tx, up) = upstream("db", vec![], UpstreamConfig::default());
    let proxy = run_tcp(up).await;
    let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    assert!(answer.is_empty());
}

#[tokio::test]
async fn worker_threads_relay_connections() {
    let a = TcpBackend::start("a").await;
    let (_tx, up) = upstream("db", vec![a.endpoint()], UpstreamConfig::default());
    let proxy = composure_net::TcpProxy::bind("127.0.0.1:0".parse().unwrap(), up)
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
    let answers = futures_join(addr).await;
    assert!(answers.iter().all(|a| a == "a:hi"), "{answers:?}");
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, served)
        .await
        .expect("the proxy stops")
        .unwrap()
        .unwrap();
}

/// Ten exchanges at once.
async fn futures_join(addr: SocketAddr) -> Vec<String> {
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(async move { exchange(addr, "hi").await }))
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}
