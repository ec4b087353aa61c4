//! A service's virtual IP: a small container that holds the service's name on its
//! networks and relays each connection (or, for HTTP ports, each request) to a ready
//! replica. Containers that call `http://web:8080` resolve `web` to this container, so
//! they reach ready replicas only and see no failure while replicas come and go.
//!
//! The daemon and the VIP talk through two JSON files in a directory bind-mounted into
//! the VIP container:
//!
//! - [`CONFIG_FILE`] ([`VipConfig`]), written by the daemon: the ports to serve and the
//!   ready replicas, with a generation that grows with every change;
//! - [`STATUS_FILE`] ([`VipStatus`]), written by the VIP: the generation it serves and
//!   what each replica still has in flight, so that the daemon can wait until a replica
//!   it withdrew gets no new traffic and has drained before it stops it.
//!
//! Both are replaced by rename, so a reader never sees half a file. The VIP looks at the
//! config every [`POLL`]: a file is simpler and sturdier than a socket between a
//! container and the daemon (either may restart; nothing to reconnect), and 50 ms is
//! well inside what a rollout waits anyway.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use composure_core::TaskId;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{ListenerConfig, Protocol, RouteConfig};
use crate::endpoints::{Endpoint, Endpoints};
use crate::error::NetError;
use crate::listener::Listener;
use crate::upstream::{Upstream, UpstreamConfig};
use crate::workers::Workers;

/// The daemon's half: what to serve.
pub const CONFIG_FILE: &str = "config.json";
/// The VIP's half: what it serves and what is in flight.
pub const STATUS_FILE: &str = "status.json";
/// How often the VIP looks for a new config.
pub const POLL: Duration = Duration::from_millis(50);

/// What the daemon asks a VIP to serve.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipConfig {
    /// Grows with every change (the daemon uses wall-clock milliseconds, so that it keeps
    /// growing across daemon restarts).
    pub generation: u64,
    /// The service, for logs.
    pub service: String,
    pub ports: Vec<VipPort>,
    /// The ready replicas; each serves every port on its own address.
    pub endpoints: Vec<VipEndpoint>,
    /// The service's `x-composure.response_timeout` in ms, for its HTTP ports (0: no
    /// limit); `None`: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_timeout_ms: Option<u64>,
}

impl VipConfig {
    /// The proxy's settings for the service's replicas.
    fn upstream_config(&self) -> UpstreamConfig {
        UpstreamConfig::with_response_timeout_ms(self.response_timeout_ms)
    }
}

/// A port of the service, served on the VIP's address with the same number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipPort {
    pub port: u16,
    /// Relay bytes (`tcp`) or balance requests (`http`).
    #[serde(with = "protocol_name")]
    pub protocol: Protocol,
}

/// A ready replica.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VipEndpoint {
    pub task: String,
    pub ip: IpAddr,
}

/// What a VIP serves now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VipStatus {
    /// The generation of the config it serves (0: none yet).
    pub generation: u64,
    /// Connections (TCP) or requests (HTTP) in flight per task, over all ports, for every
    /// task that has any: ready ones and withdrawn ones still draining.
    pub active: BTreeMap<String, usize>,
}

mod protocol_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::config::Protocol;

    /// A VIP relays TCP and HTTP: a service with a UDP port keeps Docker's DNS, so a
    /// UDP port never reaches a VIP's config.
    pub fn serialize<S: Serializer>(protocol: &Protocol, s: S) -> Result<S::Ok, S::Error> {
        match protocol {
            Protocol::Tcp => s.serialize_str("tcp"),
            Protocol::Http => s.serialize_str("http"),
            Protocol::Udp => Err(serde::ser::Error::custom("a VIP does not relay udp")),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Protocol, D::Error> {
        let text = String::deserialize(d)?;
        Protocol::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown protocol {text:?}")))
    }
}

/// Writes `value` as JSON to `dir/name` through a temporary file and a rename.
pub fn write_json<T: Serialize>(dir: &Path, name: &str, value: &T) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes)?;
    std::fs::rename(&temp, dir.join(name))
}

