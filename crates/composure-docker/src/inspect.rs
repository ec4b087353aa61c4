//! What the engine says about a container, in the runtime's terms.
//!
//! `list` inspects each managed container rather than reading the list's summaries: only
//! inspect gives the exit code, `OOMKilled`, the health status (API 1.41 summaries have
//! none) and the start and finish times.

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, HealthStatusEnum};
use composure_core::Health;
use composure_runtime::{ContainerInfo, ContainerStatus};
use indexmap::IndexMap;

/// Maps an inspect answer; `None` when it lacks an id (never seen from a real engine).
pub(crate) fn container_info(resp: ContainerInspectResponse) -> Option<ContainerInfo> {
    let id = resp.id?;
    let config = resp.config.unwrap_or_default();
    let state = resp.state.unwrap_or_default();
    let mut labels: IndexMap<String, String> =
        config.labels.unwrap_or_default().into_iter().collect();
    labels.sort_keys();
    let status = match state.status.unwrap_or(ContainerStateStatusEnum::EMPTY) {
        ContainerStateStatusEnum::CREATED | ContainerStateStatusEnum::EMPTY => {
            ContainerStatus::Created
        }
        ContainerStateStatusEnum::RUNNING | ContainerStateStatusEnum::STOPPING => {
            ContainerStatus::Running
        }
        ContainerStateStatusEnum::PAUSED => ContainerStatus::Paused,
        ContainerStateStatusEnum::RESTARTING => ContainerStatus::Restarting,
        ContainerStateStatusEnum::REMOVING => ContainerStatus::Removing,
        ContainerStateStatusEnum::EXITED => ContainerStatus::Exited {
            code: state.exit_code.unwrap_or(0),
            oom_killed: state.oom_killed.unwrap_or(false),
        },
        ContainerStateStatusEnum::DEAD => ContainerStatus::Dead,
    };
    let health = match state.health.and_then(|h| h.status) {
        Some(HealthStatusEnum::STARTING) => Health::Starting,
        Some(HealthStatusEnum::HEALTHY) => Health::Healthy,
        Some(HealthStatusEnum::UNHEALTHY) => Health::Unhealthy,
        Some(HealthStatusEnum::NONE | HealthStatusEnum::EMPTY) | None => Health::None,
    };
    let mut addresses = IndexMap::new();
    let networks = resp
        .network_settings
        .and_then(|n| n.networks)
        .unwrap_or_default();
    for (network, endpoint) in networks {
        let ip = [endpoint.ip_address, endpoint.global_ipv6_address]
            .into_iter()
            .flatten()
            .find(|ip| !ip.is_empty());
        if let Some(ip) = ip {
            addresses.insert(network, ip);
        }
    }
    addresses.sort_keys();
    Some(ContainerInfo {
        id,
        name: resp
            .name
            .map(|n| n.trim_start_matches('/').to_string())
            .unwrap_or_default(),
        image: config.image.or(resp.image).unwrap_or_default(),
        labels,
        status,
        health,
        started_at: state.started_at.as_deref().and_then(epoch_ms),
        finished_at: state.finished_at.as_deref().and_then(epoch_ms),
        addresses,
    })
}

/// RFC 3339 (the engine's `2024-05-01T10:00:00.123456789Z`) → milliseconds since the epoch.
/// The engine's "never" (`0001-01-01T00:00:00Z`) and anything unreadable are `None`.
pub(crate) fn epoch_ms(text: &str) -> Option<u64> {
    let time = humantime::parse_rfc3339_weak(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok().filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, EndpointSettings, NetworkSettings};
    use std::collections::HashMap;

    #[test]
    fn timestamps_become_epoch_milliseconds() {
        assert_eq!(epoch_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            epoch_ms("2024-05-01T10:00:00.123456789Z"),
            Some(1_714_557_600_123)
        );
        assert_eq!(epoch_ms("0001-01-01T00:00:00Z"), None);
        assert_eq!(epoch_ms(""), None);
    }

    fn response(status: ContainerStateStatusEnum) -> ContainerInspectResponse {
        ContainerInspectResponse {
            id: Some("abc".into()),
            name: Some("/p-web-1".into()),
            image: Some("sha256:123".into()),
            config: Some(ContainerConfig {
                image: Some("composure-test:latest".into()),
                labels: Some(HashMap::from([
                    ("b".into(), "2".into()),
                    ("a".into(), "1".into()),
                ])),
                ..ContainerConfig::default()
            }),
            state: Some(ContainerState {
                status: Some(status),
                exit_code: Some(137),
                oom_killed: Some(true),
                started_at: Some("2024-05-01T10:00:00Z".into()),
                finished_at: Some("0001-01-01T00:00:00Z".into()),
                health: Some(bollard::models::Health {
                    status: Some(HealthStatusEnum::UNHEALTHY),
                    ..Default::default()
                }),
                ..ContainerState::default()
            }),
            network_settings: Some(NetworkSettings {
                networks: Some(HashMap::from([
                    (
                        "p_default".into(),
                        EndpointSettings {
                            ip_address: Some("172.20.0.2".into()),
                            ..Default::default()
                        },
                    ),
                    (
                        "p_v6".into(),
                        EndpointSettings {
                            ip_address: Some(String::new()),
                            global_ipv6_address: Some("fd00::2".into()),
                            ..Default::default()
                        },
                    ),
                ])),
                ..NetworkSettings::default()
            }),
            ..ContainerInspectResponse::default()
        }
    }

    #[test]
    fn exited_state_keeps_code_oom_and_health() {
        let info = container_info(response(ContainerStateStatusEnum::EXITED)).unwrap();
        assert_eq!(info.id, "abc");
        assert_eq!(info.name, "p-web-1");
        assert_eq!(info.image, "composure-test:latest");
        assert_eq!(
            info.status,
            ContainerStatus::Exited {
                code: 137,
                oom_killed: true
            }
        );
        assert_eq!(info.health, Health::Unhealthy);
        assert_eq!(info.started_at, Some(1_714_557_600_000));
        assert_eq!(info.finished_at, None);
        assert_eq!(info.labels.keys().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(info.addresses["p_default"], "172.20.0.2");
        assert_eq!(info.addresses["p_v6"], "fd00::2");
    }

    #[test]
    fn running_and_other_states() {
        let status = |s| container_info(response(s)).unwrap().status;
        assert_eq!(
            status(ContainerStateStatusEnum::RUNNING),
            ContainerStatus::Running
        );
        assert_eq!(
            status(ContainerStateStatusEnum::CREATED),
            ContainerStatus::Created
        );
        assert_eq!(
            status(ContainerStateStatusEnum::DEAD),
            ContainerStatus::Dead
        );
        assert_eq!(
            status(ContainerStateStatusEnum::PAUSED),
            ContainerStatus::Paused
        );
    }
}
