//! The body of a backend's answer, on its way to the client. It holds the request's
//! lease, so the request counts as in flight until the last byte is passed on, and the
//! backend connection, which goes back to the pool once the body has been read in full.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::backend::Lease;
use crate::http::pool::Sender;

#[derive(Debug)]
pub(crate) struct UpstreamBody {
    inner: Incoming,
    /// Taken (and the connection pooled) once the body has ended.
    held: Option<(Lease, Option<Sender>)>,
}

impl UpstreamBody {
    /// `sender` is `None` when the connection must not be reused.
    pub(crate) fn new(inner: Incoming, lease: Lease, sender: Option<Sender>) -> Self {
        UpstreamBody {
            inner,
            held: Some((lease, sender)),
        }
    }

    fn release(&mut self, complete: bool) {
        if let Some((lease, sender)) = self.held.take()
            && complete
            && let Some(sender) = sender
        {
            lease.backend().pool.put(sender);
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(true),
            Poll::Ready(Some(Err(_))) => self.release(false),
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        // hyper may drop a body without polling its end once it knows the length has
        // been reached; the connection is reusable then too.
        let complete = self.inner.is_end_stream();
        self.release(complete);
    }
}
