//! Lifecycle hooks: `post_start`, `pre_stop` (commands run in the service container) and
//! `pre_start` (init containers run before it starts).

use serde::{Deserialize, Serialize};

use super::command;
use super::de::{self as flex, Extensions};
use super::maps::{self, EnvMapping};

/// A command run inside the service container (`post_start`, `pre_stop`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceHook {
    #[serde(
        default,
        deserialize_with = "command::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "maps::env_mapping",
        skip_serializing_if = "EnvMapping::is_empty"
    )]
    pub environment: EnvMapping,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// An init container run to completion before the service container starts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PreStartHook {
    #[serde(
        default,
        deserialize_with = "command::command",
        skip_serializing_if = "Option::is_none"
    )]
    pub command: Option<Vec<String>>,
    #[serde(
        default,
        deserialize_with = "maps::env_mapping",
        skip_serializing_if = "EnvMapping::is_empty"
    )]
    pub environment: EnvMapping,
    /// The image to run; the service's image when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Run once per replica rather than once for the service.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub per_replica: Option<bool>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hooks_split_commands_and_read_environment_lists() {
        let hook: ServiceHook = serde_json::from_value(json!({
            "command": "./do_something.sh --now", "user": "root", "privileged": "true",
            "environment": ["FOO=BAR"],
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&hook).unwrap(),
            json!({"command": ["./do_something.sh", "--now"], "environment": {"FOO": "BAR"},
                   "privileged": true, "user": "root"})
        );
    }

    #[test]
    fn pre_start_hooks_have_image_and_per_replica() {
        let hook: PreStartHook = serde_json::from_value(json!({
            "image": "busybox", "command": "sh -c 'chown -R 1000 /data'", "per_replica": true,
        }))
        .unwrap();
        assert_eq!(hook.command.as_deref().map(<[String]>::len), Some(3));
        assert_eq!(hook.per_replica, Some(true));
        assert!(serde_json::from_value::<ServiceHook>(json!({"image": "x"})).is_err());
    }
}
