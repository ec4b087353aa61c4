//! From a compose service to the engine's create request.
//!
//! [`plan_create`] is a pure function: the model, the names Composure chose, and what had to
//! be looked up in the engine first ([`Peers`]: containers of other services that
//! `network_mode: service:x` and friends point at) go in; the create body, the networks to
//! connect after create, and the files to write before create come out. Nothing is
//! silently dropped: what cannot be mapped is refused with `RuntimeError::InvalidSpec`, as
//! in ``service `web`: `annotations` is not supported yet``.
//!
//! # Field by field (`model::Service`)
//!
//! | Field | Engine | Notes |
//! |---|---|---|
//! | `annotations` | rejected | needs API 1.43 (`HostConfig.Annotations`) |
//! | `attach` | — | which logs `up` shows; the CLI's business |
//! | `blkio_config` | `BlkioWeight`, `BlkioWeightDevice`, `BlkioDevice{Read,Write}{Bps,IOps}` | |
//! | `build` | — | used by `ensure_image` |
//! | `cap_add`, `cap_drop` | `CapAdd`, `CapDrop` | |
//! | `cgroup` | `CgroupnsMode` | `host` or `private` |
//! | `cgroup_parent` | `CgroupParent` | |
//! | `command` | `Cmd` | `command: []` clears the image's `CMD` only with a non-empty `entrypoint`; alone it is rejected (the engine would put the image's back) |
//! | `configs` | read-only bind mount at the target (`/<source>` by default) | see *Secrets and configs* |
//! | `container_name` | the container's name | the caller decides names (`ContainerSpec.name`): the daemon uses `container_name` as the slot's name |
//! | `cpu_count`, `cpu_percent` | `CpuCount`, `CpuPercent` | Windows engines only; a Linux engine refuses them |
//! | `cpu_period`, `cpu_quota`, `cpu_rt_period`, `cpu_rt_runtime`, `cpu_shares`, `cpuset` | `CpuPeriod`, `CpuQuota`, `CpuRealtimePeriod`, `CpuRealtimeRuntime`, `CpuShares`, `CpusetCpus` | |
//! | `cpus` | `NanoCpus` | `deploy.resources.limits.cpus` wins |
//! | `credential_spec` | rejected | Windows only |
//! | `depends_on` | — | the reconciler's business |
//! | `deploy.resources.limits` | `Memory`, `NanoCpus`, `PidsLimit` | win over `mem_limit`, `cpus`, `pids_limit`; `devices` here is rejected |
//! | `deploy.resources.reservations` | `MemoryReservation`; `cpus` → `CpuShares` (cpus × 1024, as Kubernetes maps requests) unless `cpu_shares` is set; `devices` → `DeviceRequests` | `generic_resources` and `pids` are rejected |
//! | `deploy` (other keys) | — | replicas, restart policy, updates, placement: the engine's business (core, daemon) |
//! | `develop` | — | `watch` is not an engine concern |
//! | `device_cgroup_rules` | `DeviceCgroupRules` | |
//! | `devices` | `Devices` (`PathOnHost`, `PathInContainer`, `CgroupPermissions`) | CDI names (`vendor.com/class=name`) are rejected: API 1.45 |
//! | `dns`, `dns_opt`, `dns_search` | `Dns`, `DnsOptions`, `DnsSearch` | |
//! | `domainname`, `hostname` | `Domainname`, `Hostname` | |
//! | `entrypoint` | `Entrypoint` | `[]` clears the image's |
//! | `env_file` | — | already read into `environment` by the loader |
//! | `environment` | `Env` | a variable with no value (unset when loaded) is left out |
//! | `expose` | `ExposedPorts` | ranges expanded |
//! | `extends` | — | resolved by the loader |
//! | `external_links` | `Links` (`container:alias`) | |
//! | `extra_hosts` | `ExtraHosts` (`host:ip`, one per address) | |
//! | `gpus` | `DeviceRequests` with capability `gpu` | `all` → `Count: -1` |
//! | `group_add` | `GroupAdd` | |
//! | `healthcheck` | `Healthcheck`, durations in ns | `disable` → `["NONE"]`; `start_interval` needs API 1.44 (older engines ignore it) |
//! | `image` | `Image` | the reference `ensure_image` returned |
//! | `init` | `Init` | |
//! | `ipc` | `IpcMode` | `service:x` → `container:<id of a running x>` |
//! | `isolation` | `Isolation` | |
//! | `label_file` | `Labels` | read at create time; `labels` win over it |
//! | `labels` | `Labels` | then `ContainerSpec.labels`, then Composure's identity labels win |
//! | `links` | `Links` (`<container of x>:alias`) | on the bridge network `HostConfig.Links`, else on every endpoint |
//! | `logging` | `LogConfig` | `logs` needs a driver the engine can read back (json-file, local, journald) |
//! | `mac_address` | rejected | needs API 1.44 (per endpoint) |
//! | `mem_limit`, `mem_reservation`, `mem_swappiness`, `memswap_limit` | `Memory`, `MemoryReservation`, `MemorySwappiness`, `MemorySwap` | |
//! | `models` | rejected | |
//! | `network_mode` | `NetworkMode` | `service:x` → `container:<id>`; excludes `networks` |
//! | `networks` | first (highest `priority`) in `NetworkingConfig` and `NetworkMode`, the others connected after create, before start | aliases = service name + `aliases` + container name (only the container name when the service carries the label `io.composure.fronted-by`: its VIP holds the name); `ipv4_address`, `ipv6_address`, `link_local_ips`, `driver_opts`; `mac_address`, `gw_priority`, `interface_name` rejected |
//! | `oom_kill_disable`, `oom_score_adj` | `OomKillDisable`, `OomScoreAdj` | |
//! | `pid` | `PidMode` | `service:x` → `container:<id>` |
//! | `pids_limit` | `PidsLimit` | |
//! | `platform` | `platform` query parameter | |
//! | `ports` | `ExposedPorts` + `PortBindings` (`HostIp`, `HostPort`, protocol; host ranges kept) | the engine publishes only what it is given: the daemon hands single TCP ports to its proxy and leaves them out (UDP and ranges stay with the engine); `mode`, `name` change nothing on one host |
//! | `post_start`, `pre_start`, `pre_stop` | rejected | lifecycle hooks come later |
//! | `privileged` | `Privileged` | |
//! | `profiles` | — | applied by the loader |
//! | `provider` | rejected | |
//! | `pull_policy`, `pull_refresh_after` | — | used by `ensure_image` |
//! | `read_only` | `ReadonlyRootfs` | |
//! | `restart` | `RestartPolicy` is **always `no`** | Composure decides restarts (the reconciler reads `restart`) |
//! | `runtime` | `Runtime` | |
//! | `scale` | — | the reconciler's business |
//! | `secrets` | read-only bind mount at the target (`/run/secrets/<source>` by default) | see *Secrets and configs* |
//! | `security_opt` | `SecurityOpt` | |
//! | `shm_size` | `ShmSize` | |
//! | `stdin_open`, `tty` | `OpenStdin`, `Tty` | |
//! | `stop_grace_period` | `StopTimeout` (seconds, rounded up) | `stop` takes its grace from the caller |
//! | `stop_signal` | `StopSignal` | |
//! | `storage_opt` | `StorageOpt` | |
//! | `sysctls` | `Sysctls` | |
//! | `tmpfs` | `Tmpfs` (`path` → options) | |
//! | `ulimits` | `Ulimits` | |
//! | `use_api_socket` | rejected | |
//! | `user`, `working_dir` | `User`, `WorkingDir` | |
//! | `userns_mode`, `uts` | `UsernsMode`, `UTSMode` | |
//! | `volumes` | see *Volumes* | |
//! | `volumes_from` | `VolumesFrom` | `x[:ro]` → a running container of `x`; `container:name` as written |
//! | `x-*` | — | extensions are not the engine's |
//!
//! # Volumes
//!
//! - `bind` with `create_host_path` (the short syntax's default) → `Binds` (`src:dst[:opts]`),
//!   because the engine creates a missing source directory for `Binds` and not for `Mounts`;
//!   `ro`, propagation, SELinux `z`/`Z` and consistency become options.
//! - `bind` otherwise → a `Mounts` entry of type bind (a missing source is an error), with
//!   propagation and `recursive: disabled` (`NonRecursive`); SELinux relabelling needs the
//!   `Binds` form and is rejected there, as are `recursive: writable|readonly` (API 1.44).
//! - `volume` → a `Mounts` entry: a named one uses the project-scoped name
//!   (`project.volumes[key].name`, created by `ensure_volume`), no source is an anonymous
//!   volume (removed with the container); `nocopy` and `labels` kept; `subpath` is rejected
//!   (API 1.45).
//! - `tmpfs` → a `Mounts` entry with `size` and `mode`.
//! - `image`, `npipe`, `cluster` → rejected.
//!
//! # Secrets and configs
//!
//! Without a swarm the engine has no secret store, so each granted secret or config becomes
//! a file bind-mounted read-only at its target:
//! - `file:` → that file itself, unless the grant sets `uid`, `gid` or `mode`: then a copy
//!   with that owner and mode;
//! - `content:` → the content, written to a file;
//! - `environment:` → the value of that variable **in this process's environment** at create
//!   time (the daemon's, not the CLI's that loaded the file), written to a file.
//!
//! Written files go under the directory given to `DockerRuntime::with_secrets_dir`, one
//! folder per container (`<dir>/<container name>/secrets|configs/<source>`), mode `0444`
//! unless the grant says otherwise; `remove` deletes the folder. External secrets and
//! secret drivers need a swarm and are rejected.

