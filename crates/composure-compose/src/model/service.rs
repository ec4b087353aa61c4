//! A service: the desired spec of N identical replicas, with every attribute of the
//! schema's `service` definition in its long syntax.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::build::{self, Build};
use super::command;
use super::de::{self as flex, Extensions};
use super::depends_on::{self, DependsOn};
use super::deploy::Deploy;
use super::devices::{self, DeviceMapping, DeviceRequest};
use super::env_file::{self, EnvFile};
use super::healthcheck::Healthcheck;
use super::hooks::{PreStartHook, ServiceHook};
use super::limits::{BlkioConfig, Ulimits};
use super::maps::{self, EnvMapping, HostMap, Mapping};
use super::ports::{self, Port};
use super::refs::{self, FileRef, ServiceModel, ServiceNetwork};
use super::units::{Bytes, Cpus, Duration, Microseconds};
use super::volumes::ServiceVolume;

/// One service. Fields are in alphabetical order, as `docker compose config` prints them
/// closely enough. Unset attributes are `None` or empty and are not printed.
///
/// `command` and `entrypoint` distinguish unset (`None`) from an explicit empty list
/// (`Some(vec![])`), which clears the image's own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub annotations: Mapping,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub attach: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blkio_config: Option<BlkioConfig>,
    #[serde(
        default,
        deserialize_with = "build::build",
        skip_serializing_if = "Option::is_none"
    )]
    pub build: Option<Build>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup_parent: Option<String>,
    /// Argv replacing the image's `CMD`; a string was split shell-style.
    #[serde(
        default,
        deserialize_with = "command::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub configs: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_name: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_count: Option<i64>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_percent: Option<i64>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_period: Option<i64>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_quota: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_period: Option<Microseconds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_rt_runtime: Option<Microseconds>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub cpu_shares: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpuset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_spec: Option<CredentialSpec>,
    #[serde(
        default,
        deserialize_with = "depends_on::depends_on",
        skip_serializing_if = "DependsOn::is_empty"
    )]
    pub depends_on: DependsOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<Deploy>,
    /// `docker compose watch` settings, kept as written: Composure does not act on them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub develop: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_cgroup_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceMapping>,
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns: Vec<String>,
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_opt: Vec<String>,
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dns_search: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domainname: Option<String>,
    /// Argv replacing the image's `ENTRYPOINT`; a string was split shell-style.
    #[serde(
        default,
        deserialize_with = "command::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "env_file::env_files",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env_file: Vec<EnvFile>,
    /// Variables; `None` means "take it from the environment" (`- KEY` with no value).
    #[serde(
        default,
        deserialize_with = "maps::env_mapping",
        skip_serializing_if = "EnvMapping::is_empty"
    )]
    pub environment: EnvMapping,
    #[serde(
        default,
        deserialize_with = "ports::expose",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub expose: Vec<String>,
    /// Normally resolved and removed by the loader before the model is final.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extends: Option<Extends>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_links: Vec<String>,
    /// Host names and their addresses, added to `/etc/hosts`.
    #[serde(
        default,
        deserialize_with = "maps::extra_hosts",
        serialize_with = "maps::serialize_multi_map",
        skip_serializing_if = "HostMap::is_empty"
    )]
    pub extra_hosts: HostMap,
    /// GPU requests; `gpus: all` is one request with `count: all`.
    #[serde(
        default,
        deserialize_with = "devices::gpus",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub gpus: Vec<DeviceRequest>,
    #[serde(
        default,
        deserialize_with = "flex::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub group_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub init: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub label_file: Vec<String>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_reservation: Option<Bytes>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub mem_swappiness: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memswap_limit: Option<Bytes>,
    /// Models used; `None` uses one with no options.
    #[serde(
        default,
        deserialize_with = "maps::names_or_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub models: IndexMap<String, Option<ServiceModel>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    /// Networks joined; `None` joins with no options.
    #[serde(
        default,
        deserialize_with = "maps::names_or_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub networks: IndexMap<String, Option<ServiceNetwork>>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_kill_disable: Option<bool>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub oom_score_adj: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Published ports, one entry per port once ranges are expanded.
    #[serde(
        default,
        deserialize_with = "ports::ports",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_start: Vec<ServiceHook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_start: Vec<PreStartHook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pre_stop: Vec<ServiceHook>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_refresh_after: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub read_only: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub scale: Option<u64>,
    /// Secrets granted; a target defaults to `/run/secrets/<source>`.
    #[serde(
        default,
        deserialize_with = "refs::secrets",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_opt: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Bytes>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub stdin_open: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub storage_opt: Mapping,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub sysctls: Mapping,
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub tmpfs: Vec<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub tty: Option<bool>,
    #[serde(default, skip_serializing_if = "Ulimits::is_empty")]
    pub ulimits: Ulimits,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub use_api_socket: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub userns_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uts: Option<String>,
    /// Mounts, in the long syntax.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<ServiceVolume>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

impl Service {
    /// The image this service runs: `image:`, else the name `docker compose` gives a built
    /// image (`<project>-<service>`).
    pub fn image_name(&self, project: &str, service: &str) -> String {
        self.image
            .clone()
            .unwrap_or_else(|| format!("{project}-{service}"))
    }
}

/// Where a service's log output goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub options: Mapping,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// The service this one is based on (`extends: base` is `{service: base}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Extends {
    pub service: String,
    /// The file defining it; the same file when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongExtends {
    service: String,
    #[serde(default)]
    file: Option<String>,
}

impl<'de> Deserialize<'de> for Extends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Extends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service name, or a mapping with `service` and `file`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Extends, E> {
                Ok(Extends {
                    service: v.to_string(),
                    file: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Extends, A::Error> {
                let long = LongExtends::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Extends {
                    service: long.service,
                    file: long.file,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// A Windows managed service account's credential spec.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CredentialSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A service whose lifecycle an external provider manages instead of the runtime.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Provider {
    #[serde(rename = "type")]
    pub kind: String,
    /// Provider options; a value may be repeated, so each has a list.
    #[serde(
        default,
        deserialize_with = "maps::multi_map",
        serialize_with = "maps::serialize_multi_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub options: IndexMap<String, Vec<String>>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}
