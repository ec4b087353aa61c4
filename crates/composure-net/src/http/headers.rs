//! Header rewriting: hop-by-hop headers stay on their hop, `X-Forwarded-*` tell the
//! backend who asked and how.

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The hop-by-hop headers of RFC 9110 §7.6.1 that are not named in `Connection`
/// (`Upgrade` is handled apart: it passes through on an upgrade).
fn fixed_hop_headers() -> [&'static HeaderName; 5] {
    [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
    ]
}

/// Whether a request asks to switch protocols (WebSocket and the like).
pub(crate) fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::UPGRADE
        || fixed_hop_headers().into_iter().any(|hop| name == hop)
}

/// Removes the hop-by-hop headers; on an upgrade keeps `Upgrade` and says so in
/// `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    // Most messages carry none: one pass over their few names costs less than a lookup
    // (a hash) per hop-by-hop header, and this runs twice per request.
    if !upgrade && !headers.keys().any(is_hop_by_hop) {
        return;
    }
    if let Some(connection) = headers.remove(header::CONNECTION) {
        // Headers named in `Connection` are hop-by-hop too.
        let named: Vec<HeaderName> = connection
            .to_str()
            .unwrap_or_default()
            .split(',')
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
        // Further `Connection` lines, if any.
        while headers.remove(header::CONNECTION).is_some() {}
    }
    for name in fixed_hop_headers() {
        if headers.contains_key(name) {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else if headers.contains_key(header::UPGRADE) {
        headers.remove(header::UPGRADE);
    }
}

/// What the proxy tells the backend about the original request.
#[derive(Debug)]
pub(crate) struct Forwarded<'a> {
    /// The client's address, formatted once per connection.
    pub(crate) client: &'a HeaderValue,
    /// `http` or `https`.
    pub(crate) proto: &'static str,
    /// The host the client asked for, if it named one.
    pub(crate) host: Option<HeaderValue>,
}

/// Sets `X-Forwarded-Proto` and `X-Forwarded-Host`, and appends the client to
/// `X-Forwarded-For` (which keeps the addresses of proxies in front of this one).
pub(crate) fn add_forwarded(headers: &mut HeaderMap, fwd: Forwarded<'_>) {
    // Room for the three headers at once rather than growing the map twice.
    let _ = headers.try_reserve(3);
    let xff = match headers.get(&X_FORWARDED_FOR) {
        Some(prior) => {
            let mut joined = Vec::with_capacity(prior.len() + 2 + fwd.client.len());
            joined.extend_from_slice(prior.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(fwd.client.as_bytes());
            HeaderValue::from_bytes(&joined).unwrap_or_else(|_| fwd.client.clone())
        }
        None => fwd.client.clone(),
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    match fwd.host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(*k, HeaderValue::from_static(v));
        }
        m
    }

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret"),
            ("keep-alive", "timeout=5"),
            ("x-secret", "1"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn end_to_end_headers_are_kept() {
        let mut h = map(&[("host", "example.com"), ("accept", "*/*"), ("x-id", "7")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h,
            map(&[("host", "example.com"), ("accept", "*/*"), ("x-id", "7")])
        );
        let mut h = map(&[("accept", "*/*"), ("transfer-encoding", "chunked")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h, map(&[("accept", "*/*")]));
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection() {
        let mut h = map(&[("connection", "Upgrade"), ("upgrade", "websocket")]);
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn forwarded_for_appends_to_earlier_proxies() {
        let client = HeaderValue::from_static("10.0.0.9");
        let mut h = map(&[("x-forwarded-for", "1.2.3.4"), ("x-forwarded-host", "evil")]);
        add_forwarded(
            &mut h,
            Forwarded {
                client: &client,
                proto: "http",
                host: None,
            },
        );
        assert_eq!(h["x-forwarded-for"], "1.2.3.4, 10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(!h.contains_key("x-forwarded-host"));
    }
}