mod mounts;
mod networking;
mod resources;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HealthConfig, HostConfigCgroupnsModeEnum,
    HostConfigIsolationEnum, HostConfigLogConfig, NetworkingConfig, RestartPolicy,
    RestartPolicyNameEnum,
};
use composure_compose::model::{self, Project, Service};
use composure_core::labels;
use composure_runtime::RuntimeError;
use indexmap::IndexMap;

pub use mounts::{FileContent, FileToWrite};

/// A container of another service that this one refers to (`network_mode: service:x`,
/// `ipc`, `pid`, `links`, `volumes_from`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    pub id: String,
    pub name: String,
}

/// The containers found for the services named by [`referenced_services`].
pub type Peers = IndexMap<String, Peer>;

/// Everything [`plan_create`] needs.
#[derive(Clone, Copy, Debug)]
pub struct CreateInput<'a> {
    pub project_name: &'a str,
    pub project: &'a Project,
    pub service_name: &'a str,
    pub service: &'a Service,
    pub container_name: &'a str,
    pub image: &'a str,
    /// Labels the caller asked for (`ContainerSpec.labels`).
    pub labels: &'a IndexMap<String, String>,
    /// Labels read from the service's `label_file`s.
    pub file_labels: &'a IndexMap<String, String>,
    pub peers: &'a Peers,
    /// Where secret and config files of this container are written.
    pub files_dir: &'a Path,
    /// The GPUs this replica was given (`ContainerSpec.gpus`).
    pub gpus: &'a [String],
}

