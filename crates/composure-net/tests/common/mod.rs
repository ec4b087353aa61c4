//! Tiny backends and clients for the proxy tests: real sockets on 127.0.0.1.

#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use composure_core::TaskId;
use composure_net::{Endpoint, Endpoints, HttpProxy, Router, TcpProxy, Upstream, UpstreamConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};

/// Generous: only reached when something is broken.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds; panics after [`DEADLINE`].
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// An HTTP/1.1 backend that answers its name, and a few special paths:
/// `/hold` waits for [`HttpBackend::release`], `/ws` upgrades and echoes bytes.
pub struct HttpBackend {
    pub name: String,
    pub addr: SocketAddr,
    /// Connections accepted so far.
    pub connections: Arc<AtomicUsize>,
    /// Requests answered or started so far.
    pub requests: Arc<AtomicUsize>,
    /// While set, every request answers 500.
    pub failing: Arc<AtomicBool>,
    /// The headers of the last request.
    pub last_headers: Arc<Mutex<Option<HeaderMap>>>,
    /// One message each time a `/hold` request arrives.
    pub held: tokio::sync::Mutex<mpsc::UnboundedReceiver<()>>,
    release: Arc<Notify>,
}

impl HttpBackend {
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0".parse().unwrap()).await
    }

    /// Like [`start`](Self::start), on `addr`.
    pub async fn start_at(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let last_headers = Arc::new(Mutex::new(None));
        let release = Arc::new(Notify::new());
        let (held_tx, held_rx) = mpsc::unbounded_channel();
        let state = Arc::new(State {
            name: name.to_string(),
            requests: requests.clone(),
            failing: failing.clone(),
            last_headers: last_headers.clone(),
            release: release.clone(),
            held: held_tx,
        });
        let conns = connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                conns.fetch_add(1, Ordering::SeqCst);
                let state = state.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, Infallible>(state.answer(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .with_upgrades()
                        .await;
                });
            }
        });
        HttpBackend {
            name: name.to_string(),
            addr,
            connections,
            requests,
            failing,
            last_headers,
            held: tokio::sync::Mutex::new(held_rx),
            release,
        }
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.name.clone(), self.addr)
    }

    pub fn task(&self) -> TaskId {
        TaskId(self.name.clone())
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits until a `/hold` request has arrived.
    pub async fn wait_held(&self) {
        let mut rx = self.held.lock().await;
        tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .expect("a held request")
            .unwrap();
    }

    /// Lets the held requests answer.
    pub fn release(&self) {
        self.release.notify_waiters();
    }
}

struct State {
    name: String,
    requests: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    last_headers: Arc<Mutex<Option<HeaderMap>>>,
    release: Arc<Notify>,
    held: mpsc::UnboundedSender<()>,
}

impl State {
    async fn answer(&self, mut req: Request<Incoming>) -> Response<Full<Bytes>> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        *self.last_headers.lock().unwrap() = Some(req.headers().clone());
        if self.failing.load(Ordering::SeqCst) {
            return status(StatusCode::INTERNAL_SERVER_ERROR, "failing");
        }
        match req.uri().path() {
            "/hold" => {
                let released = self.release.notified();
                tokio::pin!(released);
                released.as_mut().enable();
                let _ = self.held.send(());
                released.await;
                status(StatusCode::OK, &self.name)
            }
            "/ws" => {
                let upgrade = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = upgrade.await else { return };
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    loop {
                        match io.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if io.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                let mut resp = status(StatusCode::SWITCHING_PROTOCOLS, "");
                resp.headers_mut()
                    .insert("upgrade", HeaderValue::from_static("websocket"));
                resp.headers_mut()
                    .insert("connection", HeaderValue::from_static("upgrade"));
                resp
            }
            "/echo" => {
                let body = req.into_body().collect().await.unwrap().to_bytes();
                Response::new(Full::new(body))
            }
            _ => status(StatusCode::OK, &self.name),
        }
    }
}

fn status(code: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = code;
    resp
}

/// An address where nothing listens (a port bound then released).
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// Runs a proxy in the background until the guard is dropped.
pub struct Running {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn shutdown_signal() -> (oneshot::Sender<()>, impl Future<Output = ()>) {
    let (tx, rx) = oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}

pub async fn run_http(router: Router) -> Running {
    let proxy = HttpProxy::bind("127.0.0.1:0".parse().unwrap(), router)
        .await
        .unwrap();
    let addr = proxy.local_addr();
    let (stop, signal) = shutdown_signal();
    tokio::spawn(proxy.serve(signal));
    Running {
        addr,
        stop: Some(stop),
    }
}

pub async fn run_tcp(upstream: Arc<Upstream>) -> Running {
    let proxy = TcpProxy::bind("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    let addr = proxy.local_addr();
    let (stop, signal) = shutdown_signal();
    tokio::spawn(proxy.serve(signal));
    Running {
        addr,
        stop: Some(stop),
    }
}

/// An upstream over `endpoints`, and the sender that changes them.
pub fn upstream(
    name: &str,
    endpoints: Vec<Endpoint>,
    config: UpstreamConfig,
) -> (watch::Sender<Endpoints>, Arc<Upstream>) {
    let (tx, rx) = Endpoints::new(endpoints).channel();
    (tx, Upstream::new(name, rx, config))
}

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `path` through the proxy; returns the status and the body.
pub async fn get(client: &HttpClient, proxy: SocketAddr, path: &str) -> (StatusCode, String) {
    get_with(client, proxy, path, &[]).await
}

pub async fn get_with(
    client: &HttpClient,
    proxy: SocketAddr,
    path: &str,
    headers: &[(&'static str, &'static str)],
) -> (StatusCode, String) {
    let mut req = Request::get(format!("http://{proxy}{path}"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// How many answers came from each backend name.
pub fn tally(bodies: &[String]) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for b in bodies {
        *out.entry(b.clone()).or_insert(0) += 1;
    }
    out
}
