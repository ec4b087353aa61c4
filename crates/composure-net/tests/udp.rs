//! The UDP relay against real backends on 127.0.0.1.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use composure_net::{
    Endpoint, Endpoints, Listener, ListenerConfig, Protocol, RouteConfig, UdpConfig, UdpProxy,
    Upstream, UpstreamConfig, Workers,
};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A backend that answers each datagram with its name, a colon and the datagram.
struct UdpEcho {
    name: String,
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl UdpEcho {
    async fn start(name: &str) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let tag = name.to_string();
        let task = tokio::spawn(async move {
            let mut buffer = vec![0u8; 65_535];
            while let Ok((len, peer)) = socket.recv_from(&mut buffer).await {
                let mut answer = format!("{tag}:").into_bytes();
                answer.extend_from_slice(&buffer[..len]);
                let _ = socket.send_to(&answer, peer).await;
            }
        });
        UdpEcho {
            name: name.to_string(),
            addr,
            task,
        }
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.name.clone(), self.addr)
    }

    /// Closes its socket: datagrams sent to it now get an ICMP "port unreachable".
    async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// A proxy served on the current runtime until the guard is dropped.
struct Relay {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<()>>,
}

impl Relay {
    async fn start(upstream: Arc<Upstream>, config: UdpConfig) -> Self {
        let proxy = UdpProxy::bind("127.0.0.1:0".parse().unwrap(), upstream)
            .await
            .unwrap()
            .with_config(config);
        let addr = proxy.local_addr();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            proxy
                .serve(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Relay {
            addr,
            stop: Some(stop),
            served: Some(served),
        }
    }

    /// Stops the proxy and waits until it has finished.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let served = self.served.take().unwrap();
        tokio::time::timeout(DEADLINE, served)
            .await
            .expect("the proxy stops")
            .unwrap();
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A client: one socket, so one session.
async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `message` to `proxy` and waits for the answer, or `None` after `wait`.
async fn try_ask(
    socket: &UdpSocket,
    proxy: SocketAddr,
    message: &str,
    wait: Duration,
) -> Option<String> {
    socket.send_to(message.as_bytes(), proxy).await.unwrap();
    let mut buffer = vec![0u8; 65_535];
    let (len, from) = tokio::time::timeout(wait, socket.recv_from(&mut buffer))
        .await
        .ok()?
        .ok()?;
    // Answers come from the published address, as the client expects.
    assert_eq!(from, proxy);
    Some(String::from_utf8_lossy(&buffer[..len]).into_owned())
}

/// Sends `message` and waits for the answer; panics after [`DEADLINE`].
async fn ask(socket: &UdpSocket, proxy: SocketAddr, message: &str) -> String {
    try_ask(socket, proxy, message, DEADLINE)
        .await
        .expect("an answer")
}

/// The backend's name in an answer.
fn who(answer: &str) -> &str {
    answer.split(':').next().unwrap_or_default()
}

fn sessions(up: &Upstream) -> u64 {
    up.metrics().iter().map(|m| m.requests).sum()
}

fn long_sessions() -> UdpConfig {
    UdpConfig {
        idle_timeout: Duration::from_secs(600),
        ..UdpConfig::default()
    }
}

#[tokio::test]
async fn datagrams_pass_both_ways() {
    let a = UdpEcho::start("a").await;
    let (_tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let relay = Relay::start(up, long_sessions()).await;
    let c = client().await;
    assert_eq!(ask(&c, relay.addr, "ping").await, "a:ping");
    let big = "x".repeat(60_000);
    assert_eq!(ask(&c, relay.addr, &big).await, format!("a:{big}"));
}

#[tokio::test]
async fn a_client_keeps_its_backend_and_clients_spread_over_every_backend() {
    let a = UdpEcho::start("a").await;
    let b = UdpEcho::start("b").await;
    let (_tx, up) = upstream(
        "dns",
        vec![a.endpoint(), b.endpoint()],
        UpstreamConfig::default(),
    );
    let relay = Relay::start(up.clone(), long_sessions()).await;
    let mut clients = Vec::new();
    let mut seen = HashSet::new();
    for _ in 0..20 {
        let c = client().await;
        let first = ask(&c, relay.addr, "hello").await;
        for i in 0..5 {
            let again = ask(&c, relay.addr, &format!("again {i}")).await;
            assert_eq!(who(&again), who(&first), "the session moved");
        }
        seen.insert(who(&first).to_string());
        clients.push(c);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(sessions(&up), 20);
    // Open sessions count as in flight, spread by the power of two choices.
    let active: usize = up.metrics().iter().map(|m| m.active).sum();
    assert_eq!(active, 20);
}

#[tokio::test]
async fn a_withdrawn_backend_keeps_its_sessions_and_gets_no_new_one() {
    let a = UdpEcho::start("a").await;
    let b = UdpEcho::start("b").await;
    let (tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let relay = Relay::start(up.clone(), long_sessions()).await;
    let old = client().await;
    assert_eq!(ask(&old, relay.addr, "before").await, "a:before");

    tx.send(Endpoints::new([b.endpoint()])).unwrap();
    for _ in 0..10 {
        let new = client().await;
        assert_eq!(ask(&new, relay.addr, "new").await, "b:new");
    }
    // The session opened before goes on with `a`, and `a` is not drained yet.
    assert_eq!(ask(&old, relay.addr, "after").await, "a:after");
    assert_eq!(up.active(&a.endpoint().task), 1);
}

#[tokio::test]
async fn an_idle_session_expires_and_the_backend_drains() {
    let a = UdpEcho::start("a").await;
    let b = UdpEcho::start("b").await;
    let (tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let config = UdpConfig {
        idle_timeout: Duration::from_millis(200),
        ..UdpConfig::default()
    };
    let relay = Relay::start(up.clone(), config).await;
    let c = client().await;
    assert_eq!(ask(&c, relay.addr, "one").await, "a:one");
    let task = a.endpoint().task;
    assert_eq!(up.active(&task), 1);

    tx.send(Endpoints::new([b.endpoint()])).unwrap();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    assert_eq!(up.drain(&task, deadline).await, 0, "the idle session ended");
    // The same client now gets a new session, with a ready backend.
    assert_eq!(ask(&c, relay.addr, "two").await, "b:two");
    assert_eq!(up.active(&b.endpoint().task), 1);
}

#[tokio::test]
async fn a_session_whose_backend_is_gone_ends_and_the_client_moves_on() {
    let a = UdpEcho::start("a").await;
    let b = UdpEcho::start("b").await;
    let (tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let relay = Relay::start(up.clone(), long_sessions()).await;
    let c = client().await;
    assert_eq!(ask(&c, relay.addr, "one").await, "a:one");

    // The replica is withdrawn, then stopped: its port answers "unreachable".
    tx.send(Endpoints::new([b.endpoint()])).unwrap();
    let task = a.endpoint().task;
    a.stop().await;
    let mut answer = None;
    for _ in 0..100 {
        answer = try_ask(&c, relay.addr, "retry", Duration::from_millis(200)).await;
        if answer.is_some() {
            break;
        }
    }
    assert_eq!(answer.as_deref(), Some("b:retry"));
    assert_eq!(up.active(&task), 0);
}

#[tokio::test]
async fn no_backend_drops_the_datagram_until_one_is_ready() {
    let (tx, up) = upstream("dns", vec![], UpstreamConfig::default());
    let relay = Relay::start(up.clone(), long_sessions()).await;
    let c = client().await;
    assert_eq!(
        try_ask(&c, relay.addr, "lost", Duration::from_millis(200)).await,
        None
    );
    let a = UdpEcho::start("a").await;
    tx.send(Endpoints::new([a.endpoint()])).unwrap();
    assert_eq!(ask(&c, relay.addr, "found").await, "a:found");
    assert_eq!(sessions(&up), 1);
}

#[tokio::test]
async fn sessions_beyond_the_limit_are_not_opened() {
    let a = UdpEcho::start("a").await;
    let (_tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let config = UdpConfig {
        max_sessions: 1,
        ..long_sessions()
    };
    let relay = Relay::start(up.clone(), config).await;
    let first = client().await;
    assert_eq!(ask(&first, relay.addr, "one").await, "a:one");
    let second = client().await;
    second.send_to(b"refused", relay.addr).await.unwrap();
    // Datagrams are received in order: once `first` has its answer, the proxy has dealt
    // with `second`'s datagram.
    assert_eq!(ask(&first, relay.addr, "two").await, "a:two");
    assert_eq!(sessions(&up), 1);
}

#[tokio::test]
async fn a_stopped_proxy_releases_its_port_and_its_sessions() {
    let a = UdpEcho::start("a").await;
    let (_tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let relay = Relay::start(up.clone(), long_sessions()).await;
    let addr = relay.addr;
    let c = client().await;
    assert_eq!(ask(&c, addr, "one").await, "a:one");
    relay.stop().await;
    assert_eq!(up.active(&a.endpoint().task), 0);
    UdpSocket::bind(addr).await.expect("the port is free again");
}

#[tokio::test]
async fn a_udp_listener_runs_on_the_proxy_threads() {
    let a = UdpEcho::start("a").await;
    let (_tx, up) = upstream("dns", vec![a.endpoint()], UpstreamConfig::default());
    let config = ListenerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        protocol: Protocol::Udp,
        routes: vec![RouteConfig::to_service("dns", 53)],
        tls: Vec::new(),
    };
    let listener = Listener::bind(&config, |_| Some(up.clone())).await.unwrap();
    assert!(listener.router().is_none());
    let addr = listener.local_addr();
    let workers = Workers::start(2).unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(async move {
        listener
            .serve_on(&workers, async move {
                let _ = stopped.await;
            })
            .await
    });
    let c = client().await;
    assert_eq!(ask(&c, addr, "hi").await, "a:hi");
    stop.send(()).unwrap();
    tokio::time::timeout(DEADLINE, served)
        .await
        .expect("the proxy stops")
        .unwrap()
        .unwrap();
    UdpSocket::bind(addr).await.expect("the port is free again");
}

#[tokio::test]
async fn a_udp_listener_takes_one_route_and_no_tls() {
    let (_tx, up) = upstream("dns", vec![], UpstreamConfig::default());
    let mut config = ListenerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        protocol: Protocol::Udp,
        routes: vec![
            RouteConfig::to_service("dns", 53),
            RouteConfig::to_service("other", 53),
        ],
        tls: Vec::new(),
    };
    assert!(Listener::bind(&config, |_| Some(up.clone())).await.is_err());
    config.routes.truncate(1);
    config.routes[0].host = Some("example.com".into());
    assert!(Listener::bind(&config, |_| Some(up.clone())).await.is_err());
}
