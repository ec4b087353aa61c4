//! `deploy`: replicas, resources, restart policy, rolling updates and placement.

use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions};
use super::devices::DeviceRequest;
use super::maps::{self, Mapping};
use super::units::{Bytes, Cpus, Duration};

/// How a service is deployed and kept running.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Deploy {
    /// `vip` or `dnsrr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_mode: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    /// `replicated` (the default), `global`, `replicated-job` or `global-job`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub replicas: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<RestartPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_config: Option<UpdateConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_config: Option<UpdateConfig>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Which of old and new task runs first during an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpdateOrder {
    StopFirst,
    StartFirst,
}

/// How updates (or rollbacks) roll through the replicas.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    /// `continue`, `rollback` or `pause`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_action: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_failure_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<UpdateOrder>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub parallelism: Option<u64>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Resource limits and reservations.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Resource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservations: Option<Resource>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// One side of [`Resources`]. Limits use `cpus`, `memory` and `pids`; reservations use
/// `cpus`, `memory`, `devices` and `generic_resources` (the schema keeps them apart).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<Cpus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<DeviceRequest>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub generic_resources: Vec<GenericResource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Bytes>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pids: Option<i64>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A user-defined resource a node advertises (`SSD=3`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GenericResource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discrete_resource_spec: Option<DiscreteResourceSpec>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A counted generic resource.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DiscreteResourceSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<i64>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// When and how often to restart failed tasks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RestartPolicy {
    /// `none`, `on-failure` or `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_attempts: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Duration>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Where replicas may run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_replicas_per_node: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub preferences: Vec<PlacementPreference>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Spread replicas over the values of a node label.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementPreference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spread: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn full_deploy_section_reads_text_numbers_and_units() {
        let deploy: Deploy = serde_json::from_value(json!({
            "mode": "replicated", "replicas": "6", "endpoint_mode": "vip",
            "labels": ["com.example.description=This label will appear on the web service"],
            "update_config": {"parallelism": "2", "delay": "10s", "failure_action": "rollback",
                              "monitor": "60s", "max_failure_ratio": "0.3",
                              "order": "start-first"},
            "rollback_config": {"parallelism": 0, "order": "stop-first"},
            "resources": {
                "limits": {"cpus": "0.50", "memory": "50M", "pids": 1},
                "reservations": {"cpus": 0.25, "memory": "20M",
                                 "devices": [{"capabilities": ["gpu"], "count": 1}],
                                 "generic_resources": [{"discrete_resource_spec":
                                                        {"kind": "SSD", "value": "3"}}]},
            },
            "restart_policy": {"condition": "on-failure", "delay": "5s", "max_attempts": 3,
                               "window": "120s"},
            "placement": {"constraints": ["node.role==manager"],
                          "preferences": [{"spread": "node.labels.zone"}],
                          "max_replicas_per_node": "1"},
        }))
        .unwrap();
        assert_eq!(deploy.replicas, Some(6));
        let update = deploy.update_config.as_ref().unwrap();
        assert_eq!(update.max_failure_ratio, Some(0.3));
        assert_eq!(update.order, Some(UpdateOrder::StartFirst));
        let resources = deploy.resources.as_ref().unwrap();
        let limits = resources.limits.as_ref().unwrap();
        assert_eq!(limits.cpus, Some(Cpus(0.5)));
        assert_eq!(limits.memory, Some(Bytes(50 << 20)));
        let printed = serde_json::to_value(&deploy).unwrap();
        assert_eq!(
            printed["resources"]["limits"],
            json!({"cpus": 0.5, "memory": 52_428_800,
                                                          "pids": 1})
        );
        assert_eq!(printed["restart_policy"]["window"], "2m0s");
        assert_eq!(printed["update_config"]["order"], "start-first");
        assert_eq!(
            printed["resources"]["reservations"]["generic_resources"],
            json!([{"discrete_resource_spec": {"kind": "SSD", "value": 3}}])
        );
    }

    #[test]
    fn bad_deploy_values_are_errors() {
        let err = serde_json::from_value::<Deploy>(json!({"update_config": {"order": "random"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("random"), "{err}");
        assert!(serde_json::from_value::<Deploy>(json!({"replicas": "many"})).is_err());
        assert!(serde_json::from_value::<Deploy>(json!({"replica": 1})).is_err());
    }
}
