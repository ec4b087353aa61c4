//! The proxy's own threads: one single-threaded tokio runtime per thread, as nginx runs
//! one event loop per worker process.
//!
//! Why not the daemon's multi-threaded runtime: a proxied request hops between tasks (the
//! client connection, the backend connection, the channel between them), and on a
//! work-stealing runtime each hop can wake another thread. Measured with `wrk` on two
//! cores, that traffic halved the throughput and multiplied the p99 latency several
//! times; with one runtime per thread, every task of a connection stays on the thread
//! that accepted it (see docs/benchmarks.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::NetError;

/// A set of proxy threads. Cheap to clone; the threads stop when the last clone is
/// dropped (after the proxies served on them have been shut down).
#[derive(Clone, Debug)]
pub struct Workers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    handles: Vec<Handle>,
    /// Which thread [`Workers::next_handle`] gives next.
    next: AtomicUsize,
    /// Dropping these ends the threads.
    _stops: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Starts `threads` threads (at least 1), named `composure-proxy-N`.
    pub fn start(threads: usize) -> Result<Workers, NetError> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for n in 0..threads.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(NetError::Io)?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("composure-proxy-{n}"))
                .spawn(move || {
                    // Tasks spawned through the handle run while this blocks.
                    let _ = runtime.block_on(stopped);
                })
                .map_err(NetError::Io)?;
        }
        Ok(Workers {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
                _stops: stops,
            }),
        })
    }

    pub fn threads(&self) -> usize {
        self.inner.handles.len()
    }

    pub(crate) fn handles(&self) -> Vec<Handle> {
        self.inner.handles.clone()
    }

    /// One thread, each in turn: for a listener that runs on a single thread (UDP).
    pub(crate) fn next_handle(&self) -> Handle {
        let n = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.handles.len();
        self.inner.handles[n].clone()
    }
}

/// A small number that tells the threads apart, for per-thread connection pools.
pub(crate) fn thread_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    SLOT.with(|s| *s)
}
