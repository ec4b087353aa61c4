//! The UDP relay: each client address gets a session, with a socket of its own connected to
//! one backend, until it has been idle for a while.

use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::backend::{Backend, Lease};
use crate::config::Transport;
use crate::error::NetError;
use crate::serve::stopped;
use crate::socket::BoundSocket;
use crate::upstream::Upstream;
use crate::workers::Workers;

/// Datagrams from one client that may wait for its session; further ones are dropped.
const QUEUE: usize = 64;
/// The largest datagram relayed (a UDP payload is at most 65,507 bytes over IPv4).
const MAX_DATAGRAM: usize = 65_535;

/// How a [`UdpProxy`] keeps its sessions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UdpConfig {
    /// A session ends after this long without a datagram in either direction.
    pub idle_timeout: Duration,
    /// Sessions open at a time; the datagrams of a new client are dropped beyond it.
    pub max_sessions: usize,
}

impl Default for UdpConfig {
    fn default() -> Self {
        UdpConfig {
            idle_timeout: Duration::from_secs(30),
            max_sessions: 10_000,
        }
    }
}

/// A listener whose clients each get a session with one ready backend of a service.
///
/// # Sessions
///
/// - The first datagram from a client address opens a session: a backend is picked like a
///   TCP connection's (power of two choices on open sessions, ready backends only), and a
///   socket connected to it relays the client's datagrams to it and its answers back,
///   sent from the published address.
/// - Every later datagram from that address goes to the same backend (sticky), until the
///   session ends: after [`UdpConfig::idle_timeout`] without a datagram either way (30 s
///   by default), when the backend's socket reports an error (the replica is gone: ICMP
///   port unreachable), or when the listener stops. The client's next datagram opens a
///   new session.
/// - A session counts as one in flight on its backend ([`Upstream::active`],
///   [`Upstream::drain`]): a replica withdrawn from the set gets no new session, and
///   drains once its sessions have gone idle (or the daemon's deadline passes).
/// - At most [`UdpConfig::max_sessions`] (10,000 by default) at a time per listener; the
///   datagrams of further clients are dropped until sessions expire. Each session holds
///   a socket, so the process's open-files limit must allow as many.
///
/// Datagrams are never retried: one the backend's socket cannot take at once (a queue of
/// 64 per session is full) is dropped, as the network may drop any datagram.
///
/// # Threads
///
/// A listener runs on one proxy thread ([`Workers`] spreads listeners over them): its
/// receiving loop and all its sessions. One receiver keeps each client's datagrams in
/// the order they came and needs no lock on the session table; the cost is that one UDP
/// port is relayed by one core at most.
#[derive(Debug)]
pub struct UdpProxy {
    socket: std::net::UdpSocket,
    upstream: Arc<Upstream>,
    config: UdpConfig,
}

impl UdpProxy {
    /// Binds `addr`, with the default [`UdpConfig`].
    pub async fn bind(addr: SocketAddr, upstream: Arc<Upstream>) -> Result<Self, NetError> {
        match BoundSocket::bind(Transport::Udp, addr)? {
            BoundSocket::Udp(socket) => Ok(Self::from_std(socket, upstream)),
            BoundSocket::Tcp(_) => Err(NetError::Config(format!("{addr}: not a UDP socket"))),
        }
    }

    /// Relays on a socket bound already (possibly by another process). It is registered
    /// with the runtime that serves it, so kept as a plain socket until then.
    pub fn from_std(socket: std::net::UdpSocket, upstream: Arc<Upstream>) -> Self {
        UdpProxy {
            socket,
            upstream,
            config: UdpConfig::default(),
        }
    }

    pub fn with_config(mut self, config: UdpConfig) -> Self {
        self.config = config;
        self
    }