/// Reads `dir/name`; `None` if it is missing or does not parse (a VIP that has not
/// written it yet, or a file from another version).
pub fn read_json<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> Option<T> {
    let bytes = std::fs::read(dir.join(name)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One port being served.
struct Served {
    protocol: Protocol,
    tx: watch::Sender<Endpoints>,
    upstream: Arc<Upstream>,
    stop: CancellationToken,
}

/// How a VIP runs.
#[derive(Clone, Debug)]
pub struct VipOptions {
    /// Holds [`CONFIG_FILE`] and [`STATUS_FILE`].
    pub dir: PathBuf,
    /// The address every port is served on (in a VIP container: all of its addresses).
    pub ip: IpAddr,
    /// The proxy's threads.
    pub threads: usize,
    /// How long what is in flight may go on after the stop signal.
    pub drain: Duration,
}

impl VipOptions {
    pub fn new(dir: PathBuf) -> Self {
        VipOptions {
            dir,
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            threads: 2,
            drain: Duration::from_secs(10),
        }
    }
}

/// Serves the VIP whose files are in `options.dir` until `shutdown` is cancelled, then
/// lets what is in flight finish (up to `options.drain`).
pub async fn run(options: VipOptions, shutdown: CancellationToken) -> Result<(), NetError> {
    let workers = Workers::start(options.threads)?;
    let mut vip = Vip {
        dir: options.dir,
        ip: options.ip,
        workers,
        ports: HashMap::new(),
        applied: None,
        draining: BTreeSet::new(),
        status: None,
    };
    loop {
        vip.tick().await;
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(POLL) => {}
        }
    }
    for served in vip.ports.values() {
        served.stop.cancel();
    }
    let deadline = tokio::time::Instant::now() + options.drain;
    for served in vip.ports.values() {
        for task in served.upstream.metrics().iter().map(|m| m.task.clone()) {
            served.upstream.drain(&task, deadline).await;
        }
    }
    Ok(())
}

struct Vip {
    dir: PathBuf,
    ip: IpAddr,
    workers: Workers,
    ports: HashMap<u16, Served>,
    applied: Option<VipConfig>,
    /// Tasks that left the set and may still have something in flight.
    draining: BTreeSet<String>,
    status: Option<VipStatus>,
}

impl Vip {
    async fn tick(&mut self) {
        if let Some(config) = read_json::<VipConfig>(&self.dir, CONFIG_FILE)
            && self.applied.as_ref() != Some(&config)
        {
            self.apply(&config).await;
            self.applied = Some(config);
        }
        self.report();
    }

    async fn apply(&mut self, config: &VipConfig) {
        if let Some(old) = &self.applied {
            for gone in old
                .endpoints
                .iter()
                .filter(|e| !config.endpoints.contains(e))
            {
                self.draining.insert(gone.task.clone());
            }
        }
        let wanted: HashMap<u16, Protocol> =
            config.ports.iter().map(|p| (p.port, p.protocol)).collect();
        self.ports.retain(|port, served| {
            let keep = wanted.get(port) == Some(&served.protocol);
            if !keep {
                served.stop.cancel();
            }
            keep
        });
        for (&port, &protocol) in &wanted {
            let set = Endpoints::new(
                config
                    .endpoints
                    .iter()
                    .map(|e| Endpoint::new(e.task.clone(), SocketAddr::new(e.ip, port))),
            );
            let upstream = config.upstream_config();
            if let Some(served) = self.ports.get(&port) {
                if **served.upstream.config() != upstream {
                    served.upstream.set_config(upstream);
                }
                served.tx.send_replace(set);
                continue;
            }
            match self
                .serve(&config.service, port, protocol, set, upstream)
                .await
            {
                Ok(served) => {
                    self.ports.insert(port, served);
                }
                Err(e) => tracing::warn!(port, error = %e, "cannot serve port"),
            }
        }
        tracing::info!(
            generation = config.generation,
            ports = config.ports.len(),
            endpoints = config.endpoints.len(),
            "serving"
        );
    }

    async fn serve(
        &self,
        service: &str,
        port: u16,
        protocol: Protocol,
        set: Endpoints,
        config: UpstreamConfig,
    ) -> Result<Served, NetError> {
        let (tx, rx) = set.channel();
        let upstream = Upstream::new(format!("{service}:{port}"), rx, config);
        let config = ListenerConfig {
            addr: SocketAddr::new(self.ip, port),
            protocol,
            routes: vec![RouteConfig::to_service(service, port)],
            tls: Vec::new(),
        };
        let found = upstream.clone();
        let listener = Listener::bind(&config, |_| Some(found.clone())).await?;
        let stop = CancellationToken::new();
        let done = stop.clone();
        let workers = self.workers.clone();
        tokio::spawn(async move {
            if let Err(e) = listener.serve_on(&workers, done.cancelled_owned()).await {
                tracing::warn!(port, error = %e, "listener stopped");
            }
        });
        Ok(Served {
            protocol,
            tx,
            upstream,
            stop,
        })
    }

    /// Writes the status when it changed.
    fn report(&mut self) {
        let mut active = BTreeMap::new();
        let ready = self.applied.iter().flat_map(|c| c.endpoints.iter());
        let tasks: BTreeSet<String> = ready
            .map(|e| e.task.clone())
            .chain(self.draining.iter().cloned())
            .collect();
        for task in &tasks {
            let id = TaskId(task.clone());
            let count: usize = self.ports.values().map(|s| s.upstream.active(&id)).sum();
            if count > 0 {
                active.insert(task.clone(), count);
            } else {
                self.draining.remove(task);
            }
        }
        let status = VipStatus {
            generation: self.applied.as_ref().map_or(0, |c| c.generation),
            active,
        };
        if self.status.as_ref() == Some(&status) {
            return;
        }
        match write_json(&self.dir, STATUS_FILE, &status) {
            Ok(()) => self.status = Some(status),
            Err(e) => tracing::warn!(error = %e, "cannot write the status"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_back_with_protocol_names() {
        let config = VipConfig {
            generation: 7,
            service: "web".into(),
            ports: vec![
                VipPort {
                    port: 8080,
                    protocol: Protocol::Http,
                },
                VipPort {
                    port: 5432,
                    protocol: Protocol::Tcp,
                },
            ],
            endpoints: vec![VipEndpoint {
                task: "t1".into(),
                ip: "172.18.0.5".parse().unwrap(),
            }],
            response_timeout_ms: Some(1_500),
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["ports"][0]["protocol"], "http");
        assert_eq!(json["ports"][1]["protocol"], "tcp");
        let back: VipConfig = serde_json::from_value(json).unwrap();
        assert_eq!(back, config);
        assert_eq!(
            back.upstream_config().response_timeout,
            Some(Duration::from_millis(1_500))
        );
    }

    #[test]
    fn a_config_without_a_response_timeout_takes_the_default_and_0_is_none() {
        let json = serde_json::json!({"generation": 1, "service": "web",
            "ports": [], "endpoints": []});
        let config: VipConfig = serde_json::from_value(json).unwrap();
        assert_eq!(
            config.upstream_config().response_timeout,
            Some(crate::DEFAULT_RESPONSE_TIMEOUT)
        );
        let none = VipConfig {
            response_timeout_ms: Some(0),
            ..config
        };
        assert_eq!(none.upstream_config().response_timeout, None);
    }

    #[test]
    fn an_unknown_protocol_does_not_read() {
        let json = serde_json::json!({"generation": 1, "service": "web",
            "ports": [{"port": 1, "protocol": "udp"}], "endpoints": []});
        assert!(serde_json::from_value::<VipConfig>(json).is_err());
    }
}
