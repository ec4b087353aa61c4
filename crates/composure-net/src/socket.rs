//! A listening socket, bound by this process or handed over by another (see
//! [`ingress::handover`](crate::ingress)): what a [`Listener`](crate::Listener) serves.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use crate::config::Transport;
use crate::error::NetError;

/// How many connections the kernel queues before the proxy accepts them (the standard
/// library's default, 128, is short for a proxy taking bursts).
const BACKLOG: u32 = 1024;

/// A bound TCP listening socket or UDP socket, not yet served.
#[derive(Debug)]
pub enum BoundSocket {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

impl BoundSocket {
    /// Binds `addr` (with `SO_REUSEADDR` for TCP, so that a restart does not wait for old
    /// connections in `TIME_WAIT`; never `SO_REUSEPORT`, so that two proxies cannot share
    /// a port by accident).
    pub fn bind(transport: Transport, addr: SocketAddr) -> Result<BoundSocket, NetError> {
        let bind_error = |source| NetError::Bind { addr, source };
        match transport {
            Transport::Tcp => {
                let socket = if addr.is_ipv4() {
                    tokio::net::TcpSocket::new_v4()
                } else {
                    tokio::net::TcpSocket::new_v6()
                }
                .map_err(bind_error)?;
                socket.set_reuseaddr(true).map_err(bind_error)?;
                socket.bind(addr).map_err(bind_error)?;
                let listener = socket.listen(BACKLOG).map_err(bind_error)?;
                Ok(BoundSocket::Tcp(listener.into_std().map_err(bind_error)?))
            }
            Transport::Udp => {
                let socket = std::net::UdpSocket::bind(addr).map_err(bind_error)?;
                socket.set_nonblocking(true).map_err(bind_error)?;
                Ok(BoundSocket::Udp(socket))
            }
        }
    }

    /// A socket another process bound and handed over.
    pub fn from_fd(transport: Transport, fd: OwnedFd) -> std::io::Result<BoundSocket> {
        let socket = match transport {
            Transport::Tcp => BoundSocket::Tcp(std::net::TcpListener::from(fd)),
            Transport::Udp => BoundSocket::Udp(std::net::UdpSocket::from(fd)),
        };
        match &socket {
            BoundSocket::Tcp(s) => s.set_nonblocking(true)?,
            BoundSocket::Udp(s) => s.set_nonblocking(true)?,
        }
        Ok(socket)
    }

    pub fn transport(&self) -> Transport {
        match self {
            BoundSocket::Tcp(_) => Transport::Tcp,
            BoundSocket::Udp(_) => Transport::Udp,
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self {
            BoundSocket::Tcp(s) => s.local_addr(),
            BoundSocket::Udp(s) => s.local_addr(),
        }
    }

    /// A second descriptor of the same socket, to hand over: the socket stays open (and
    /// keeps its queue of connections) as long as either is.
    pub fn share(&self) -> std::io::Result<OwnedFd> {
        match self {
            BoundSocket::Tcp(s) => Ok(OwnedFd::from(s.try_clone()?)),
            BoundSocket::Udp(s) => Ok(OwnedFd::from(s.try_clone()?)),
        }
    }
}
