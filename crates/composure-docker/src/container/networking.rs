//! Networks, namespaces shared with other containers, ports, host entries and links.

use std::collections::HashMap;

use bollard::models::{EndpointIpamConfig, EndpointSettings, PortBinding, PortMap};
use composure_compose::model::{Service, ServiceNetwork, parse_expose};
use composure_core::labels;
use composure_runtime::RuntimeError;

use super::{CreateInput, Peer, invalid, map, non_empty, unsupported};

#[derive(Debug, Default)]
pub(super) struct NetPlan {
    pub network_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub pid_mode: Option<String>,
    pub exposed_ports: Option<Vec<String>>,
    pub port_bindings: Option<PortMap>,
    pub extra_hosts: Option<Vec<String>>,
    /// Links for the default bridge network, where they live in the host config.
    pub host_links: Option<Vec<String>>,
    pub volumes_from: Option<Vec<String>>,
    /// The network joined at create, by engine name.
    pub first: Option<(String, EndpointSettings)>,
    pub connect_after: Vec<(String, EndpointSettings)>,
}

pub(super) fn plan(input: &CreateInput<'_>) -> Result<NetPlan, RuntimeError> {
    let svc = input.service;
    let name = input.service_name;
    if svc.network_mode.is_some() && !svc.networks.is_empty() {
        return Err(invalid(
            name,
            "`network_mode` and `networks` cannot both be set",
        ));
    }
    let links = links(input)?;
    let on_bridge = matches!(svc.network_mode.as_deref(), Some("bridge" | "default"));
    let mut plan = NetPlan {
        network_mode: shared_namespace(input, "network_mode", svc.network_mode.as_deref())?,
        ipc_mode: shared_namespace(input, "ipc", svc.ipc.as_deref())?,
        pid_mode: shared_namespace(input, "pid", svc.pid.as_deref())?,
        exposed_ports: exposed_ports(svc),
        port_bindings: port_bindings(svc),
        extra_hosts: extra_hosts(svc),
        host_links: if on_bridge { non_empty(&links) } else { None },
        volumes_from: volumes_from(input)?,
        ..NetPlan::default()
    };
    let endpoint_links = if on_bridge { Vec::new() } else { links };

    let mut networks: Vec<(&String, Option<&ServiceNetwork>)> = svc
        .networks
        .iter()
        .map(|(key, def)| (key, def.as_ref()))
        .collect();
    // Highest priority first; the sort is stable, so ties keep the file's order.
    networks.sort_by_key(|(_, def)| std::cmp::Reverse(def.and_then(|d| d.priority).unwrap_or(0)));
    for (key, def) in networks {
        let network = input
            .project
            .networks
            .get(key)
            .and_then(|n| n.name.clone())
            .ok_or_else(|| invalid(name, format!("network `{key}` is not declared")))?;
        let endpoint = endpoint(input, key, def, &endpoint_links)?;
        if plan.first.is_none() {
            plan.network_mode = Some(network.clone());
            plan.first = Some((network, endpoint));
        } else {
            plan.connect_after.push((network, endpoint));
        }
    }
    Ok(plan)
}

fn endpoint(
    input: &CreateInput<'_>,
    key: &str,
    def: Option<&ServiceNetwork>,
    links: &[String],
) -> Result<EndpointSettings, RuntimeError> {
    let name = input.service_name;
    // A service whose name a VIP holds (the daemon's `<service>.vip`) leaves it to the VIP:
    // the replicas answer to their container name only.
    let fronted = input.service.labels.contains_key(labels::FRONTED_BY);
    let mut aliases = if fronted {
        Vec::new()
    } else {
        vec![input.service_name.to_string()]
    };
    let mut endpoint = EndpointSettings::default();
    if let Some(def) = def {
        for (field, set) in [
            ("mac_address", def.mac_address.is_some()),
            ("gw_priority", def.gw_priority.is_some()),
            ("interface_name", def.interface_name.is_some()),
        ] {
            if set {
                return Err(unsupported(name, &format!("networks.{key}.{field}")));
            }
        }
        if !fronted {
            aliases.extend(def.aliases.iter().cloned());
        }
        let has_ipam = def.ipv4_address.is_some()
            || def.ipv6_address.is_some()
            || !def.link_local_ips.is_empty();
        endpoint.ipam_config = has_ipam.then(|| EndpointIpamConfig {
            ipv4_address: def.ipv4_address.clone(),
            ipv6_address: def.ipv6_address.clone(),
            link_local_ips: non_empty(&def.link_local_ips),
        });
        endpoint.driver_opts = map(&def.driver_opts);
    }
    aliases.push(input.container_name.to_string());
    let mut unique: Vec<String> = Vec::new();
    for alias in aliases {
        if !unique.contains(&alias) {
            unique.push(alias);
        }
    }
    endpoint.aliases = Some(unique);
    endpoint.links = non_empty(links);
    Ok(endpoint)
}

