//! What the daemon asks for: listeners with their protocol, routes and certificates, and
//! the rule that picks the protocol of a compose port.

use std::net::SocketAddr;

use composure_compose::model::Port;
use serde::{Deserialize, Serialize};

use crate::error::NetError;
use crate::tls::HostCertificate;

/// How a listener handles its connections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// L4: each connection is relayed byte for byte to one backend.
    #[default]
    Tcp,
    /// L7: HTTP/1.1 (and h2c) requests are balanced one by one over keep-alive
    /// connections, with host and path routing.
    Http,
    /// L4 datagrams: each client address gets a session with one backend (see
    /// [`UdpProxy`](crate::UdpProxy)).
    Udp,
}

/// What a listener binds: a TCP and a UDP listener may share an address and port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        })
    }
}

impl Protocol {
    /// The protocol of a published port (see the crate docs for the rule): a UDP port is
    /// UDP; on a TCP port, `x-composure: {protocol: http|tcp}` wins; otherwise
    /// `app_protocol: http` (or `h2c`) means HTTP; anything else is TCP. SCTP ports are
    /// refused, and so is `x-composure.protocol` on a UDP port.
    pub fn for_port(port: &Port) -> Result<Protocol, NetError> {
        let explicit = port
            .extensions
            .get("x-composure")
            .and_then(|x| x.get("protocol"));
        if port.protocol.eq_ignore_ascii_case("udp") {
            return match explicit {
                None => Ok(Protocol::Udp),
                Some(value) => Err(NetError::Config(format!(
                    "port {}/udp: x-composure.protocol ({value}) applies to tcp ports only",
                    port.target
                ))),
            };
        }
        if !port.protocol.eq_ignore_ascii_case("tcp") {
            return Err(NetError::Config(format!(
                "port {}: the proxy relays tcp and udp only, not {}",
                port.target, port.protocol
            )));
        }
        if let Some(value) = explicit {
            return value.as_str().and_then(Protocol::parse).ok_or_else(|| {
                NetError::Config(format!(
                    "port {}: x-composure.protocol must be \"http\" or \"tcp\", not {value}",
                    port.target
                ))
            });
        }
        Ok(match port.app_protocol.as_deref() {
            Some(p) if p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("h2c") => {
                Protocol::Http
            }
            _ => Protocol::Tcp,
        })
    }

    /// What a listener of this protocol binds.
    pub fn transport(self) -> Transport {
        match self {
            Protocol::Tcp | Protocol::Http => Transport::Tcp,
            Protocol::Udp => Transport::Udp,
        }
    }

    /// `tcp` or `http`, any case: the values of `x-composure.protocol`, which chooses
    /// between the two on a TCP port (UDP comes from the port's own `protocol`).
    pub fn parse(text: &str) -> Option<Protocol> {
        if text.eq_ignore_ascii_case("tcp") {
            Some(Protocol::Tcp)
        } else if text.eq_ignore_ascii_case("http") {
            Some(Protocol::Http)
        } else {
            None
        }
    }
}

/// One routing rule of a listener, naming its service.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteConfig {
    /// `example.com`, `*.example.com`, or `None` for any host (HTTP only).
    pub host: Option<String>,
    /// `/api`, matched segment by segment, or `None` for every path (HTTP only).
    pub path_prefix: Option<String>,
    /// The service whose ready replicas take the traffic.
    pub service: String,
    /// The port the replicas listen on (inside their containers).
    pub port: u16,
}

impl RouteConfig {
    /// Every request or connection to `port` of `service`.
    pub fn to_service(service: impl Into<String>, port: u16) -> Self {
        RouteConfig {
            service: service.into(),
            port,
            ..RouteConfig::default()
        }
    }
}

/// One listening address owned by the proxy: a published port, or the routes declared
/// for one address under `x-composure`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// For TCP and UDP exactly one route, without host or path; for HTTP one or more.
    pub routes: Vec<RouteConfig>,
    /// Empty: plain HTTP (or TCP). Otherwise the listener terminates TLS (HTTP only), with
    /// the certificate picked by the name the client asks for (see [`HostCertificate`]).
    pub tls: Vec<HostCertificate>,
}

impl ListenerConfig {
    /// What the listener binds: its transport and address. Two listeners clash only if
    /// these are equal.
    pub fn socket(&self) -> (Transport, SocketAddr) {
        (self.protocol.transport(), self.addr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(app_protocol: Option<&str>, x: Option<serde_json::Value>) -> Port {
        let mut p = Port::new(8080);
        p.app_protocol = app_protocol.map(str::to_string);
        if let Some(x) = x {
            p.extensions.insert("x-composure".into(), x);
        }
        p
    }

    #[test]
    fn app_protocol_http_means_http() {
        assert_eq!(
            Protocol::for_port(&port(None, None)).unwrap(),
            Protocol::Tcp
        );
        assert_eq!(
            Protocol::for_port(&port(Some("HTTP"), None)).unwrap(),
            Protocol::Http
        );
        assert_eq!(
            Protocol::for_port(&port(Some("https"), None)).unwrap(),
            Protocol::Tcp
        );
    }

    #[test]
    fn x_composure_wins() {
        let http = serde_json::json!({"protocol": "http"});
        let tcp = serde_json::json!({"protocol": "tcp"});
        assert_eq!(
            Protocol::for_port(&port(None, Some(http))).unwrap(),
            Protocol::Http
        );
        assert_eq!(
            Protocol::for_port(&port(Some("http"), Some(tcp))).unwrap(),
            Protocol::Tcp
        );
        let bad = serde_json::json!({"protocol": "quic"});
        assert!(Protocol::for_port(&port(None, Some(bad))).is_err());
    }

    #[test]
    fn udp_ports_are_udp() {
        let mut p = port(Some("dns"), None);
        p.protocol = "UDP".into();
        assert_eq!(Protocol::for_port(&p).unwrap(), Protocol::Udp);
        assert_eq!(Protocol::Udp.transport(), Transport::Udp);
        assert_eq!(Protocol::Http.transport(), Transport::Tcp);
    }

    #[test]
    fn x_composure_protocol_on_a_udp_port_is_refused() {
        let mut p = port(None, Some(serde_json::json!({"protocol": "tcp"})));
        p.protocol = "udp".into();
        assert!(Protocol::for_port(&p).is_err());
    }

    #[test]
    fn sctp_is_refused() {
        let mut p = port(None, None);
        p.protocol = "sctp".into();
        assert!(Protocol::for_port(&p).is_err());
    }
}
