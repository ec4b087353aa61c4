//! Keep-alive HTTP/1.1 connections to one backend.
//!
//! Our own small pool rather than hyper-util's legacy client: the legacy client takes
//! the request before it connects, so after a connect failure the request (and its body)
//! is gone and cannot be retried on another backend. Here connecting comes first, and a
//! request that an idle connection could not take is handed back by hyper
//! (`try_send_request`), so no request head is ever copied for a retry.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::workers::thread_slot;

/// Idle connections kept per backend and thread; more are closed when they come back.
const MAX_IDLE: usize = 256;
/// Idle connections are kept apart per thread (see [`crate::Workers`]): a connection's
/// task runs on the thread that opened it, so reusing it there wakes no other thread.
const SHARDS: usize = 16;
/// An idle connection older than this is closed rather than reused: most servers close
/// idle keep-alive connections after a minute or two, and reusing one that the backend
/// is closing right now is a needless failed attempt.
const IDLE_TIMEOUT: Duration = Duration::from_secs(55);

pub(crate) type Sender = SendRequest<Incoming>;

#[derive(Debug, Default)]
pub(crate) struct Pool {
    shards: [Mutex<Vec<(Sender, Instant)>>; SHARDS],
}

/// Connecting to a backend failed: nothing was sent.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {0}: {1}")]
    Io(SocketAddr, std::io::Error),
    #[error("connect to {0}: timed out")]
    Timeout(SocketAddr),
    #[error("HTTP handshake with {0}: {1}")]
    Handshake(SocketAddr, hyper::Error),
}

impl Pool {
    /// A connection ready for a request: the most recently used idle one that is still
    /// open, or a new one.
    pub(crate) async fn get(
        &self,
        addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Sender, ConnectError> {
        while let Some((mut sender, since)) = self.pop() {
            if sender.is_closed() || since.elapsed() > IDLE_TIMEOUT {
                continue;
            }
            // A connection comes back as soon as its answer has been read; hyper may
            // need a moment more to make it ready for the next request.
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok(sender);
            }
        }
        connect(addr, timeout).await
    }

    /// Gives back a connection whose answer has been read in full.
    pub(crate) fn put(&self, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.shard().lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push((sender, Instant::now()));
        }
    }

    fn pop(&self) -> Option<(Sender, Instant)> {
        self.shard()
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn shard(&self) -> &Mutex<Vec<(Sender, Instant)>> {
        &self.shards[thread_slot() % SHARDS]
    }
}

async fn connect(addr: SocketAddr, timeout: Duration) -> Result<Sender, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(ConnectError::Io(addr, e)),
        Err(_) => return Err(ConnectError::Timeout(addr)),
    };
    // Small requests and answers must not wait for Nagle's algorithm.
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ConnectError::Handshake(addr, e))?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%addr, error = %e, "backend connection ended");
        }
    });
    Ok(sender)
}
