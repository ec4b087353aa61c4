//! One service's `x-composure.routes`, entry by entry: keys, types and values.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use composure_compose::model::{Duration, Service, parse_expose};
use composure_compose::{Diagnostic, YamlPath};
use serde_json::{Map, Value};

use super::{DeclaredRoute, error};
use crate::tls::TlsFiles;
use crate::upstream::ResponseTimeout;

/// The keys `x-composure` takes on a service.
/// (`protocol` is the protocol of the service's VIP: see the daemon's `vip` module;
/// `response_timeout` is the proxy's limit on a replica's first byte: see
/// [`UpstreamConfig::response_timeout`](crate::UpstreamConfig::response_timeout);
/// `gpu` is how replicas share GPUs, checked by `composure_core::placement::gpu`.)
const SERVICE_KEYS: &[&str] = &["gpu", "protocol", "response_timeout", "routes"];
const ROUTE_KEYS: &[&str] = &["listen", "host", "path", "port", "tls"];
const TLS_KEYS: &[&str] = &["cert", "key"];

const HOST_HINT: &str = "write a host name (api.example.com) or a wildcard for its subdomains \
                         (*.example.com), without scheme, port or path";

/// The routes `service` declares; what is wrong goes to `diags` (a route with a problem is
/// left out).
pub(super) fn service_routes(
    name: &str,
    service: &Service,
    diags: &mut Vec<Diagnostic>,
) -> Vec<DeclaredRoute> {
    let Some(x) = service
        .extensions
        .get("x-composure")
        .filter(|x| !x.is_null())
    else {
        return Vec::new();
    };
    let at = YamlPath::root()
        .key("services")
        .key(name)
        .key("x-composure");
    let Some(x) = mapping(x, &at, name, diags) else {
        return Vec::new();
    };
    unknown_keys(x, SERVICE_KEYS, &at, name, diags);
    if let Some(protocol) = x.get("protocol")
        && protocol.as_str().and_then(crate::Protocol::parse).is_none()
    {
        diags.push(
            error(
                at.key("protocol"),
                format!("service `{name}`: `protocol` must be \"http\" or \"tcp\", not {protocol}"),
            )
            .with_hint("http balances each request (keep-alive clients never notice a rollout); tcp relays bytes"),
        );
    }
    if let Some(value) = x.get("response_timeout") {
        read_response_timeout(value, &at.key("response_timeout"), name, diags);
    }
    let at = at.key("routes");
    let entries = match x.get("routes") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(other) => {
            diags.push(
                error(
                    at,
                    format!(
                        "service `{name}`: `routes` must be a list, not {}",
                        kind(other)
                    ),
                )
                .with_hint("write one `- listen: ...` entry per route"),
            );
            return Vec::new();
        }
    };
    let ports = container_ports(service);
    let mut routes = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let mut entry_diags = Vec::new();
        let route = Entry {
            service: name,
            at: at.index(i),
            ports: &ports,
            diags: &mut entry_diags,
        }
        .read(entry);
        match route {
            Some(route) if entry_diags.is_empty() => routes.push(route),
            _ => diags.append(&mut entry_diags),
        }
    }
    routes
}

/// Reads one route entry, pushing each problem it finds.
struct Entry<'a> {
    service: &'a str,
    at: YamlPath,
    /// The TCP ports the service declares in its container (`ports` targets, `expose`).
    ports: &'a [u16],
    diags: &'a mut Vec<Diagnostic>,
}

