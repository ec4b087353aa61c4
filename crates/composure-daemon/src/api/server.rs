//! The API's HTTP server on the Unix socket, with the limits a daemon needs against clients
//! that are slow, many or hostile (a socket is reachable by every member of its group):
//!
//! - a request's headers must arrive within [`HEADER_TIMEOUT`], and an idle keep-alive
//!   connection is closed after as long (hyper's header read timeout covers both);
//! - a request's body must arrive whole within [`BODY_TIMEOUT`] and be at most
//!   [`MAX_BODY`] bytes (408 and 413 otherwise);
//! - an answer the client does not take (its socket's buffer stays full) for
//!   [`WRITE_TIMEOUT`] ends the connection, so a client that stops reading an event stream
//!   gives its place up;
//! - at most [`MAX_CONNECTIONS`] connections are served at once; more wait in the socket's
//!   backlog until one ends (as HAProxy's `maxconn` does), so that file descriptors and
//!   memory stay bounded and the controllers keep what they need. With the timeouts above,
//!   a connection that sends nothing gives its place up within 10 s.
//!
//! `axum::serve` sets none of these, which is why the accept loop is written here.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;

use super::ApiError;

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A project's canonical JSON is far below this even for hundreds of services.
const MAX_BODY: usize = 16 * 1024 * 1024;
const MAX_CONNECTIONS: usize = 256;
/// How long open connections get to finish when the daemon stops (streams end at once).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `stop`, then lets open connections finish (briefly).
pub(crate) async fn serve(listener: UnixListener, app: Router, stop: CancellationToken) {
    // One size limit, this module's: axum's own (2 MB, in its body extractors) is off.
    let app = app
        .layer(axum::extract::DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn(whole_body));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    loop {
        // A place first, then a connection: past the cap, clients wait in the backlog.
        let permit = tokio::select! {
            () = stop.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let stream = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of file descriptors, say: wait a moment rather than spin.
                    tracing::warn!(error = %err, "cannot accept an API connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(
                TokioIo::new(with_write_timeout(stream)),
                TowerToHyperService::new(app.clone()),
            );
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "API connection ended");
            }
            drop(permit);
        });
    }
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::debug!("API connections still open at shutdown; closing them");
    }
}

/// `stream`, failing any write that cannot proceed for [`WRITE_TIMEOUT`] (hyper then ends
/// the connection). Idle connections are not affected: only a write that waits counts.
fn with_write_timeout<S: AsyncRead + AsyncWrite>(stream: S) -> Pin<Box<TimeoutStream<S>>> {
    let mut stream = TimeoutStream::new(stream);
    stream.set_write_timeout(Some(WRITE_TIMEOUT));
    Box::pin(stream)
}

/// Reads the request body whole, within [`BODY_TIMEOUT`] and [`MAX_BODY`], before the
/// handler runs: a client that trickles a body ties up nothing but its own connection.
async fn whole_body(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let read = tokio::time::timeout(BODY_TIMEOUT, Limited::new(body, MAX_BODY).collect()).await;
    let bytes = match read {
        Err(_) => {
            return ApiError::TooSlow(format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ))
            .into_response();
        }
        Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
            return ApiError::TooLarge(format!(
                "the request body is over {} MiB",
                MAX_BODY / (1024 * 1024)
            ))
            .into_response();
        }
        Ok(Err(err)) => {
            return ApiError::BadRequest(format!("cannot read the request body: {err}"))
                .into_response();
        }
        Ok(Ok(collected)) => collected.to_bytes(),
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_client_that_stops_reading_is_cut_off() {
        // A pipe with room for 64 bytes and a reader that never reads.
        let (server, _client) = tokio::io::duplex(64);
        let mut server = with_write_timeout(server);
        let written = server.write_all(&[0u8; 4096]).await;
        assert_eq!(
            written.unwrap_err().kind(),
            std::io::ErrorKind::TimedOut,
            "the write gives up after {WRITE_TIMEOUT:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_reads_slowly_is_not_cut_off() {
        let (server, mut client) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let mut buf = [0u8; 64];
            loop {
                tokio::time::sleep(WRITE_TIMEOUT / 2).await;
                match tokio::io::AsyncReadExt::read(&mut client, &mut buf).await {
                    Ok(0) | Err(_) => return sink.len(),
                    Ok(n) => sink.extend_from_slice(&buf[..n]),
                }
            }
        });
        let mut server = with_write_timeout(server);
        server.write_all(&[0u8; 256]).await.unwrap();
        drop(server);
        assert_eq!(reader.await.unwrap(), 256);
    }
}
