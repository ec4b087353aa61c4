//! A listener built from its configuration: TCP, HTTP or UDP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{ListenerConfig, Protocol, RouteConfig, Transport};
use crate::error::NetError;
use crate::http::{HttpProxy, RouterHandle};
use crate::router::Router;
use crate::socket::BoundSocket;
use crate::tcp::TcpProxy;
use crate::tls::TlsFiles;
use crate::udp::UdpProxy;
use crate::upstream::Upstream;
use crate::workers::Workers;

/// One published port, bound and ready to serve.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpProxy),
    Http(HttpProxy),
    Udp(UdpProxy),
}

impl Listener {
    /// Binds `config.addr`, terminating TLS if `config.tls` names certificates (read
    /// now). `upstreams` gives the [`Upstream`] of each route; a route it has none for is
    /// an error.
    pub async fn bind(
        config: &ListenerConfig,
        upstreams: impl Fn(&RouteConfig) -> Option<Arc<Upstream>>,
    ) -> Result<Self, NetError> {
        // Checked before binding, so that a bad configuration leaves the port alone.
        check(config)?;
        let socket = BoundSocket::bind(config.protocol.transport(), config.addr)?;
        Self::from_socket(config, socket, upstreams)
    }

    /// Like [`bind`](Self::bind), on a socket bound already (by this process or another
    /// that handed it over); it must be of the listener's transport.
    pub fn from_socket(
        config: &ListenerConfig,
        socket: BoundSocket,
        upstreams: impl Fn(&RouteConfig) -> Option<Arc<Upstream>>,
    ) -> Result<Self, NetError> {
        check(config)?;
        match (config.protocol, socket) {
            (Protocol::Tcp, BoundSocket::Tcp(listener)) => {
                let upstream = single_route(config, upstreams)?;
                Ok(Listener::Tcp(TcpProxy::from_std(listener, upstream)?))
            }
            (Protocol::Udp, BoundSocket::Udp(socket)) => {
                let upstream = single_route(config, upstreams)?;
                Ok(Listener::Udp(UdpProxy::from_std(socket, upstream)))
            }
            (Protocol::Http, BoundSocket::Tcp(listener)) => {
                let router = Router::from_config(&config.routes, upstreams)?;
                let proxy = HttpProxy::from_std(listener, router)?;
                if config.tls.is_empty() {
                    Ok(Listener::Http(proxy))
                } else {
                    Ok(Listener::Http(proxy.with_certificates(&config.tls)?))
                }
            }
            (protocol, socket) => Err(NetError::Config(format!(
                "{}: a {} socket cannot serve {protocol:?}",
                config.addr,
                socket.transport()
            ))),
        }
    }

    /// The handle that replaces the routes of a running HTTP listener; `None` for TCP
    /// and UDP.
    pub fn router(&self) -> Option<RouterHandle> {
        match self {
            Listener::Http(p) => Some(p.router()),
            Listener::Tcp(_) | Listener::Udp(_) => None,
        }
    }

    /// Cancelling it retires the listener: no more accepting, and HTTP keep-alive
    /// connections close after their next answer; the shutdown given to
    /// [`serve_on`](Self::serve_on) ends the rest. `None` for UDP, which only stops.
    pub fn retirement(&self) -> Option<tokio_util::sync::CancellationToken> {
        match self {
            Listener::Tcp(p) => Some(p.retirement()),
            Listener::Http(p) => Some(p.retirement()),
            Listener::Udp(_) => None,
        }
    }

    /// Terminates TLS with this certificate (see [`HttpProxy::with_tls`]); an error for a
    /// TCP listener, which passes TLS through untouched, and for a UDP one.
    pub fn with_tls(self, files: &TlsFiles) -> Result<Self, NetError> {
        match self {
            Listener::Http(p) => Ok(Listener::Http(p.with_tls(files)?)),
            other => Err(NetError::Config(format!(
                "{}: TLS is terminated on HTTP listeners only",
                other.local_addr()
            ))),
        }
    }

    pub fn local_addr(&self) -> SocketAddr {
        match self {
            Listener::Tcp(p) => p.local_addr(),
            Listener::Http(p) => p.local_addr(),
            Listener::Udp(p) => p.local_addr(),
        }
    }

    /// Serves on the current runtime until `shutdown` completes (see
    /// [`TcpProxy::serve`], [`HttpProxy::serve`], [`UdpProxy::serve`]).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), NetError> {
        match self {
            Listener::Tcp(p) => p.serve(shutdown).await,
            Listener::Http(p) => p.serve(shutdown).await,
            Listener::Udp(p) => p.serve(shutdown).await,
        }
    }

    /// Serves on the proxy's own threads until `shutdown` completes; the way to run it
    /// in the daemon (see [`Workers`]).
    pub async fn serve_on(
        self,
        workers: &Workers,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NetError> {
        match self {
            Listener::Tcp(p) => p.serve_on(workers, shutdown).await,
            Listener::Http(p) => p.serve_on(workers, shutdown).await,
            Listener::Udp(p) => p.serve_on(workers, shutdown).await,
        }
    }
}

/// What can be checked of a listener's configuration without its upstreams.
fn check(config: &ListenerConfig) -> Result<(), NetError> {
    if config.protocol == Protocol::Http && config.routes.is_empty() {
        return Err(NetError::Config(format!(
            "{}: an HTTP listener needs at least one route",
            config.addr
        )));
    }
    Ok(())
}

/// The upstream of a TCP or UDP listener: exactly one route, without host or path, and
/// no certificate.
fn single_route(
    config: &ListenerConfig,
    upstreams: impl Fn(&RouteConfig) -> Option<Arc<Upstream>>,
) -> Result<Arc<Upstream>, NetError> {
    let kind = match config.protocol.transport() {
        Transport::Tcp => "TCP",
        Transport::Udp => "UDP",
    };
    let [route] = config.routes.as_slice() else {
        return Err(NetError::Config(format!(
            "{}: a {kind} listener needs exactly one route, not {}",
            config.addr,
            config.routes.len()
        )));
    };
    if route.host.is_some() || route.path_prefix.is_some() {
        return Err(NetError::Config(format!(
            "{}: a {kind} listener cannot route by host or path",
            config.addr
        )));
    }
    if !config.tls.is_empty() {
        return Err(NetError::Config(format!(
            "{}: TLS is terminated on HTTP listeners only",
            config.addr
        )));
    }
    upstreams(route).ok_or_else(|| {
        NetError::Config(format!(
            "{}: no upstream for {}:{}",
            config.addr, route.service, route.port
        ))
    })
}
