//! The API's HTTP server on the Unix socket, with the limits a daemon needs against clients
//! that are slow, many or hostile (a socket is reachable by every member of its group):
//!
//! - a request's headers must arrive within [`HEADER_TIMEOUT`], and an idle keep-alive
//!   connection is closed after as long (hyper's header read timeout covers both);
//! - a request's body must arrive whole within [`BODY_TIMEOUT`] and be at most
//!   [`MAX_BODY`] bytes (408 and 413 otherwise);
//! - at most [`MAX_CONNECTIONS`] connections are served at once; more wait in the socket's
//!   backlog until one ends (as HAProxy's `maxconn` does), so that file descriptors and
//!   memory stay bounded and the controllers keep what they need. With the timeouts above,
//!   a connection that sends nothing gives its place up within 10 s.
//!
//! `axum::serve` sets none of these, which is why the accept loop is written here.

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
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::ApiError;

const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
const BODY_TIMEOUT: Duration = Duration::from_secs(30);
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
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
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
