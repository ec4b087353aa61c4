//! Composure's proxy. It runs inside the daemon and owns every published port, so that
//! the replicas of a service share the port and only ready replicas get traffic.
//!
//! # Pieces
//!
//! - [`Endpoints`]: the ready replicas of one service (task id and address). The daemon
//!   keeps the sending half of a `tokio::sync::watch` channel of them per service and
//!   sends a new set whenever a task becomes ready or leaves.
//! - [`Upstream`]: follows that channel and picks a backend for each new connection or
//!   request (power of two choices on what is in flight), tries another when connecting
//!   fails, ejects failing backends for a cool-down, counts per backend
//!   ([`Upstream::metrics`]) and tells when a backend that left the set has drained
//!   ([`Upstream::active`], [`Upstream::drain`]).
//! - [`TcpProxy`] (L4), [`HttpProxy`] (L7) and [`UdpProxy`] (datagrams, in sessions per
//!   client address): one listener each; [`Listener`] builds any of them from a
//!   [`ListenerConfig`].
//! - [`Router`]: host (exact or `*.wildcard`) and path-prefix rules, so that several
//!   services share one HTTP listener.
//! - [`routing`]: the routes a project declares under `x-composure` (pure parsing and
//!   checks, all problems at once with their YAML paths; reading the certificate files is
//!   a separate step), turned into [`ListenerConfig`]s.
//! - [`vip`]: the loop of a service's VIP container, which holds the service's name for
//!   the other containers and relays to its ready replicas, fed through files.
//! - [`Workers`]: the proxy's own threads, one single-threaded runtime each; every TCP
//!   and HTTP listener's `serve_on` accepts on all of them, a UDP listener runs on one. (`serve` runs on the caller's runtime,
//!   which suits tests; on a multi-threaded runtime it is about half as fast.)
//!
//! # Draining
//!
//! A backend that leaves the set gets no new connection, request or UDP session from the
//! moment the new set is sent; what it already has goes on (a UDP session until it has
//! been idle for [`UdpConfig::idle_timeout`]). To stop a task without cutting anyone
//! off, the daemon sends the set without it, awaits [`Upstream::drain`] with a deadline,
//! then stops the container.
//!
//! # TCP, HTTP or UDP: the rule for a published port
//!
//! A UDP port (`protocol: udp`) is relayed as UDP ([`UdpProxy`]: a session per client
//! address, ended after 30 s idle, at most 10,000 at a time). A TCP port is proxied as
//! TCP unless it says HTTP ([`Protocol::for_port`]):
//!
//! ```yaml
//! services:
//!   web:
//!     ports:
//!       - target: 8080
//!         published: "80"
//!         app_protocol: http        # the Compose specification's own hint
//!   api:
//!     ports:
//!       - target: 9000
//!         published: "9000"
//!         x-composure:
//!           protocol: http          # Composure's setting; wins over app_protocol
//! ```
//!
//! `app_protocol: http` (or `h2c`) selects HTTP; any other `app_protocol` (`https`,
//! `grpc`, ...) stays TCP, so TLS backends are passed through untouched.
//! `x-composure: {protocol: http | tcp}` on the port overrides `app_protocol` either way.
//! Only the long port syntax can carry either key; short-syntax ports are TCP.
//!
//! # TLS
//!
//! An HTTP listener terminates TLS when given PEM certificate and key files
//! ([`TlsFiles`], [`HttpProxy::with_tls`], [`Listener::with_tls`]): rustls with the
//! aws-lc-rs provider, TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`. A listener may hold
//! several certificates, each for a host pattern ([`HostCertificate`],
//! [`HttpProxy::with_certificates`]): the client's server name (SNI) picks the most
//! specific match, as the router does for `Host`. Files are read when the listener is
//! built (a renewed certificate is a new listener config, served on the same socket by
//! [`ingress`]). TCP listeners pass TLS through untouched.
//!
//! # Not covered yet
//!
//! ACME, HTTP/2 to backends, UDP in the VIP
//! (calls between services), and the PROXY protocol.

mod backend;
pub mod config;
mod endpoints;
mod error;
mod http;
pub mod ingress;
mod listener;
mod router;
pub mod routing;
mod serve;
mod socket;
mod tcp;
mod tls;
mod udp;
mod upstream;
pub mod vip;
mod wake;
mod workers;

pub use backend::BackendMetrics;
pub use config::{ListenerConfig, Protocol, RouteConfig, Transport};
pub use endpoints::{Endpoint, Endpoints};
pub use error::NetError;
pub use http::{HttpProxy, RouterHandle};
pub use listener::Listener;
pub use router::{HostMatch, Route, Router};
pub use socket::BoundSocket;
pub use tcp::TcpProxy;
pub use tls::{HostCertificate, TlsFiles};
pub use udp::{UdpConfig, UdpProxy};
pub use upstream::{DEFAULT_RESPONSE_TIMEOUT, ResponseTimeout, Upstream, UpstreamConfig};
pub use workers::Workers;
