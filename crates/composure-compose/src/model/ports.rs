//! Published ports (`ports`) and exposed ports (`expose`).
//!
//! The short syntax `[[IP:]HOST:]CONTAINER[/PROTOCOL]` is read the way Docker reads
//! `-p`: ranges expand to one entry per port (`9090-9091:8080-8081` is two entries), a
//! host range with a single container port stays one entry with that range as its
//! published port, and IPv6 host addresses may be bracketed.

use std::fmt;
use std::net::IpAddr;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions, Flex};

/// One published port, in the long syntax.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Port {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
    /// `ingress` (the default) or `host`.
    #[serde(default = "default_mode")]
    pub mode: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `tcp` (the default), `udp` or `sctp`.
    #[serde(default = "default_protocol")]
    pub protocol: String,
    /// The host port or range (`"8080"`, `"8000-9000"`); unset lets the runtime choose.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub published: Option<String>,
    #[serde(deserialize_with = "flex::req")]
    pub target: u16,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

fn default_mode() -> String {
    "ingress".to_string()
}

fn default_protocol() -> String {
    "tcp".to_string()
}

impl Port {
    /// A port with the defaults compose fills in: mode `ingress`, protocol `tcp`.
    pub fn new(target: u16) -> Self {
        Port {
            app_protocol: None,
            host_ip: None,
            mode: default_mode(),
            name: None,
            protocol: default_protocol(),
            published: None,
            target,
            extensions: Extensions::new(),
        }
    }
}

/// A port range as written: `8080` or `8080-8081`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct PortRange {
    start: u16,
    end: u16,
}

impl PortRange {
    fn parse(text: &str) -> Option<Self> {
        let (start, end) = match text.split_once('-') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => {
                let p = text.parse().ok()?;
                (p, p)
            }
        };
        (start <= end).then_some(PortRange { start, end })
    }

    fn len(self) -> u32 {
        u32::from(self.end - self.start) + 1
    }
}

/// One `expose` entry read: `8080`, `8000-8010`, `53/udp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposed<'a> {
    pub first: u16,
    pub last: u16,
    /// As written; `tcp` when the entry names none.
    pub protocol: &'a str,
}

impl Exposed<'_> {
    pub fn is_tcp(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("tcp")
    }

    pub fn ports(&self) -> std::ops::RangeInclusive<u16> {
        self.first..=self.last
    }
}

/// Reads an `expose` entry, `PORT[-PORT][/PROTOCOL]`; `None` for text the loader refuses.
pub fn parse_expose(entry: &str) -> Option<Exposed<'_>> {
    let (ports, protocol) = entry.split_once('/').unwrap_or((entry, "tcp"));
    let range = PortRange::parse(ports)?;
    Some(Exposed {
        first: range.start,
        last: range.end,
        protocol,
    })
}

/// Parses the short syntax into one or more long-syntax ports.
pub fn parse_port(spec: &str) -> Result<Vec<Port>, String> {
    let err = |why: &str| format!("invalid port `{spec}`: {why}");
    let (ip, host, container) = split_port_spec(spec);
    let (container, protocol) = match container.split_once('/') {
        Some((port, proto)) if !proto.is_empty() => (port, proto.to_ascii_lowercase()),
        Some((port, _)) => (port, "tcp".to_string()),
        None => (container, "tcp".to_string()),
    };
    if !matches!(protocol.as_str(), "tcp" | "udp" | "sctp") {
        return Err(err(&format!(
            "unknown protocol `{protocol}` (tcp, udp or sctp)"
        )));
    }
    let host_ip = match ip {
        Some(ip) => Some(parse_host_ip(ip).ok_or_else(|| err(&format!("bad IP `{ip}`")))?),
        None => None,
    };
    if container.is_empty() {
        return Err(err("no container port"));
    }
    let targets = PortRange::parse(container)
        .ok_or_else(|| err(&format!("bad container port `{container}`")))?;
    let published = match host {
        Some("") | None => None,
        Some(h) => Some(PortRange::parse(h).ok_or_else(|| err(&format!("bad host port `{h}`")))?),
    };
    if let Some(p) = published
        && targets.len() > 1
        && p.len() != targets.len()
    {
        return Err(err("host and container port ranges differ in size"));
    }
    Ok((0..targets.len())
        .map(|i| {
            let mut port = Port::new(targets.start + i as u16);
            port.protocol.clone_from(&protocol);
            port.host_ip = host_ip.clone();
            port.published = published.map(|p| match (targets.len(), p.len()) {
                // One container port and a host range: the runtime picks a port in it.
                (1, n) if n > 1 => format!("{}-{}", p.start, p.end),
                _ => (p.start + i as u16).to_string(),
            });
            port
        })
        .collect())
}

/// Splits `ip:host:container` from the right; everything before the last two colons is the
/// IP, so an unbracketed IPv6 address (`::1:80:80`) still works.
fn split_port_spec(spec: &str) -> (Option<&str>, Option<&str>, &str) {
    match spec.rsplit_once(':') {
        None => (None, None, spec),
        Some((rest, container)) => match rest.rsplit_once(':') {
            None => (None, Some(rest), container),
            Some((ip, host)) => (Some(ip), Some(host), container),
        },
    }
}

fn parse_host_ip(ip: &str) -> Option<String> {
    let bare = ip
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(ip);
    bare.parse::<IpAddr>().ok().map(|_| bare.to_string())
}

