//! Host and path routing: several services behind one HTTP listener.

use std::sync::Arc;

use crate::config::RouteConfig;
use crate::error::NetError;
use crate::upstream::Upstream;

/// Which hosts a route answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostMatch {
    /// Every host, and requests without one.
    Any,
    /// One host name, compared without case and without the port.
    Exact(String),
    /// `*.example.com`: any name that ends in `.example.com` (one or more labels before
    /// it), not `example.com` itself. Holds the suffix with its leading dot.
    Wildcard(String),
}

impl HostMatch {
    /// Parses `example.com`, `*.example.com`, or `*` / empty for any host.
    pub fn parse(text: &str) -> Result<Self, NetError> {
        let text = text.trim().trim_end_matches('.').to_ascii_lowercase();
        if text.is_empty() || text == "*" {
            return Ok(HostMatch::Any);
        }
        let bad = |why: &str| NetError::Route(format!("host {text:?}: {why}"));
        if let Some(suffix) = text.strip_prefix('*') {
            if !suffix.starts_with('.') || suffix.len() < 2 || suffix.contains('*') {
                return Err(bad(
                    "a wildcard must be a whole first label, as in *.example.com",
                ));
            }
            return Ok(HostMatch::Wildcard(suffix.to_string()));
        }
        if text.contains(['*', '/', ':', ' ']) {
            return Err(bad("expected a host name without port, scheme or path"));
        }
        Ok(HostMatch::Exact(text))
    }

    pub(crate) fn matches(&self, host: Option<&str>) -> bool {
        match (self, host) {
            (HostMatch::Any, _) => true,
            (_, None) => false,
            (HostMatch::Exact(name), Some(h)) => h.eq_ignore_ascii_case(name),
            (HostMatch::Wildcard(suffix), Some(h)) => {
                h.len() > suffix.len()
                    && h.is_char_boundary(h.len() - suffix.len())
                    && h[h.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }

    /// Exact names first, then wildcards with the longest suffix, then any host.
    pub(crate) fn rank(&self) -> (u8, usize) {
        match self {
            HostMatch::Exact(_) => (2, 0),
            HostMatch::Wildcard(s) => (1, s.len()),
            HostMatch::Any => (0, 0),
        }
    }
}

/// One rule: requests for these hosts under this path go to this service.
#[derive(Clone, Debug)]
pub struct Route {
    pub host: HostMatch,
    /// Matched segment by segment: `/api` takes `/api` and `/api/users`, not `/apis`.
    /// Stored without a trailing slash; `/` (stored empty) takes every path.
    path_prefix: String,
    pub upstream: Arc<Upstream>,
}

impl Route {
    /// `host`: see [`HostMatch::parse`]; `path_prefix`: `None` for every path.
    pub fn new(
        host: Option<&str>,
        path_prefix: Option<&str>,
        upstream: Arc<Upstream>,
    ) -> Result<Self, NetError> {
        let host = HostMatch::parse(host.unwrap_or_default())?;
        let prefix = path_prefix.unwrap_or("/");
        if !prefix.starts_with('/') {
            return Err(NetError::Route(format!(
                "path prefix {prefix:?} must start with /"
            )));
        }
        Ok(Route {
            host,
            path_prefix: prefix.trim_end_matches('/').to_string(),
            upstream,
        })
    }

    /// The prefix as given (`/` for every path).
    pub fn path_prefix(&self) -> &str {
        if self.path_prefix.is_empty() {
            "/"
        } else {
            &self.path_prefix
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        match path.strip_prefix(self.path_prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// The routes of one HTTP listener, most specific first: host (exact, then wildcard by
/// suffix length, then any), then the longest path prefix; equal rules keep their order.
#[derive(Clone, Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
}

impl Router {
    pub fn new(mut routes: Vec<Route>) -> Self {
        routes.sort_by(|a, b| {
            (b.host.rank(), b.path_prefix.len()).cmp(&(a.host.rank(), a.path_prefix.len()))
        });
        Router { routes }
    }

    /// The router of `routes`; `upstreams` gives the [`Upstream`] of each route, and a
    /// route it has none for is an error.
    pub fn from_config(
        routes: &[RouteConfig],
        upstreams: impl Fn(&RouteConfig) -> Option<Arc<Upstream>>,
    ) -> Result<Self, NetError> {
        let routes = routes
            .iter()
            .map(|r| {
                let upstream = upstreams(r).ok_or_else(|| {
                    NetError::Config(format!("no upstream for {}:{}", r.service, r.port))
                })?;
                Route::new(r.host.as_deref(), r.path_prefix.as_deref(), upstream)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Router::new(routes))
    }

    /// Every request to one service.
    pub fn single(upstream: Arc<Upstream>) -> Self {
        Router {
            routes: vec![Route {
                host: HostMatch::Any,
                path_prefix: String::new(),
                upstream,
            }],
        }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The service for a request: `host` as sent (a port is ignored), `path` without query.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&Arc<Upstream>> {
        let host = host.map(strip_port).map(|h| h.trim_end_matches('.'));
        self.routes
            .iter()
            .find(|r| r.host.matches(host) && r.matches_path(path))
            .map(|r| &r.upstream)
    }
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::Endpoints;
    use crate::upstream::UpstreamConfig;

    fn up(name: &str) -> Arc<Upstream> {
        let (_tx, rx) = Endpoints::default().channel();
        Upstream::new(name, rx, UpstreamConfig::default())
    }

    fn name(router: &Router, host: Option<&str>, path: &str) -> Option<String> {
        router.route(host, path).map(|u| u.name().to_string())
    }

    #[test]
    fn host_and_path_rules_pick_the_most_specific() {
        let r = Router::new(vec![
            Route::new(None, None, up("fallback")).unwrap(),
            Route::new(Some("*.example.com"), None, up("tenant")).unwrap(),
            Route::new(Some("api.example.com"), None, up("api")).unwrap(),
            Route::new(Some("api.example.com"), Some("/v2/"), up("api2")).unwrap(),
            Route::new(None, Some("/static"), up("static")).unwrap(),
        ]);
        assert_eq!(
            name(&r, Some("API.example.com:443"), "/v1"),
            Some("api".into())
        );
        assert_eq!(
            name(&r, Some("api.example.com"), "/v2"),
            Some("api2".into())
        );
        assert_eq!(
            name(&r, Some("api.example.com"), "/v2/x"),
            Some("api2".into())
        );
        assert_eq!(
            name(&r, Some("api.example.com"), "/v2x"),
            Some("api".into())
        );
        assert_eq!(
            name(&r, Some("a.b.example.com"), "/"),
            Some("tenant".into())
        );
        assert_eq!(
            name(&r, Some("example.com"), "/static/a.css"),
            Some("static".into())
        );
        assert_eq!(
            name(&r, Some("example.com"), "/staticx"),
            Some("fallback".into())
        );
        assert_eq!(name(&r, None, "/"), Some("fallback".into()));
    }

    #[test]
    fn no_matching_rule_is_none() {
        let r = Router::new(vec![Route::new(Some("a.test"), None, up("a")).unwrap()]);
        assert_eq!(name(&r, Some("b.test"), "/"), None);
        assert_eq!(name(&r, None, "/"), None);
    }

    #[test]
    fn bad_rules_are_rejected() {
        assert!(HostMatch::parse("a.*.com").is_err());
        assert!(HostMatch::parse("*example.com").is_err());
        assert!(HostMatch::parse("example.com:80").is_err());
        assert!(Route::new(None, Some("api"), up("x")).is_err());
    }

    #[test]
    fn ports_are_stripped_from_hosts() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.test"), "a.test");
    }
}