    /// The address actually bound (port 0 asks for an ephemeral port).
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }

    /// Relays on the current runtime until `shutdown` completes; then every session ends
    /// and the socket is closed by the time this returns.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), NetError> {
        let socket = UdpSocket::from_std(self.socket).map_err(NetError::Io)?;
        let (stop_tx, stop) = watch::channel(false);
        let signal = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        tokio::join!(
            Relay::new(socket, self.upstream, self.config).run(stop),
            signal
        );
        Ok(())
    }

    /// Like [`serve`](Self::serve), on one of the threads of `workers`.
    pub async fn serve_on(
        self,
        workers: &Workers,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), NetError> {
        let (stop_tx, stop) = watch::channel(false);
        let (done_tx, mut done) = oneshot::channel::<Result<(), NetError>>();
        let UdpProxy {
            socket,
            upstream,
            config,
        } = self;
        workers.next_handle().spawn(async move {
            // Registered with this thread's own runtime, so converted here.
            let result = match UdpSocket::from_std(socket) {
                Ok(socket) => {
                    Relay::new(socket, upstream, config).run(stop).await;
                    Ok(())
                }
                Err(e) => Err(NetError::Io(e)),
            };
            let _ = done_tx.send(result);
        });
        tokio::pin!(shutdown);
        tokio::select! {
            result = &mut done => return result.unwrap_or(Ok(())),
            () = &mut shutdown => {}
        }
        let _ = stop_tx.send(true);
        done.await.unwrap_or(Ok(()))
    }
}

/// The receiving loop of a listener and its table of sessions.
struct Relay {
    socket: Arc<UdpSocket>,
    upstream: Arc<Upstream>,
    config: UdpConfig,
    /// The queue of each client's session.
    sessions: HashMap<SocketAddr, mpsc::Sender<Vec<u8>>>,
    /// The sessions' tasks; each returns its client's address when it ends.
    tasks: JoinSet<SocketAddr>,
    /// Set once the "no backend" or "too many sessions" warning has been logged, so that a
    /// flood of datagrams logs it once; cleared when a session opens again.
    warned: bool,
}

impl Relay {
    fn new(socket: UdpSocket, upstream: Arc<Upstream>, config: UdpConfig) -> Self {
        Relay {
            socket: Arc::new(socket),
            upstream,
            config,
            sessions: HashMap::new(),
            tasks: JoinSet::new(),
            warned: false,
        }
    }