/// What to do to create the container.
#[derive(Clone, Debug)]
pub struct CreatePlan {
    pub name: String,
    pub platform: Option<String>,
    pub body: ContainerCreateBody,
    /// Networks to connect after create and before start (the engine takes one at create
    /// before API 1.44), by engine name.
    pub connect_after: Vec<(String, EndpointSettings)>,
    /// Secret and config files to write before create.
    pub files: Vec<FileToWrite>,
}

pub(crate) fn unsupported(service: &str, field: &str) -> RuntimeError {
    RuntimeError::InvalidSpec(format!(
        "service `{service}`: `{field}` is not supported yet"
    ))
}

pub(crate) fn invalid(service: &str, message: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::InvalidSpec(format!("service `{service}`: {message}"))
}

/// The folder holding the written secret and config files of one container; an error for a
/// container name that would lead out of `secrets_dir`.
pub fn container_files_dir(secrets_dir: &Path, container_name: &str) -> Result<PathBuf, String> {
    composure_compose::names::path_within(secrets_dir, &[container_name])
}

/// Services whose containers this one needs the id or name of.
pub fn referenced_services(service: &Service) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if !out.iter().any(|s| s == name) {
            out.push(name.to_string());
        }
    };
    for mode in [&service.network_mode, &service.ipc, &service.pid]
        .into_iter()
        .flatten()
    {
        if let Some(target) = mode.strip_prefix("service:") {
            add(target);
        }
    }
    for link in &service.links {
        add(link.split(':').next().unwrap_or(link));
    }
    for from in &service.volumes_from {
        if !from.starts_with("container:") {
            add(from.split(':').next().unwrap_or(from));
        }
    }
    out
}

