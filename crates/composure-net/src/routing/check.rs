//! Checks between routes, and between routes and published ports: what one listener can
//! serve, and which addresses are already taken.

use std::net::IpAddr;

use composure_compose::model::Project;
use composure_compose::{Diagnostic, YamlPath};

use super::{DeclaredRoute, error};

/// A host port a service publishes (`ports:`), TCP only: the proxy or the engine listens
/// on it.
struct Published<'a> {
    service: &'a str,
    at: YamlPath,
    /// `None`: every address.
    ip: Option<IpAddr>,
    first: u16,
    last: u16,
}

/// Keeps the routes that clash with nothing declared before them and reports the others:
/// of two routes that clash, the one declared first (in service order) is kept.
pub(super) fn clashes(
    project: &Project,
    declared: Vec<DeclaredRoute>,
    diags: &mut Vec<Diagnostic>,
) -> Vec<DeclaredRoute> {
    let published = published_ports(project);
    let mut kept: Vec<DeclaredRoute> = Vec::new();
    for route in declared {
        match clash(&route, &published, &kept) {
            Some(diag) => diags.push(diag),
            None => kept.push(route),
        }
    }
    kept
}

/// The first reason `route` cannot be served next to `published` and `kept`.
fn clash(
    route: &DeclaredRoute,
    published: &[Published],
    kept: &[DeclaredRoute],
) -> Option<Diagnostic> {
    let service = &route.service;
    let listen = describe_listen(route);
    let fail = |key: Option<&str>, message: String, hint: &str| {
        let at = key.map_or_else(|| route.at.clone(), |k| route.at.key(k));
        Some(error(at, format!("service `{service}`: {message}")).with_hint(hint))
    };
    let port = route.listen.port();
    if let Some(p) = published.iter().find(|p| {
        (p.first..=p.last).contains(&port) && p.ip.is_none_or(|ip| overlaps(ip, route.listen.ip()))
    }) {
        return fail(
            Some("listen"),
            format!(
                "{listen} is also published by service `{}` ({})",
                p.service, p.at
            ),
            "a host port is either published (`ports:`) or routed (`x-composure.routes`): listen on another port, or turn the published port into a route",
        );
    }
    if let Some(other) = kept.iter().find(|k| {
        k.listen != route.listen
            && k.listen.port() == port
            && overlaps(k.listen.ip(), route.listen.ip())
    }) {
        return fail(
            Some("listen"),
            format!(
                "{listen} overlaps {} of service `{}`'s route ({})",
                other.listen, other.service, other.at
            ),
            "routes that share a port must use the same listen address",
        );
    }
    let same_listener: Vec<&DeclaredRoute> =
        kept.iter().filter(|k| k.listen == route.listen).collect();
    if let Some(first) = same_listener.first()
        && first.tls.is_some() != route.tls.is_some()
    {
        let (is, is_not) = if first.tls.is_some() {
            ("terminates TLS", "this route has no `tls`")
        } else {
            ("serves plain HTTP", "this route has `tls`")
        };
        return fail(
            Some("tls"),
            format!(
                "the listener on {} {is} (service `{}`, {}) but {is_not}",
                route.listen, first.service, first.at
            ),
            "a listener is either HTTPS or plain HTTP: give every route on it `tls`, or none, or use another listen port",
        );
    }
    if let Some(other) = same_listener
        .iter()
        .find(|k| k.host == route.host && k.path_key() == route.path_key())
    {
        return fail(
            None,
            format!(
                "`{}` on {} is already routed to service `{}` ({})",
                route.describe(),
                route.listen,
                other.service,
                other.at
            ),
            "give one of the two routes another host or path",
        );
    }
    if let Some(other) = same_listener
        .iter()
        .find(|k| k.host == route.host && k.tls.is_some() && k.tls != route.tls)
    {
        let host = route
            .host
            .as_deref()
            .map_or("routes without `host`".to_string(), |h| {
                format!("host `{h}`")
            });
        return fail(
            Some("tls"),
            format!(
                "{host} on {} already has another certificate (service `{}`, {})",
                route.listen, other.service, other.at
            ),
            "the certificate is picked by host name: every route of one host on one listener names the same `cert` and `key`",
        );
    }
    None
}

/// `listen address 0.0.0.0:80`, saying when it is the default.
fn describe_listen(route: &DeclaredRoute) -> String {
    if route.listen_given {
        format!("listen address {}", route.listen)
    } else {
        let why = if route.tls.is_some() {
            "with"
        } else {
            "without"
        };
        format!("listen address {} (the default {why} `tls`)", route.listen)
    }
}

/// Whether two listening addresses take the same connections: equal, or one of them is
/// every address.
fn overlaps(a: IpAddr, b: IpAddr) -> bool {
    a.is_unspecified() || b.is_unspecified() || a == b
}

fn published_ports(project: &Project) -> Vec<Published<'_>> {
    let mut published = Vec::new();
    for (name, service) in &project.services {
        for (i, port) in service.ports.iter().enumerate() {
            if !port.protocol.eq_ignore_ascii_case("tcp") {
                continue;
            }
            let Some(text) = port.published.as_deref().filter(|p| !p.is_empty()) else {
                continue;
            };
            let (first, last) = text.split_once('-').unwrap_or((text, text));
            let (Ok(first), Ok(last)) = (first.parse::<u16>(), last.parse::<u16>()) else {
                continue;
            };
            let ip = port
                .host_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .filter(|ip| !ip.is_unspecified());
            published.push(Published {
                service: name,
                at: YamlPath::root()
                    .key("services")
                    .key(name.as_str())
                    .key("ports")
                    .index(i),
                ip,
                first,
                last,
            });
        }
    }
    published
}
