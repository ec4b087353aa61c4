//! One request, from the client to a backend and its answer back.

use std::sync::Arc;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode, Uri, Version};
use hyper_util::rt::TokioIo;

use crate::backend::{Backend, Lease};
use crate::http::body::UpstreamBody;
use crate::http::headers::{self, Forwarded};
use crate::http::pool::{ConnectError, Sender};
use crate::router::Router;
use crate::upstream::{NoBackend, Upstream};

/// The body of every answer the proxy gives: a backend's, or one of its own short texts.
pub(crate) type ProxyBody = Either<UpstreamBody, Full<Bytes>>;

/// What the proxy knows about the client connection a request came on.
#[derive(Debug)]
pub(crate) struct Client {
    /// The client's IP address, ready for `X-Forwarded-For`.
    pub(crate) ip: HeaderValue,
    /// `http`, or `https` when the proxy terminated TLS.
    pub(crate) proto: &'static str,
}

/// Connections tried on one backend for one request when pooled ones turn out to have
/// closed before the request could be written.
const SAME_BACKEND_TRIES: usize = 3;

pub(crate) async fn forward(
    mut req: Request<Incoming>,
    router: &ArcSwap<Router>,
    client: &Client,
) -> Response<ProxyBody> {
    let host = req.headers().get(header::HOST).cloned().or_else(|| {
        // HTTP/2 carries the host in the URI (`:authority`) instead.
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    // The router is read once, before any wait: a replaced router takes effect for
    // the next request.
    let routed = router
        .load()
        .route(
            host.as_ref().and_then(|h| h.to_str().ok()),
            req.uri().path(),
        )
        .cloned();
    let Some(upstream) = routed else {
        return text(StatusCode::NOT_FOUND, "no route for this host and path\n");
    };

    let upgrade = req.version() == Version::HTTP_11 && headers::is_upgrade(req.headers());
    let h = req.headers_mut();
    headers::strip_hop_by_hop(h, upgrade);
    if let Some(host) = &host
        && !h.contains_key(header::HOST)
    {
        h.insert(header::HOST, host.clone());
    }
    headers::add_forwarded(
        h,
        Forwarded {
            client: &client.ip,
            proto: client.proto,
            host,
        },
    );
    if req.uri().authority().is_some() {
        // Backends get the origin form (`/path?query`), as from any HTTP/1.1 client.
        let origin = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .parse::<Uri>()
            .unwrap_or_else(|_| Uri::from_static("/"));
        *req.uri_mut() = origin;
    }
    *req.version_mut() = Version::HTTP_11;
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));

    send(req, &upstream, client_upgrade).await
}

/// Sends to a backend, trying others while connecting fails.
async fn send(
    mut req: Request<Incoming>,
    upstream: &Upstream,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let mut tried: Vec<Arc<Backend>> = Vec::new();
    loop {
        let lease = match upstream.pick(&tried) {
            Ok(lease) => lease,
            Err(NoBackend::Empty) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!("service {} has no ready replica\n", upstream.name()),
                );
            }
            Err(NoBackend::Exhausted) => {
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "no replica of service {} could be reached\n",
                        upstream.name()
                    ),
                );
            }
        };
        let backend = lease.backend();
        match exchange(backend, req, upstream).await {
            Ok((resp, sender)) => return answer(resp, sender, lease, upstream, client_upgrade),
            Err(Failed::NotSent(back, e)) => {
                tracing::debug!(service = upstream.name(), error = %e, "backend not reached, trying another");
                backend.failure(upstream.ejection());
                tried.push(Arc::clone(backend));
                req = back;
            }
            Err(Failed::TimedOut(limit)) => {
                tracing::warn!(service = upstream.name(), addr = %backend.addr, ?limit, "backend did not answer in time");
                backend.failure(upstream.ejection());
                return text(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!(
                        "replica of service {} did not answer within {}\n",
                        upstream.name(),
                        humantime(limit)
                    ),
                );
            }
            Err(Failed::Exchange(e)) => {
                tracing::warn!(service = upstream.name(), addr = %backend.addr, error = %e, "backend request failed");
                backend.failure(upstream.ejection());
                return text(
                    StatusCode::BAD_GATEWAY,
                    &format!("replica of service {} failed to answer\n", upstream.name()),
                );
            }
        }
    }
}