impl Entry<'_> {
    fn read(&mut self, entry: &Value) -> Option<DeclaredRoute> {
        let fields = mapping(entry, &self.at, self.service, self.diags)?;
        unknown_keys(fields, ROUTE_KEYS, &self.at, self.service, self.diags);
        let tls = fields.get("tls").and_then(|v| self.tls(v));
        let listen = match fields.get("listen") {
            Some(value) => self.listen(value),
            None => Some(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                if fields.contains_key("tls") { 443 } else { 80 },
            )),
        };
        let host = fields.get("host").and_then(|v| self.host(v));
        let path = fields.get("path").and_then(|v| self.path(v));
        let port = match fields.get("port") {
            Some(value) => self.port(value),
            None => self.default_port(),
        };
        Some(DeclaredRoute {
            service: self.service.to_string(),
            at: self.at.clone(),
            listen: listen?,
            listen_given: fields.contains_key("listen"),
            host: match fields.get("host") {
                Some(_) => Some(host?),
                None => None,
            },
            path: match fields.get("path") {
                Some(_) => Some(path?),
                None => None,
            },
            port: port?,
            tls: match fields.get("tls") {
                Some(_) => Some(tls?),
                None => None,
            },
        })
    }

    fn problem(&mut self, key: &str, message: String, hint: &str) {
        self.diags.push(
            error(
                self.at.key(key),
                format!("service `{}`: {message}", self.service),
            )
            .with_hint(hint),
        );
    }

    fn listen(&mut self, value: &Value) -> Option<SocketAddr> {
        let addr = match value {
            Value::Number(n) => n
                .as_u64()
                .and_then(|p| u16::try_from(p).ok())
                .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
            Value::String(s) => {
                let s = s.trim();
                match s.parse::<u16>() {
                    Ok(p) => Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), p)),
                    Err(_) => s.parse::<SocketAddr>().ok(),
                }
            }
            _ => None,
        };
        match addr {
            Some(addr) if addr.port() != 0 => Some(addr),
            _ => {
                self.problem(
                    "listen",
                    format!("`listen` must be a host port or an IP address with a port, not {value}"),
                    "write a port (443) or an address and a port (127.0.0.1:443, \"[::1]:443\"), the port from 1 to 65535",
                );
                None
            }
        }
    }

    fn host(&mut self, value: &Value) -> Option<String> {
        let Some(text) = value.as_str() else {
            self.problem(
                "host",
                format!("`host` must be a string, not {}", kind(value)),
                HOST_HINT,
            );
            return None;
        };
        match check_host(text) {
            Ok(host) => Some(host),
            Err(why) => {
                let hint = if text.trim().is_empty() || text.trim() == "*" {
                    "leave `host` out to route every host"
                } else {
                    HOST_HINT
                };
                self.problem("host", format!("host `{text}` {why}"), hint);
                None
            }
        }
    }

    fn path(&mut self, value: &Value) -> Option<String> {
        let Some(text) = value.as_str() else {
            self.problem(
                "path",
                format!("`path` must be a string, not {}", kind(value)),
                "write a path prefix such as /api",
            );
            return None;
        };
        if !text.starts_with('/') {
            self.problem(
                "path",
                format!("path `{text}` must start with `/`"),
                &format!("write `/{}`", text.trim_start()),
            );
            return None;
        }
        if text.contains(['?', '#']) || text.chars().any(char::is_whitespace) {
            self.problem(
                "path",
                format!("path `{text}` is not a path prefix"),
                "a path prefix has no query (`?`), fragment (`#`) or spaces",
            );
            return None;
        }
        Some(text.to_string())
    }

    fn port(&mut self, value: &Value) -> Option<u16> {
        let port = match value {
            Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Value::String(s) => s.trim().parse::<u16>().ok(),
            _ => None,
        };
        match port {
            Some(port) if port != 0 => Some(port),
            _ => {
                self.problem(
                    "port",
                    format!("`port` must be a port number from 1 to 65535, not {value}"),
                    "write the port the service listens on inside its container",
                );
                None
            }
        }
    }

    /// The container port when the route names none: the one TCP port the service
    /// declares (in `ports` or `expose`).
    fn default_port(&mut self) -> Option<u16> {
        if let [port] = self.ports {
            return Some(*port);
        }
        let message = if self.ports.is_empty() {
            "the route needs `port`: the service declares no port".to_string()
        } else {
            let list: Vec<String> = self.ports.iter().map(u16::to_string).collect();
            format!(
                "the route needs `port`: the service declares several ({})",
                list.join(", ")
            )
        };
        self.diags.push(
            error(
                self.at.clone(),
                format!("service `{}`: {message}", self.service),
            )
            .with_hint("add `port:` with the port the service listens on inside its container"),
        );
        None
    }

    fn tls(&mut self, value: &Value) -> Option<TlsFiles> {
        let at = self.at.key("tls");
        let hint = "write `tls: {cert: ./certs/site.pem, key: ./certs/site.key}`";
        let Some(fields) = value.as_object() else {
            self.problem(
                "tls",
                format!(
                    "`tls` must be a mapping with `cert` and `key`, not {}",
                    kind(value)
                ),
                hint,
            );
            return None;
        };
        unknown_keys(fields, TLS_KEYS, &at, self.service, self.diags);
        let mut file = |key: &str| match fields.get(key) {
            Some(Value::String(path)) if !path.trim().is_empty() => Some(PathBuf::from(path)),
            other => {
                let what = other.map_or("missing".to_string(), |v| format!("{v}"));
                self.diags.push(
                    error(
                        at.key(key),
                        format!(
                            "service `{}`: `tls.{key}` must be the path of a PEM file, not {what}",
                            self.service
                        ),
                    )
                    .with_hint(hint),
                );
                None
            }
        };
        let cert = file("cert");
        let key = file("key");
        Some(TlsFiles {
            cert: cert?,
            key: key?,
        })
    }
}

