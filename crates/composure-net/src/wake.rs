//! [`OnWake`]: a future polled only when it asked to be.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Wraps a future that a task awaits next to busier ones (a client connection's stop
/// signal, next to the connection): the task wakes up for any of them, and polling them
/// all each time costs. This one is polled again only once its own waker has fired.
pub(crate) struct OnWake<F> {
    inner: Pin<Box<F>>,
    signal: Arc<Signal>,
    /// Wakes `signal`.
    waker: Waker,
}

struct Signal {
    fired: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future> OnWake<F> {
    pub(crate) fn new(inner: F) -> Self {
        let signal = Arc::new(Signal {
            // The first poll always reaches the future.
            fired: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        OnWake {
            inner: Box::pin(inner),
            waker: Waker::from(Arc::clone(&signal)),
            signal,
        }
    }
}

impl<F: Future> Future for OnWake<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        // Registered before looking at the flag, so a wake-up in between is not lost.
        this.signal.task.register(cx.waker());
        if !this.signal.fired.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        this.inner
            .as_mut()
            .poll(&mut Context::from_waker(&this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn completes_when_its_future_does() {
        let (tx, rx) = tokio::sync::oneshot::channel::<u8>();
        let waiting = tokio::spawn(OnWake::new(rx));
        tokio::time::sleep(Duration::from_millis(10)).await;
        tx.send(7).unwrap();
        assert_eq!(waiting.await.unwrap().unwrap(), 7);
    }

    #[tokio::test]
    async fn other_wake_ups_do_not_poll_it() {
        let polls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = {
            let polls = Arc::clone(&polls);
            std::future::poll_fn(move |_| {
                polls.fetch_add(1, Ordering::SeqCst);
                Poll::<()>::Pending
            })
        };
        let mut quiet = std::pin::pin!(OnWake::new(counted));
        let mut cx = Context::from_waker(Waker::noop());
        for _ in 0..5 {
            assert!(quiet.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
    }
}