// The request travels back by value, once per failed attempt: boxing it would cost an
// allocation on every request instead.
#[allow(clippy::large_enum_variant)]
enum Failed {
    /// Nothing reached the backend; the request can go to another one.
    NotSent(Request<Incoming>, ConnectError),
    /// The request was (at least partly) sent, so it must not be sent again.
    Exchange(hyper::Error),
    /// The request was sent and no answer began within the response timeout; the
    /// connection is dropped (closed), so nothing comes back on it later.
    TimedOut(std::time::Duration),
}

/// `30s`, `1.5s`, `250ms`: a timeout for people.
fn humantime(limit: std::time::Duration) -> String {
    let ms = limit.as_millis();
    if ms < 1_000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1_000) {
        format!("{}s", ms / 1_000)
    } else {
        format!("{:.1}s", limit.as_secs_f64())
    }
}

async fn exchange(
    backend: &Backend,
    mut req: Request<Incoming>,
    upstream: &Upstream,
) -> Result<(Response<Incoming>, Sender), Failed> {
    let config = upstream.config();
    let (timeout, response_timeout) = (config.connect_timeout, config.response_timeout);
    drop(config);
    for _ in 0..SAME_BACKEND_TRIES {
        let mut sender = match backend.pool.get(backend.addr, timeout).await {
            Ok(sender) => sender,
            Err(e) => return Err(Failed::NotSent(req, e)),
        };
        let sent = sender.try_send_request(req);
        let result = match response_timeout {
            Some(limit) => match tokio::time::timeout(limit, sent).await {
                Ok(result) => result,
                Err(_) => return Err(Failed::TimedOut(limit)),
            },
            None => sent.await,
        };
        match result {
            Ok(resp) => return Ok((resp, sender)),
            Err(mut e) => match e.take_message() {
                // A pooled connection closed under us: try a fresh one.
                Some(back) => req = back,
                None => return Err(Failed::Exchange(e.into_error())),
            },
        }
    }
    let e = ConnectError::Io(
        backend.addr,
        std::io::Error::other("connections kept closing before the request was sent"),
    );
    Err(Failed::NotSent(req, e))
}

fn answer(
    mut resp: Response<Incoming>,
    sender: Sender,
    lease: Lease,
    upstream: &Upstream,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let backend = lease.backend();
    if resp.status().is_server_error() {
        backend.failure(upstream.ejection());
    } else {
        backend.success();
    }
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_side) = client_upgrade
    {
        let backend_side = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel(client_side, backend_side, lease));
        // The connection now belongs to the tunnel: `sender` is dropped, not pooled.
        drop(sender);
        return resp.map(|_| Either::Right(Full::new(Bytes::new())));
    }
    headers::strip_hop_by_hop(resp.headers_mut(), false);
    resp.map(|body| Either::Left(UpstreamBody::new(body, lease, Some(sender))))
}

/// Copies bytes both ways between an upgraded client and backend (a WebSocket, say).
/// The lease keeps the connection counted as in flight, for draining.
async fn tunnel(client: OnUpgrade, backend: OnUpgrade, lease: Lease) {
    match tokio::join!(client, backend) {
        (Ok(client), Ok(backend)) => {
            let mut client = TokioIo::new(client);
            let mut backend = TokioIo::new(backend);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut backend).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "upgrade failed"),
    }
    drop(lease);
}

/// A short plain-text answer of the proxy's own.
pub(crate) fn text(status: StatusCode, body: &str) -> Response<ProxyBody> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::copy_from_slice(
        body.as_bytes(),
    ))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