/// Maps a service to the engine's create request. Pure: see the module docs.
pub fn plan_create(input: &CreateInput<'_>) -> Result<CreatePlan, RuntimeError> {
    let svc = input.service;
    let name = input.service_name;
    reject_unsupported(input)?;

    let net = networking::plan(input)?;
    let mounts = mounts::plan(input)?;
    let mut host = resources::host_config(name, svc)?;
    resources::assign_gpus(&mut host, input.gpus);

    host.restart_policy = Some(RestartPolicy {
        name: Some(RestartPolicyNameEnum::NO),
        maximum_retry_count: None,
    });
    host.init = svc.init;
    host.privileged = svc.privileged;
    host.readonly_rootfs = svc.read_only;
    host.cap_add = non_empty(&svc.cap_add);
    host.cap_drop = non_empty(&svc.cap_drop);
    host.security_opt = non_empty(&svc.security_opt);
    host.dns = non_empty(&svc.dns);
    host.dns_options = non_empty(&svc.dns_opt);
    host.dns_search = non_empty(&svc.dns_search);
    host.group_add = non_empty(&svc.group_add);
    host.userns_mode = svc.userns_mode.clone();
    host.uts_mode = svc.uts.clone();
    host.shm_size = svc.shm_size.map(|b| b.0);
    host.sysctls = map(&svc.sysctls);
    host.storage_opt = map(&svc.storage_opt);
    host.tmpfs = tmpfs(&svc.tmpfs);
    host.runtime = svc.runtime.clone();
    host.cgroup_parent = svc.cgroup_parent.clone();
    host.cgroupns_mode = svc
        .cgroup
        .as_deref()
        .map(|c| match c {
            "host" => Ok(HostConfigCgroupnsModeEnum::HOST),
            "private" => Ok(HostConfigCgroupnsModeEnum::PRIVATE),
            other => Err(invalid(
                name,
                format!("`cgroup: {other}` must be `host` or `private`"),
            )),
        })
        .transpose()?;
    host.isolation = svc
        .isolation
        .as_deref()
        .map(|i| {
            i.parse::<HostConfigIsolationEnum>()
                .map_err(|_| invalid(name, format!("unknown isolation `{i}`")))
        })
        .transpose()?;
    host.log_config = svc.logging.as_ref().map(|l| HostConfigLogConfig {
        typ: l.driver.clone(),
        config: map(&l.options),
    });
    host.binds = non_empty(&mounts.binds);
    host.mounts = (!mounts.mounts.is_empty()).then_some(mounts.mounts);
    host.network_mode = net.network_mode;
    host.ipc_mode = net.ipc_mode;
    host.pid_mode = net.pid_mode;
    host.port_bindings = net.port_bindings;
    host.extra_hosts = net.extra_hosts;
    host.links = net.host_links;
    host.volumes_from = net.volumes_from;

    let body = ContainerCreateBody {
        image: Some(input.image.to_string()),
        cmd: command(input)?,
        entrypoint: svc.entrypoint.clone(),
        env: env(&svc.environment, input.gpus),
        user: svc.user.clone(),
        working_dir: svc.working_dir.clone(),
        hostname: svc.hostname.clone(),
        domainname: svc.domainname.clone(),
        tty: svc.tty,
        open_stdin: svc.stdin_open,
        stop_signal: svc.stop_signal.clone(),
        stop_timeout: svc.stop_grace_period.map(|d| ceil_secs(d.0)),
        healthcheck: svc.healthcheck.as_ref().map(healthcheck),
        labels: Some(container_labels(input)),
        exposed_ports: net.exposed_ports,
        host_config: Some(host),
        networking_config: net.first.map(|(network, endpoint)| NetworkingConfig {
            endpoints_config: Some(HashMap::from([(network, endpoint)])),
        }),
        ..ContainerCreateBody::default()
    };
    Ok(CreatePlan {
        name: input.container_name.to_string(),
        platform: svc.platform.clone(),
        body,
        connect_after: net.connect_after,
        files: mounts.files,
    })
}