/// `x-composure.response_timeout` of `service`, when it is set and valid (an invalid one
/// is reported by [`Routing::parse`](super::Routing::parse), which refuses the project).
pub(super) fn response_timeout(name: &str, service: &Service) -> Option<ResponseTimeout> {
    let value = service
        .extensions
        .get("x-composure")?
        .get("response_timeout")?;
    read_response_timeout(value, &YamlPath::root(), name, &mut Vec::new())
}

/// A compose duration (`30s`, `1m30s`, `500ms`), or `0` for no limit.
fn read_response_timeout(
    value: &Value,
    at: &YamlPath,
    service: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<ResponseTimeout> {
    let parsed = match value {
        Value::String(text) => Duration::parse(text).map_err(|e| e.to_string()),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(Duration(std::time::Duration::ZERO)),
        other => Err(format!("expected a duration, not {}", kind(other))),
    };
    match parsed {
        Ok(duration) => Some(ResponseTimeout(duration.0)),
        Err(reason) => {
            diags.push(
                error(
                    at.clone(),
                    format!("service `{service}`: `response_timeout` {value}: {reason}"),
                )
                .with_hint(
                    "write how long a replica may take to start answering, such as \"30s\" \
                     or \"500ms\"; \"0\" for no limit",
                ),
            );
            None
        }
    }
}

fn mapping<'v>(
    value: &'v Value,
    at: &YamlPath,
    service: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<&'v Map<String, Value>> {
    if let Some(map) = value.as_object() {
        return Some(map);
    }
    diags.push(error(
        at.clone(),
        format!(
            "service `{service}`: expected a mapping, not {}",
            kind(value)
        ),
    ));
    None
}

fn unknown_keys(
    fields: &Map<String, Value>,
    known: &[&str],
    at: &YamlPath,
    service: &str,
    diags: &mut Vec<Diagnostic>,
) {
    for key in fields.keys().filter(|k| !known.contains(&k.as_str())) {
        let near = known
            .iter()
            .find(|k| strsim::levenshtein(k, key) <= 2)
            .map(|k| format!("did you mean `{k}`? "))
            .unwrap_or_default();
        diags.push(
            error(
                at.key(key.as_str()),
                format!("service `{service}`: unknown key `{key}`"),
            )
            .with_hint(format!("{near}known keys here: {}", known.join(", "))),
        );
    }
}

/// `host` lower-cased, or why it is not a host name nor a `*.` wildcard.
fn check_host(text: &str) -> Result<String, String> {
    let host = text.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host == "*" {
        return Err("matches nothing in particular".to_string());
    }
    let name = host.strip_prefix("*.").unwrap_or(&host);
    if name.len() > 253 {
        return Err("is longer than 253 characters".to_string());
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label".to_string());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("is not a host name: `{c}` is not allowed"));
        }
        if label.len() > 63 {
            return Err("has a label longer than 63 characters".to_string());
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err("has a label that starts or ends with `-`".to_string());
        }
    }
    Ok(host)
}

/// The TCP ports the service listens on in its container, as far as it says: the targets
/// of `ports` and the ports of `expose`.
fn container_ports(service: &Service) -> Vec<u16> {
    let mut ports: Vec<u16> = service
        .ports
        .iter()
        .filter(|p| p.protocol.eq_ignore_ascii_case("tcp"))
        .map(|p| p.target)
        .collect();
    for exposed in service.expose.iter().filter_map(|e| parse_expose(e)) {
        if exposed.is_tcp() {
            // A range counts by its ends: two different ends are already more than one port.
            ports.extend([exposed.first, exposed.last]);
        }
    }
    ports.sort_unstable();
    ports.dedup();
    ports
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
