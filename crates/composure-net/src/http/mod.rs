//! The L7 proxy: HTTP/1.1 and HTTP/2 (h2c, or over TLS) from clients, HTTP/1.1
//! keep-alive to backends.

mod body;
mod forward;
mod headers;
pub(crate) mod pool;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::header::HeaderValue;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::config::Transport;
use crate::error::NetError;
use crate::router::Router;
use crate::serve::{self, Serve};
use crate::socket::BoundSocket;
use crate::tls::{self, HostCertificate, TlsFiles};
use crate::wake::OnWake;
use crate::workers::Workers;

use forward::{Client, forward};

/// How long a client may take to send a request's head; also how long an idle
/// keep-alive connection is kept open.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a client may take to complete a TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A listener that balances HTTP requests one by one over the ready backends of the
/// services its [`Router`] names.
///
/// - Clients: HTTP/1.1 with keep-alive, or HTTP/2 (h2c by prior knowledge; over TLS by
///   ALPN). TLS is terminated when the listener has a certificate ([`Self::with_tls`]).
/// - Backends: HTTP/1.1 over pooled keep-alive connections.
/// - Balancing: power of two choices on requests in flight (a request counts until its
///   answer has been passed on in full).
/// - Headers: hop-by-hop headers are dropped; `X-Forwarded-For` gets the client's
///   address appended, `X-Forwarded-Proto` and `X-Forwarded-Host` are set; `Host` is
///   passed on unchanged.
/// - Upgrades (WebSocket): passed through when the backend answers 101; the tunnel counts
///   as a request in flight until it closes.
/// - Failures: when connecting to a backend fails (nothing was sent), the request goes to
///   another backend, whatever its method; once a request was sent it is never resent and
///   a failure answers 502. Consecutive failures and 5xx answers eject a backend for a
///   cool-down (see [`UpstreamConfig`](crate::UpstreamConfig)).
/// - Answers of its own: 404 when no route matches, 503 when the service has no ready
///   replica, 502 when none could be reached; short plain-text bodies.
#[derive(Debug)]
pub struct HttpProxy {
    listener: TcpListener,
    shared: Box<Shared>,
}

/// What every connection of the listener, on every thread, uses.
struct Shared {
    router: RouterHandle,
    builder: auto::Builder<TokioExecutor>,
    tls: Option<TlsAcceptor>,
    /// Once cancelled: no more accepting, and HTTP/1 answers say `Connection: close`, so
    /// that keep-alive clients move to another listener of the same socket (an ingress
    /// that took it over) between requests rather than finding their connection closed.
    retired: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("router", &self.router)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Replaces the routes of a running [`HttpProxy`]; requests already routed are not
/// affected.
#[derive(Clone, Debug)]
pub struct RouterHandle(Arc<ArcSwap<Router>>);

impl RouterHandle {
    pub fn replace(&self, router: Router) {
        self.0.store(Arc::new(router));
    }

    pub fn current(&self) -> Arc<Router> {
        self.0.load_full()
    }
}

/// Shared by every request of one client connection.
#[derive(Debug)]
struct Conn {
    client: Client,
    router: Arc<ArcSwap<Router>>,
}

impl HttpProxy {
    pub async fn bind(addr: SocketAddr, router: Router) -> Result<Self, NetError> {
        match BoundSocket::bind(Transport::Tcp, addr)? {
            BoundSocket::Tcp(listener) => Self::from_std(listener, router),
            BoundSocket::Udp(_) => Err(NetError::Config(format!("{addr}: not a TCP socket"))),
        }
    }

    /// Serves a socket bound already (possibly by another process).
    pub fn from_std(listener: std::net::TcpListener, router: Router) -> Result<Self, NetError> {
        let listener = TcpListener::from_std(listener).map_err(NetError::Io)?;
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        builder.http2().timer(TokioTimer::new());
        let shared = Shared {
            router: RouterHandle(Arc::new(ArcSwap::from_pointee(router))),
            builder,
            tls: None,
            retired: CancellationToken::new(),
        };
        Ok(HttpProxy {
            listener,
            shared: Box::new(shared),
        })
    }