/// For the `ports` field: each item is a port number, a short-syntax string (which may
/// expand to several ports) or a long-syntax mapping.
pub(crate) fn ports<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Port>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<Port>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of ports")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<Port>, E> {
            Ok(Vec::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Port>, A::Error> {
            let mut out = Vec::new();
            while let Some(PortEntry(ports)) = seq.next_element()? {
                out.extend(ports);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// One item of `ports`, which may stand for several ports.
struct PortEntry(Vec<Port>);

impl<'de> Deserialize<'de> for PortEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PortEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number, a port string like \"8080:80\", or a port mapping")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortEntry, E> {
                u16::try_from(v)
                    .map(|p| PortEntry(vec![Port::new(p)]))
                    .map_err(|_| E::custom(format!("invalid port {v}: above 65535")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortEntry, E> {
                Err(E::custom(format!("invalid port {v}: ports are positive")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortEntry, E> {
                parse_port(v).map(PortEntry).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PortEntry, A::Error> {
                let port = Port::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(PortEntry(vec![port]))
            }
        }
        d.deserialize_any(V)
    }
}

/// For `expose`: ports or ranges, with an optional protocol, kept as text (`"8080-8085/tcp"`).
pub(crate) fn expose<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let items = Option::<Vec<Flex<String>>>::deserialize(d)?.unwrap_or_default();
    items
        .into_iter()
        .map(|Flex(item)| {
            let valid = parse_expose(&item).is_some_and(|e| {
                matches!(
                    e.protocol.to_ascii_lowercase().as_str(),
                    "tcp" | "udp" | "sctp"
                )
            });
            if valid {
                Ok(item)
            } else {
                Err(de::Error::custom(format!(
                    "invalid exposed port `{item}` (expected PORT[-PORT][/PROTOCOL])"
                )))
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn long(input: Value) -> Value {
        serde_json::to_value(ports(input).unwrap()).unwrap()
    }

    fn err(input: Value) -> String {
        ports(input).unwrap_err().to_string()
    }

    #[test]
    fn host_and_container_port() {
        assert_eq!(
            long(json!(["8080:80"])),
            json!([{"mode": "ingress", "protocol": "tcp", "published": "8080", "target": 80}])
        );
    }

    #[test]
    fn container_port_only_as_string_or_integer() {
        let want = json!([{"mode": "ingress", "protocol": "tcp", "target": 80}]);
        assert_eq!(long(json!(["80"])), want);
        assert_eq!(long(json!([80])), want);
    }

    #[test]
    fn ip_and_protocol() {
        assert_eq!(
            long(json!(["127.0.0.1:8080:80/udp"])),
            json!([{"host_ip": "127.0.0.1", "mode": "ingress", "protocol": "udp",
                    "published": "8080", "target": 80}])
        );
        assert_eq!(
            long(json!(["127.0.0.1::80"])),
            json!([{"host_ip": "127.0.0.1", "mode": "ingress", "protocol": "tcp", "target": 80}])
        );
    }

    #[test]
    fn ipv6_bracketed_or_not() {
        let want = json!([{"host_ip": "::1", "mode": "ingress", "protocol": "tcp",
                           "published": "6001", "target": 6001}]);
        assert_eq!(long(json!(["[::1]:6001:6001"])), want);
        assert_eq!(long(json!(["::1:6001:6001"])), want);
    }

    #[test]
    fn equal_ranges_expand_to_one_entry_per_port() {
        assert_eq!(
            long(json!(["9090-9091:8080-8081"])),
            json!([
                {"mode": "ingress", "protocol": "tcp", "published": "9090", "target": 8080},
                {"mode": "ingress", "protocol": "tcp", "published": "9091", "target": 8081},
            ])
        );
        assert_eq!(
            long(json!(["3000-3001"])),
            json!([
                {"mode": "ingress", "protocol": "tcp", "target": 3000},
                {"mode": "ingress", "protocol": "tcp", "target": 3001},
            ])
        );
    }

    #[test]
    fn host_range_for_one_container_port_stays_a_range() {
        assert_eq!(
            long(json!(["8000-9000:80"])),
            json!([{"mode": "ingress", "protocol": "tcp", "published": "8000-9000", "target": 80}])
        );
    }

    #[test]
    fn long_syntax_keeps_its_fields_and_extensions() {
        assert_eq!(
            long(
                json!([{"name": "web", "target": "80", "host_ip": "127.0.0.1",
                         "published": 8080, "protocol": "tcp", "app_protocol": "http",
                         "mode": "host", "x-note": "kept"}])
            ),
            json!([{"app_protocol": "http", "host_ip": "127.0.0.1", "mode": "host",
                    "name": "web", "protocol": "tcp", "published": "8080", "target": 80,
                    "x-note": "kept"}])
        );
        assert_eq!(
            long(json!([{"target": 80}])),
            json!([{"mode": "ingress", "protocol": "tcp", "target": 80}])
        );
    }

    #[test]
    fn bad_ports_name_the_text() {
        assert!(err(json!(["8080:80/http"])).contains("unknown protocol `http`"));
        assert!(err(json!(["1.2.3:80:80"])).contains("bad IP `1.2.3`"));
        assert!(err(json!(["abc"])).contains("`abc`"));
        assert!(err(json!(["8080:"])).contains("no container port"));
        assert!(err(json!(["70000"])).contains("bad container port"));
        assert!(err(json!(["1-3:1-2"])).contains("differ in size"));
        assert!(err(json!([70000])).contains("above 65535"));
        assert!(err(json!([{"target": 80, "bogus": 1}])).contains("`bogus`"));
        assert!(err(json!([{"published": "80"}])).contains("target"));
    }

    #[test]
    fn expose_keeps_text_and_checks_it() {
        assert_eq!(
            expose(json!([3000, "8000", "8080-8085/tcp"])).unwrap(),
            vec!["3000", "8000", "8080-8085/tcp"]
        );
        assert!(
            expose(json!(["80:80"]))
                .unwrap_err()
                .to_string()
                .contains("`80:80`")
        );
    }
}
