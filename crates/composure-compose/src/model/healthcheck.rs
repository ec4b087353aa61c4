//! `healthcheck`: how the runtime decides a container is healthy.

use serde::{Deserialize, Serialize};

use super::command;
use super::de::{self as flex, Extensions};
use super::units::Duration;

/// A container health check. A string `test` is a shell command (`["CMD-SHELL", ...]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// Turns off any check the image defines.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub disable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub retries: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(
        default,
        deserialize_with = "command::health_test",
        skip_serializing_if = "Option::is_none"
    )]
    pub test: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_test_and_durations() {
        let hc: Healthcheck = serde_json::from_value(json!({
            "test": "curl -f http://localhost", "interval": "1m30s", "timeout": "10s",
            "retries": "3", "start_period": "40s", "start_interval": "5s",
        }))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&hc).unwrap(),
            json!({"interval": "1m30s", "retries": 3, "start_interval": "5s",
                   "start_period": "40s", "test": ["CMD-SHELL", "curl -f http://localhost"],
                   "timeout": "10s"})
        );
    }

    #[test]
    fn disable_and_list_tests() {
        let hc: Healthcheck = serde_json::from_value(json!({"disable": "true"})).unwrap();
        assert_eq!(hc.disable, Some(true));
        let hc: Healthcheck =
            serde_json::from_value(json!({"test": ["CMD", "pg_isready"]})).unwrap();
        assert_eq!(hc.test, Some(vec!["CMD".into(), "pg_isready".into()]));
    }

    #[test]
    fn bad_durations_are_errors() {
        let err = serde_json::from_value::<Healthcheck>(json!({"interval": "soon"}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`soon`"), "{err}");
    }
}
