//! The accept loops of a listener, and the spreading of its connections over threads.
//!
//! Every thread accepts, but a new connection is served by the thread with the fewest
//! open connections (the accepting one when it ties): with a shared listening socket
//! the kernel wakes every thread and one of them often takes nearly all of a burst of
//! connections, which left one thread doing all the work of a keep-alive benchmark.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::{Notify, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::error::NetError;

/// What a listener does with each connection.
pub(crate) trait Serve: Send + Sync + 'static {
    /// Serves one connection; once `stop` turns true, should finish what is in flight
    /// and return.
    fn serve(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;

    /// Whether shutting down waits for the connections to end (HTTP: yes, after asking
    /// them to finish; TCP relays: no, they end by themselves and the daemon drains them).
    const WAIT_FOR_CONNECTIONS: bool;
}

struct Shared<S> {
    serve: Arc<S>,
    handles: Vec<Handle>,
    /// Open connections per thread.
    load: Vec<AtomicUsize>,
    open: AtomicUsize,
    closed: Notify,
    stop: watch::Receiver<bool>,
    /// Accepting ends when this is cancelled.
    retired: CancellationToken,
}

/// Accepts on every runtime of `handles` until `shutdown` completes (or, for accepting
/// only, until `retired` is cancelled: the connections open go on), then stops accepting,
/// tells the connections to finish, and (if `S` asks for it) waits for them.
pub(crate) async fn run<S: Serve>(
    listener: TcpListener,
    handles: Vec<Handle>,
    serve: Arc<S>,
    retired: CancellationToken,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError> {
    let listener = listener.into_std().map_err(NetError::Io)?;
    let (stop_tx, stop) = watch::channel(false);
    let shared = Arc::new(Shared {
        serve,
        load: handles.iter().map(|_| AtomicUsize::new(0)).collect(),
        handles,
        open: AtomicUsize::new(0),
        closed: Notify::new(),
        stop,
        retired,
    });
    let mut loops = Vec::new();
    for (me, handle) in shared.handles.iter().enumerate() {
        let listener = listener.try_clone().map_err(NetError::Io)?;
        let shared = Arc::clone(&shared);
        let (done_tx, done) = oneshot::channel::<()>();
        handle.spawn(async move {
            // Registered with this thread's own runtime, so converted here.
            match TcpListener::from_std(listener) {
                Ok(listener) => accept_loop(listener, me, shared).await,
                Err(e) => tracing::error!(error = %e, "proxy thread cannot listen"),
            }
            let _ = done_tx.send(());
        });
        loops.push(done);
    }
    drop(listener);
    shutdown.await;
    let _ = stop_tx.send(true);
    for done in loops {
        let _ = done.await;
    }
    if S::WAIT_FOR_CONNECTIONS {
        loop {
            let closed = shared.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if shared.open.load(Ordering::Acquire) == 0 {
                break;
            }
            closed.await;
        }
    }
    Ok(())
}

async fn accept_loop<S: Serve>(listener: TcpListener, me: usize, shared: Arc<Shared<S>>) {
    let mut stop = shared.stop.clone();
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = shared.retired.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => dispatch(stream, peer, me, &shared),
                Err(e) => accept_failed(e).await,
            },
        }
    }
}

/// Hands a new connection to the least loaded thread.
fn dispatch<S: Serve>(stream: TcpStream, peer: SocketAddr, me: usize, shared: &Arc<Shared<S>>) {
    let target = least_loaded(&shared.load, me);
    shared.load[target].fetch_add(1, Ordering::Relaxed);
    shared.open.fetch_add(1, Ordering::AcqRel);
    let conn = Conn {
        shared: Arc::clone(shared),
        thread: target,
    };
    if target == me {
        tokio::spawn(conn.serve(stream, peer));
        return;
    }
    // The stream is registered with this thread's runtime: move it over as a plain
    // socket and register it there.
    match stream.into_std() {
        Ok(std) => {
            shared.handles[target].spawn(async move {
                match TcpStream::from_std(std) {
                    Ok(stream) => conn.serve(stream, peer).await,
                    Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot hand a connection over"),
    }
}

fn least_loaded(load: &[AtomicUsize], me: usize) -> usize {
    let mut best = me;
    let mut best_load = load[me].load(Ordering::Relaxed);
    for (i, l) in load.iter().enumerate() {
        let l = l.load(Ordering::Relaxed);
        if l < best_load {
            best = i;
            best_load = l;
        }
    }
    best
}

/// One open connection, counted until dropped (served, or dropped unserved).
struct Conn<S: Serve> {
    shared: Arc<Shared<S>>,
    thread: usize,
}

impl<S: Serve> Conn<S> {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let stop = self.shared.stop.clone();
        Arc::clone(&self.shared.serve)
            .serve(stream, peer, stop)
            .await;
    }
}

impl<S: Serve> Drop for Conn<S> {
    fn drop(&mut self) {
        self.shared.load[self.thread].fetch_sub(1, Ordering::Relaxed);
        if self.shared.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.closed.notify_waiters();
        }
    }
}

/// Completes once `stop` turns true.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard that `wait_for` returns must not be held across an await.
    let _ = stop.wait_for(|stop| *stop).await.map(|_| ());
}

/// An accept error (most often: out of file descriptors) must not become a busy loop.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(10)).await;
}