/// Fields with no engine mapping yet: refused, never dropped.
fn reject_unsupported(input: &CreateInput<'_>) -> Result<(), RuntimeError> {
    let svc = input.service;
    let name = input.service_name;
    let checks = [
        ("annotations", !svc.annotations.is_empty()),
        ("credential_spec", svc.credential_spec.is_some()),
        ("mac_address", svc.mac_address.is_some()),
        ("models", !svc.models.is_empty()),
        ("post_start", !svc.post_start.is_empty()),
        ("pre_start", !svc.pre_start.is_empty()),
        ("pre_stop", !svc.pre_stop.is_empty()),
        ("provider", svc.provider.is_some()),
        ("use_api_socket", svc.use_api_socket == Some(true)),
    ];
    if let Some((field, _)) = checks.iter().find(|(_, set)| *set) {
        return Err(unsupported(name, field));
    }
    Ok(())
}

/// `command: []` asks for no `CMD`; the engine puts the image's back unless an entrypoint
/// is set, so that case cannot be honoured.
fn command(input: &CreateInput<'_>) -> Result<Option<Vec<String>>, RuntimeError> {
    let svc = input.service;
    match &svc.command {
        Some(cmd) if cmd.is_empty() => {
            let has_entrypoint = svc.entrypoint.as_ref().is_some_and(|e| !e.is_empty());
            if has_entrypoint {
                Ok(Some(Vec::new()))
            } else {
                Err(invalid(
                    input.service_name,
                    "`command: []` cannot clear the image's CMD without an `entrypoint`",
                ))
            }
        }
        other => Ok(other.clone()),
    }
}

/// Label layers, later ones winning: `label_file`, `labels`, the caller's, then the
/// identity labels that make the container Composure's.
fn container_labels(input: &CreateInput<'_>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    out.extend(input.file_labels.clone());
    out.extend(input.service.labels.clone());
    out.extend(input.labels.clone());
    out.extend(identity_labels(input.project_name, input.service_name));
    out
}

/// The labels that make a container, network or volume Composure's and `docker compose`'s.
pub(crate) fn identity_labels(project: &str, service: &str) -> [(String, String); 6] {
    [
        (labels::MANAGED.to_string(), "true".to_string()),
        (labels::PROJECT.to_string(), project.to_string()),
        (labels::SERVICE.to_string(), service.to_string()),
        (labels::COMPOSE_PROJECT.to_string(), project.to_string()),
        (labels::COMPOSE_SERVICE.to_string(), service.to_string()),
        (labels::COMPOSE_ONEOFF.to_string(), "False".to_string()),
    ]
}

/// The service's variables; with GPUs assigned, `NVIDIA_VISIBLE_DEVICES` names them (the
/// NVIDIA runtime reads it, and so do images that set it to `all`).
fn env(environment: &model::EnvMapping, gpus: &[String]) -> Option<Vec<String>> {
    let mut vars: Vec<String> = environment
        .iter()
        .filter(|(k, _)| gpus.is_empty() || k.as_str() != "NVIDIA_VISIBLE_DEVICES")
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if !gpus.is_empty() {
        vars.push(format!("NVIDIA_VISIBLE_DEVICES={}", gpus.join(",")));
    }
    (!vars.is_empty()).then_some(vars)
}

fn healthcheck(hc: &model::Healthcheck) -> HealthConfig {
    if hc.disable == Some(true) {
        return HealthConfig {
            test: Some(vec!["NONE".to_string()]),
            ..HealthConfig::default()
        };
    }
    HealthConfig {
        test: hc.test.clone(),
        interval: hc.interval.map(|d| nanos(d.0)),
        timeout: hc.timeout.map(|d| nanos(d.0)),
        retries: hc.retries.map(|r| i64::try_from(r).unwrap_or(i64::MAX)),
        start_period: hc.start_period.map(|d| nanos(d.0)),
        start_interval: hc.start_interval.map(|d| nanos(d.0)),
    }
}

/// `tmpfs: ["/run", "/tmp:size=64m"]` → `{"/run": "", "/tmp": "size=64m"}`.
fn tmpfs(entries: &[String]) -> Option<HashMap<String, String>> {
    let out: HashMap<String, String> = entries
        .iter()
        .map(|e| match e.split_once(':') {
            Some((path, options)) => (path.to_string(), options.to_string()),
            None => (e.clone(), String::new()),
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

pub(crate) fn nanos(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn ceil_secs(d: std::time::Duration) -> i64 {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

pub(crate) fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

pub(crate) fn map(m: &model::Mapping) -> Option<HashMap<String, String>> {
    (!m.is_empty()).then(|| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

#[cfg(test)]
mod tests;