/// `service:x` → `container:<id of x>`; anything else (`host`, `none`, `container:name`,
/// `shareable`, a network name) as written.
fn shared_namespace(
    input: &CreateInput<'_>,
    field: &str,
    mode: Option<&str>,
) -> Result<Option<String>, RuntimeError> {
    let Some(mode) = mode else { return Ok(None) };
    match mode.strip_prefix("service:") {
        Some(target) => Ok(Some(format!(
            "container:{}",
            peer(input, field, target)?.id
        ))),
        None => Ok(Some(mode.to_string())),
    }
}

/// The running container of `target`; none is a transient condition (it is starting).
fn peer<'a>(input: &CreateInput<'a>, field: &str, target: &str) -> Result<&'a Peer, RuntimeError> {
    input.peers.get(target).ok_or_else(|| {
        RuntimeError::Conflict(format!(
            "service `{}`: `{field}` needs a running container of service `{target}`; none is \
             running yet",
            input.service_name
        ))
    })
}

/// `links: [db, "db:database"]` → `<container of db>:db`, `<container of db>:database`;
/// `external_links` name containers directly.
fn links(input: &CreateInput<'_>) -> Result<Vec<String>, RuntimeError> {
    let mut out = Vec::new();
    for link in &input.service.links {
        let (target, alias) = link.split_once(':').unwrap_or((link, link));
        out.push(format!("{}:{alias}", peer(input, "links", target)?.name));
    }
    for link in &input.service.external_links {
        let (container, alias) = link.split_once(':').unwrap_or((link, link));
        out.push(format!("{container}:{alias}"));
    }
    Ok(out)
}

/// `volumes_from: [db, "db:ro", "container:c:rw"]` → container names with their modes.
fn volumes_from(input: &CreateInput<'_>) -> Result<Option<Vec<String>>, RuntimeError> {
    let mut out = Vec::new();
    for from in &input.service.volumes_from {
        let entry = match from.strip_prefix("container:") {
            Some(container) => container.to_string(),
            None => {
                let (target, mode) = match from.split_once(':') {
                    Some((t, m)) => (t, Some(m)),
                    None => (from.as_str(), None),
                };
                let name = &peer(input, "volumes_from", target)?.name;
                match mode {
                    Some(mode) => format!("{name}:{mode}"),
                    None => name.clone(),
                }
            }
        };
        out.push(entry);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// `ports` and `expose`, as `80/tcp` keys; ranges in `expose` are expanded.
fn exposed_ports(svc: &Service) -> Option<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |key: String| {
        if !out.contains(&key) {
            out.push(key);
        }
    };
    for port in &svc.ports {
        add(format!("{}/{}", port.target, port.protocol));
    }
    for item in &svc.expose {
        match parse_expose(item) {
            Some(exposed) => {
                let proto = exposed.protocol.to_ascii_lowercase();
                exposed.ports().for_each(|p| add(format!("{p}/{proto}")));
            }
            // The loader checked the syntax; keep anything else as written.
            None => {
                let (ports, proto) = item.split_once('/').unwrap_or((item, "tcp"));
                add(format!("{ports}/{}", proto.to_ascii_lowercase()));
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Every `ports` entry is published; no `published` means a port the engine picks.
fn port_bindings(svc: &Service) -> Option<PortMap> {
    let mut out: PortMap = HashMap::new();
    for port in &svc.ports {
        let binding = PortBinding {
            host_ip: port.host_ip.clone(),
            host_port: Some(port.published.clone().unwrap_or_default()),
        };
        out.entry(format!("{}/{}", port.target, port.protocol))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(binding);
    }
    (!out.is_empty()).then_some(out)
}

fn extra_hosts(svc: &Service) -> Option<Vec<String>> {
    let out: Vec<String> = svc
        .extra_hosts
        .iter()
        .flat_map(|(host, ips)| ips.iter().map(move |ip| format!("{host}:{ip}")))
        .collect();
    (!out.is_empty()).then_some(out)
}
