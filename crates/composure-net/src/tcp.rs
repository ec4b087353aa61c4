//! The L4 proxy: each accepted connection is relayed to one backend.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::backend::Backend;
use crate::config::Transport;
use crate::error::NetError;
use crate::serve::{self, Serve};
use crate::socket::BoundSocket;
use crate::upstream::Upstream;
use crate::workers::Workers;

/// A listener whose connections go, each whole, to one ready backend of a service.
///
/// The backend is picked by the power of two choices on open connections; when
/// connecting fails, other backends are tried (up to `max_attempts` in all) before the
/// client's connection is closed. Bytes are copied both ways until both sides have
/// finished; a half-close (one side shutting down its writing) is passed on, so
/// request/response protocols that signal the end of a request that way work.
#[derive(Debug)]
pub struct TcpProxy {
    listener: TcpListener,
    upstream: Arc<Upstream>,
    retired: CancellationToken,
}

impl TcpProxy {
    pub async fn bind(addr: SocketAddr, upstream: Arc<Upstream>) -> Result<Self, NetError> {
        match BoundSocket::bind(Transport::Tcp, addr)? {
            BoundSocket::Tcp(listener) => Self::from_std(listener, upstream),
            BoundSocket::Udp(_) => Err(NetError::Config(format!("{addr}: not a TCP socket"))),
        }
    }

    /// Serves a socket bound already (possibly by another process).
    pub fn from_std(
        listener: std::net::TcpListener,
        upstream: Arc<Upstream>,
    ) -> Result<Self, NetError> {
        let listener = TcpListener::from_std(listener).map_err(NetError::Io)?;
        Ok(TcpProxy {
            listener,
            upstream,
            retired: CancellationToken::new(),
        })
    }

    /// The address actually bound (port 0 asks for an ephemeral port).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Cancelling it stops accepting; relays go on until they end.
    pub fn retirement(&self) -> CancellationToken {
        self.retired.clone()
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Accepts connections on the current runtime until `shutdown` completes.
    /// Connections already relayed go on until they end by themselves;
    /// [`Upstream::drain`] waits for them.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), NetError> {
        let relay = Arc::new(Relay(self.upstream));
        serve::run(
            self.listener,
            vec![Handle::current()],
            relay,
            self.retired,
            shutdown,
        )
        .await
    }

    /// Like [`serve`](Self::serve), with the threads of `workers` accepting and relaying.
    pub async fn serve_on(
        self,
        workers: &Workers,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NetError> {
        let relay = Arc::new(Relay(self.upstream));
        serve::run(
            self.listener,
            workers.handles(),
            relay,
            self.retired,
            shutdown,
        )
        .await
    }
}

struct Relay(Arc<Upstream>);

impl Serve for Relay {
    const WAIT_FOR_CONNECTIONS: bool = false;

    async fn serve(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, _: watch::Receiver<bool>) {
        relay(stream, peer, &self.0).await;
    }
}

async fn relay(mut client: TcpStream, peer: SocketAddr, upstream: &Upstream) {
    let _ = client.set_nodelay(true);
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    loop {
        let lease = match upstream.pick(&tried) {
            Ok(lease) => lease,
            Err(why) => {
                tracing::warn!(service = upstream.name(), %peer, ?why, "no backend for connection");
                return;
            }
        };
        let backend = lease.backend();
        let timeout = upstream.config().connect_timeout;
        match tokio::time::timeout(timeout, TcpStream::connect(backend.addr)).await {
            Ok(Ok(mut server)) => {
                backend.success();
                let _ = server.set_nodelay(true);
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut server).await {
                    tracing::debug!(service = upstream.name(), %peer, error = %e, "relay ended");
                }
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(service = upstream.name(), addr = %backend.addr, error = %e, "connect failed");
            }
            Err(_) => {
                tracing::debug!(service = upstream.name(), addr = %backend.addr, "connect timed out");
            }
        }
        backend.failure(upstream.ejection());
        tried.push(Arc::clone(backend));
    }
}
