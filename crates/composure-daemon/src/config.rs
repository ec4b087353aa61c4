//! What the daemon is told at start.

use std::path::PathBuf;

use composure_store::kv::EtcdConfig;

/// Where the daemon keeps its state and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Holds `state.db` (the SQLite store), `lock` (one daemon per data directory) and the
    /// node-local files (VIP configs, secret files) whatever the store.
    pub data_dir: PathBuf,
    /// The API's Unix socket; its parent directory is created if missing.
    pub socket: PathBuf,
    /// The group the socket belongs to (`--socket-group`, as dockerd's `-G`): its members
    /// may use the daemon, which makes them as powerful as root. `None`: the daemon's own.
    pub socket_group: Option<u32>,
    /// Whether each service that declares its ports gets a VIP container holding its name, so
    /// that calls between services follow readiness (see `docs/engine.md`), and what image
    /// the VIPs run.
    pub vips: ServiceVips,
    /// Where each project's ingress (the proxy on its published ports) runs.
    pub ingress: IngressHost,
    /// Where the state lives.
    pub store: StoreBackend,
    /// This node as the store knows it.
    pub node: NodeConfig,
}

impl DaemonConfig {
    /// A single-host daemon on `data_dir` (SQLite store, the local node named after the
    /// host), listening on `socket`.
    pub fn local(data_dir: PathBuf, socket: PathBuf) -> DaemonConfig {
        DaemonConfig {
            data_dir,
            socket,
            socket_group: None,
            vips: ServiceVips::Off,
            ingress: IngressHost::InProcess,
            store: StoreBackend::Sqlite,
            node: NodeConfig::local(),
        }
    }
}

/// The VIPs' image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceVips {
    /// No VIPs: every service keeps Docker's DNS.
    Off,
    /// The running executable (`composure vip` is its hidden subcommand), built into an
    /// image at start: only a daemon started from the `composure` binary can use it.
    FromExecutable,
    /// An image that exists already, by tag (tests: the simulator has every image).
    Image(String),
}

/// Where a project's ingress runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IngressHost {
    /// In the daemon: its ports close while the daemon is down (tests over the simulator,
    /// hosts without a host network).
    #[default]
    InProcess,
    /// In a container on the host's network, of the VIPs' image: it outlives the daemon
    /// and is upgraded in place. Falls back to the daemon when there is no VIP image.
    Container,
}

/// The store's backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreBackend {
    /// `<data_dir>/state.db`: one host, nothing to install.
    Sqlite,
    /// An etcd cluster, shared by every node.
    Etcd(EtcdConfig),
}

/// How this node names and describes itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub name: String,
    /// Where the other nodes reach this one.
    pub address: String,
    /// Labels the daemon was started with (`composure daemon --label`); those set with
    /// `composure node update --label` go over them.
    pub labels: std::collections::BTreeMap<String, String>,
    /// The role it registers with the first time the cluster sees it.
    pub role: composure_core::placement::Role,
    /// Where the node's GPU inventory comes from.
    pub gpus: crate::gpu::GpuSource,
}

impl NodeConfig {
    /// The node named after the host, at the loopback address: a server (one host is its
    /// own cluster).
    pub fn local() -> NodeConfig {
        NodeConfig {
            name: host_name(),
            address: "127.0.0.1".to_string(),
            labels: Default::default(),
            role: composure_core::placement::Role::Server,
            gpus: crate::gpu::GpuSource::Nvml,
        }
    }
}

/// The host's name as the kernel has it (`node.hostname` in constraints).
pub fn raw_host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_default()
}

/// The host's name (`/proc/sys/kernel/hostname`), made a valid node name; `local` if it
/// cannot be read.
pub fn host_name() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_') {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    if name.is_empty() {
        "local".to_string()
    } else {
        name
    }
}