    /// Receives until `stop` turns true, then ends every session.
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        let mut buffer = vec![0u8; MAX_DATAGRAM];
        loop {
            tokio::select! {
                () = stopped(&mut stop) => break,
                Some(ended) = self.tasks.join_next() => {
                    if let Ok(client) = ended {
                        self.forget(client);
                    }
                }
                received = self.socket.recv_from(&mut buffer) => match received {
                    Ok((len, client)) => self.deliver(&buffer[..len], client),
                    Err(e) => {
                        // Not expected on an unconnected socket; must not become a busy loop.
                        tracing::warn!(service = self.upstream.name(), error = %e, "udp receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        // Aborting a session drops its backend's lease and its clone of the socket.
        self.tasks.shutdown().await;
    }

    /// Removes the session of `client` if it has ended (a newer one may have taken its
    /// place).
    fn forget(&mut self, client: SocketAddr) {
        if self.sessions.get(&client).is_some_and(|q| q.is_closed()) {
            self.sessions.remove(&client);
        }
    }

    /// Queues a datagram for the session of `client`, opening one if it has none.
    fn deliver(&mut self, datagram: &[u8], client: SocketAddr) {
        if let Some(queue) = self.sessions.get(&client) {
            match queue.try_send(datagram.to_vec()) {
                Ok(()) => return,
                Err(TrySendError::Full(_)) => {
                    tracing::trace!(%client, "udp session queue full: datagram dropped");
                    return;
                }
                // The session ended since (idle): this datagram opens a new one.
                Err(TrySendError::Closed(_)) => {
                    self.sessions.remove(&client);
                }
            }
        }
        if self.sessions.len() >= self.config.max_sessions {
            self.warn_once(|name| {
                tracing::warn!(service = name, %client, "too many udp sessions: datagrams of new clients are dropped");
            });
            return;
        }
        let lease = match self.upstream.pick(&[]) {
            Ok(lease) => lease,
            Err(why) => {
                self.warn_once(|name| {
                    tracing::warn!(service = name, %client, ?why, "no backend for udp session");
                });
                return;
            }
        };
        self.warned = false;
        let (queue, queued) = mpsc::channel(QUEUE);
        // A new queue has room.
        let _ = queue.try_send(datagram.to_vec());
        self.sessions.insert(client, queue);
        let session = Session {
            client,
            lease,
            listener: Arc::clone(&self.socket),
            upstream: Arc::clone(&self.upstream),
            idle_timeout: self.config.idle_timeout,
        };
        self.tasks.spawn(session.run(queued));
    }

    fn warn_once(&mut self, warn: impl FnOnce(&str)) {
        if !self.warned {
            self.warned = true;
            warn(self.upstream.name());
        }
    }
}

/// One client's session with one backend.
struct Session {
    client: SocketAddr,
    /// Counts the session on its backend until it ends.
    lease: Lease,
    /// The published socket, which answers go out of.
    listener: Arc<UdpSocket>,
    upstream: Arc<Upstream>,
    idle_timeout: Duration,
}

impl Session {
    /// Relays until the session ends; returns the client's address.
    async fn run(self, queued: mpsc::Receiver<Vec<u8>>) -> SocketAddr {
        let backend = Arc::clone(self.lease.backend());
        // A socket the proxy cannot open (out of file descriptors) is no fault of the
        // backend's.
        let server = match connect(backend.addr).await {
            Ok(server) => server,
            Err(e) => {
                tracing::warn!(service = self.upstream.name(), client = %self.client, error = %e, "cannot open a udp session");
                return self.client;
            }
        };
        if let Err(e) = self.relay(&server, &backend, queued).await {
            tracing::debug!(service = self.upstream.name(), client = %self.client, addr = %backend.addr, error = %e, "udp session ended");
            backend.failure(self.upstream.ejection());
        }
        self.client
    }

    async fn relay(
        &self,
        server: &UdpSocket,
        backend: &Backend,
        mut queued: mpsc::Receiver<Vec<u8>>,
    ) -> io::Result<()> {
        let idle = tokio::time::sleep(self.idle_timeout);
        tokio::pin!(idle);
        let mut answered = false;
        loop {
            tokio::select! {
                () = &mut idle => return Ok(()),
                datagram = queued.recv() => {
                    // `None`: the listener is stopping.
                    let Some(datagram) = datagram else { return Ok(()) };
                    server.send(&datagram).await?;
                }
                ready = server.ready(Interest::READABLE | Interest::ERROR) => {
                    if ready?.is_error() {
                        // An ICMP error: the replica is gone or unreachable.
                        let error = server.take_error()?;
                        return Err(error.unwrap_or_else(|| io::Error::other("socket error")));
                    }
                    if !self.answer(server).await? {
                        continue;
                    }
                    if !answered {
                        answered = true;
                        backend.success();
                    }
                }
            }
            idle.as_mut().reset(Instant::now() + self.idle_timeout);
        }
    }

    /// Relays one datagram from the backend to the client, if one has arrived; false if
    /// none had.
    async fn answer(&self, server: &UdpSocket) -> io::Result<bool> {
        thread_local! {
            // One buffer per proxy thread rather than 64 KiB per session: it is never
            // borrowed across an await.
            static BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; MAX_DATAGRAM]);
        }
        let answer = BUFFER.with_borrow_mut(|buffer| {
            let len = match server.try_recv(buffer) {
                Ok(len) => len,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Answer::None),
                Err(e) => return Err(e),
            };
            Ok(
                match self.listener.try_send_to(&buffer[..len], self.client) {
                    Ok(_) => Answer::Sent,
                    // Copied out, so that the buffer is free while the socket gets room.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        Answer::Waiting(buffer[..len].to_vec())
                    }
                    Err(e) => {
                        tracing::debug!(client = %self.client, error = %e, "udp answer dropped");
                        Answer::Sent
                    }
                },
            )
        })?;
        match answer {
            Answer::None => Ok(false),
            Answer::Sent => Ok(true),
            Answer::Waiting(datagram) => {
                if let Err(e) = self.listener.send_to(&datagram, self.client).await {
                    tracing::debug!(client = %self.client, error = %e, "udp answer dropped");
                }
                Ok(true)
            }
        }
    }
}

/// What became of an answer from the backend.
enum Answer {
    /// There was none after all.
    None,
    /// Sent to the client (or dropped on an error, as the network may drop it).
    Sent,
    /// The published socket had no room: to be sent once it has.
    Waiting(Vec<u8>),
}

/// A socket of its own for a session, connected to `backend`: the kernel then hands it
/// only that backend's datagrams, and reports an ICMP error (the replica is gone) on it.
async fn connect(backend: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if backend.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).await?;
    socket.connect(backend).await?;
    Ok(socket)
}
