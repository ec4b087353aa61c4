#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Protocol, RouteConfig};

/// A backend that answers every connection with `hello from <name>` and closes it.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let _ = stream
                    .write_all(format!("hello from {name}").as_bytes())
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(generation: u64, port: u16, backend: SocketAddr) -> IngressConfig {
    IngressConfig {
        generation,
        project: "p".into(),
        listeners: vec![ListenerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            protocol: Protocol::Tcp,
            routes: vec![RouteConfig::to_service("web", 80)],
            tls: Vec::new(),
        }],
        upstreams: vec![IngressUpstream {
            service: "web".into(),
            port: 80,
            response_timeout_ms: None,
            endpoints: vec![IngressEndpoint {
                task: "t1".into(),
                addr: backend,
            }],
        }],
    }
}

fn start(dir: &Path) -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let mut options = IngressOptions::new(dir.to_path_buf());
    options.threads = 1;
    options.drain = Duration::from_secs(1);
    let token = stop.clone();
    let task = tokio::spawn(async move { run(options, token).await.unwrap() });
    (stop, task)
}

async fn serves_generation(dir: &Path, generation: u64) -> IngressStatus {
    for _ in 0..500 {
        if let Some(status) = read_status(dir)
            && status.generation >= generation
        {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the ingress never served generation {generation}");
}

/// One connection's answer; an error if there is none within 5 s.
async fn ask(port: u16) -> std::io::Result<String> {
    let asked = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok(answer)
    };
    tokio::time::timeout(Duration::from_secs(5), asked)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 5 s"))?
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ingress_serves_its_config_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let web = backend("one").await;
    write_json(dir.path(), CONFIG_FILE, &config(7, port, web)).unwrap();
    let (stop, task) = start(dir.path());
    let status = serves_generation(dir.path(), 7).await;
    assert!(status.errors.is_empty(), "{status:?}");
    assert_eq!(ask(port).await.unwrap(), "hello from one");

    // A new replica set in place: the port stays, the traffic moves.
    let other = backend("two").await;
    write_json(dir.path(), CONFIG_FILE, &config(8, port, other)).unwrap();
    serves_generation(dir.path(), 8).await;
    assert_eq!(ask(port).await.unwrap(), "hello from two");
    stop.cancel();
    task.await.unwrap();
    assert!(ask(port).await.is_err(), "the port closes with the ingress");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_reported_then_served_once_free() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    let web = backend("one").await;
    write_json(dir.path(), CONFIG_FILE, &config(1, port, web)).unwrap();
    let (stop, task) = start(dir.path());
    let status = serves_generation(dir.path(), 1).await;
    let [error] = status.errors.as_slice() else {
        panic!("one listener failed: {status:?}");
    };
    assert_eq!(error.addr.port(), port);
    assert!(error.message.contains("in use"), "{}", error.message);

    drop(blocker);
    let mut served = false;
    for _ in 0..50 {
        if read_status(dir.path()).is_some_and(|s| s.errors.is_empty()) {
            served = ask(port).await.is_ok_and(|a| a == "hello from one");
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(served, "the freed port is served");
    stop.cancel();
    task.await.unwrap();
}

/// The upgrade path: a second ingress on the same directory takes the sockets over; the
/// first stops accepting, and no connection is refused at any point.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_takes_the_ports_over_without_refusing_a_connection() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let web = backend("one").await;
    write_json(dir.path(), CONFIG_FILE, &config(1, port, web)).unwrap();
    let (old_stop, old_task) = start(dir.path());
    serves_generation(dir.path(), 1).await;

    let running = Arc::new(AtomicBool::new(true));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let client = {
        let (running, served, failed) = (running.clone(), served.clone(), failed.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                match ask(port).await {
                    Ok(answer) if answer == "hello from one" => {
                        served.fetch_add(1, Ordering::Relaxed)
                    }
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (new_stop, new_task) = start(dir.path());
    // The old one hands over, stops accepting, and goes once told to.
    tokio::time::sleep(Duration::from_millis(300)).await;
    old_stop.cancel();
    old_task.await.unwrap();
    let before = served.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    client.await.unwrap();
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no connection failed");
    assert!(
        served.load(Ordering::Relaxed) > before,
        "the new ingress serves after the old one has gone"
    );
    // The successor answers config changes: it owns the directory now.
    write_json(dir.path(), CONFIG_FILE, &config(2, port, web)).unwrap();
    serves_generation(dir.path(), 2).await;
    new_stop.cancel();
    new_task.await.unwrap();
}