    /// Terminates TLS with this certificate: the listener then speaks HTTPS only, and
    /// backends see `X-Forwarded-Proto: https`. The files are read now; a renewed
    /// certificate needs a new listener.
    pub fn with_tls(mut self, files: &TlsFiles) -> Result<Self, NetError> {
        self.shared.tls = Some(TlsAcceptor::from(files.server_config()?));
        Ok(self)
    }

    /// Terminates TLS with several certificates, each served for the client's server name
    /// (SNI) that its host pattern matches (see [`HostCertificate`]).
    pub fn with_certificates(mut self, certs: &[HostCertificate]) -> Result<Self, NetError> {
        self.shared.tls = Some(TlsAcceptor::from(tls::server_config(certs)?));
        Ok(self)
    }

    /// The address actually bound (port 0 asks for an ephemeral port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Cancelling it retires the listener: it stops accepting, and each connection closes
    /// after its next answer; [`serve`](Self::serve)'s shutdown ends the rest.
    pub fn retirement(&self) -> CancellationToken {
        self.shared.retired.clone()
    }

    pub fn router(&self) -> RouterHandle {
        self.shared.router.clone()
    }

    /// Serves on the current runtime until `shutdown` completes, then closes idle
    /// connections, lets requests in flight finish and returns once every connection has
    /// closed. Upgraded connections (WebSockets) are not waited for.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), NetError> {
        let retired = self.shared.retired.clone();
        serve::run(
            self.listener,
            vec![Handle::current()],
            Arc::<Shared>::from(self.shared),
            retired,
            shutdown,
        )
        .await
    }

    /// Like [`serve`](Self::serve), with the threads of `workers` accepting and serving
    /// connections: the way to run it for throughput (see [`Workers`]).
    pub async fn serve_on(
        self,
        workers: &Workers,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NetError> {
        let retired = self.shared.retired.clone();
        serve::run(
            self.listener,
            workers.handles(),
            Arc::<Shared>::from(self.shared),
            retired,
            shutdown,
        )
        .await
    }
}

impl Serve for Shared {
    const WAIT_FOR_CONNECTIONS: bool = true;

    async fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) {
        let _ = stream.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return self
                .serve_http(TokioIo::new(stream), peer, "http", stop)
                .await;
        };
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
            Ok(Ok(stream)) => {
                self.serve_http(TokioIo::new(stream), peer, "https", stop)
                    .await;
            }
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
    }
}

impl Shared {
    async fn serve_http<I>(
        &self,
        io: I,
        peer: SocketAddr,
        proto: &'static str,
        mut stop: watch::Receiver<bool>,
    ) where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let conn = Arc::new(Conn {
            client: Client {
                ip: ip_header(peer),
                proto,
            },
            router: Arc::clone(&self.router.0),
        });
        let retired = self.retired.clone();
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let conn = Arc::clone(&conn);
            let retired = retired.clone();
            async move {
                let http1 = req.version() < hyper::Version::HTTP_2;
                let mut response = forward(req, &conn.router, &conn.client).await;
                if http1 && retired.is_cancelled() {
                    response
                        .headers_mut()
                        .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let served = self.builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(served);
        // The connection's task wakes up several times per request: the stop signal is
        // looked at only when it fired.
        let stopped = OnWake::new(serve::stopped(&mut stop));
        let result = tokio::select! {
            biased;
            result = served.as_mut() => result,
            () = stopped => {
                // Idle keep-alive connections close now, busy ones after their answer.
                served.as_mut().graceful_shutdown();
                served.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "client connection ended");
        }
    }
}

fn ip_header(peer: SocketAddr) -> HeaderValue {
    // An IPv4 client of a dual-stack listener shows as `::ffff:a.b.c.d`: say `a.b.c.d`.
    // An IP address is always a valid header value.
    HeaderValue::from_str(&peer.ip().to_canonical().to_string())
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}
