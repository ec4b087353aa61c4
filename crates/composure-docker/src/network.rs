//! Project networks: created on demand with Composure's and compose's labels, removed only
//! when Composure created them.
//!
//! The engine (before API 1.44) happily creates two networks with the same name, after
//! which neither can be named; creation is therefore serialised in this process and
//! preceded by a look-up.

use std::collections::HashMap;

use bollard::Docker;
use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest};
use composure_compose::model::{self, Project};
use composure_core::labels;
use composure_runtime::RuntimeError;
use tokio::sync::Mutex;

use crate::error::{from_bollard, is_not_found};
use crate::project_name;

/// Label naming the compose key of a network (`com.docker.compose.network`).
pub const COMPOSE_NETWORK: &str = "com.docker.compose.network";

pub(crate) async fn ensure(
    docker: &Docker,
    create_lock: &Mutex<()>,
    project: &Project,
    key: &str,
) -> Result<(), RuntimeError> {
    let project_name = project_name(project)?;
    let def = project.networks.get(key).ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("network `{key}` is not declared in the project"))
    })?;
    let name = def
        .name
        .clone()
        .unwrap_or_else(|| format!("{project_name}_{key}"));
    let _guard = create_lock.lock().await;
    if exists(docker, &name).await? {
        return Ok(());
    }
    if def.external == Some(true) {
        return Err(RuntimeError::InvalidSpec(format!(
            "network `{name}` is declared external but does not exist; create it first \
             (`docker network create {name}`)"
        )));
    }
    docker
        .create_network(create_request(project_name, key, &name, def))
        .await
        .map_err(|e| from_bollard(e, &format!("network `{name}`")))?;
    Ok(())
}

/// Removes a network Composure created; one that is missing, or not Composure's, is left
/// alone. A network still in use is a `Conflict`.
pub(crate) async fn remove(docker: &Docker, name: &str) -> Result<(), RuntimeError> {
    let what = format!("network `{name}`");
    let network = match docker.inspect_network(name, None).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(from_bollard(e, &what)),
    };
    let managed = network
        .labels
        .as_ref()
        .is_some_and(|l| l.contains_key(labels::MANAGED));
    if !managed {
        return Ok(());
    }
    let id = network.id.unwrap_or_else(|| name.to_string());
    match docker.remove_network(&id).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(from_bollard(e, &what)),
    }
}

async fn exists(docker: &Docker, name: &str) -> Result<bool, RuntimeError> {
    match docker.inspect_network(name, None).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(from_bollard(e, &format!("network `{name}`"))),
    }
}

/// The create request for a project network. Pure.
pub(crate) fn create_request(
    project: &str,
    key: &str,
    name: &str,
    def: &model::Network,
) -> NetworkCreateRequest {
    let mut labels_map: HashMap<String, String> = def.labels.clone().into_iter().collect();
    labels_map.insert(labels::MANAGED.to_string(), "true".to_string());
    labels_map.insert(labels::PROJECT.to_string(), project.to_string());
    labels_map.insert(labels::COMPOSE_PROJECT.to_string(), project.to_string());
    labels_map.insert(COMPOSE_NETWORK.to_string(), key.to_string());
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some(def.driver.clone().unwrap_or_else(|| "bridge".to_string())),
        internal: def.internal,
        attachable: def.attachable,
        enable_ipv4: def.enable_ipv4,
        enable_ipv6: def.enable_ipv6,
        options: crate::container::map(&def.driver_opts),
        labels: Some(labels_map),
        ipam: def.ipam.as_ref().map(|ipam| Ipam {
            driver: ipam.driver.clone(),
            config: Some(
                ipam.config
                    .iter()
                    .map(|pool| IpamConfig {
                        subnet: pool.subnet.clone(),
                        ip_range: pool.ip_range.clone(),
                        gateway: pool.gateway.clone(),
                        auxiliary_addresses: crate::container::map(&pool.aux_addresses),
                    })
                    .collect(),
            ),
            options: crate::container::map(&ipam.options),
        }),
        ..NetworkCreateRequest::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use composure_compose::model::{IpamPool, Network as NetworkDef};

    #[test]
    fn create_request_carries_labels_driver_and_ipam() {
        let def = NetworkDef {
            driver_opts: [(
                "com.docker.network.bridge.mtu".to_string(),
                "1400".to_string(),
            )]
            .into_iter()
            .collect(),
            internal: Some(true),
            labels: [("team".to_string(), "a".to_string())]
                .into_iter()
                .collect(),
            ipam: Some(model::Ipam {
                config: vec![IpamPool {
                    subnet: Some("172.28.0.0/16".into()),
                    ..IpamPool::default()
                }],
                ..model::Ipam::default()
            }),
            ..NetworkDef::default()
        };
        let req = create_request("p", "front", "p_front", &def);
        assert_eq!(req.name, "p_front");
        assert_eq!(req.driver.as_deref(), Some("bridge"));
        assert_eq!(req.internal, Some(true));
        let l = req.labels.unwrap();
        assert_eq!(l[labels::MANAGED], "true");
        assert_eq!(l[labels::COMPOSE_PROJECT], "p");
        assert_eq!(l[COMPOSE_NETWORK], "front");
        assert_eq!(l["team"], "a");
        assert_eq!(
            req.options.unwrap()["com.docker.network.bridge.mtu"],
            "1400"
        );
        let ipam = req.ipam.unwrap();
        assert_eq!(
            ipam.config.unwrap()[0].subnet.as_deref(),
            Some("172.28.0.0/16")
        );
    }
}
