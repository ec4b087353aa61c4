//! `depends_on`: a list of service names, or a mapping with a condition per dependency.
//! The list `[db]` means `{db: {condition: service_started, required: true}}`.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions, is_false};

/// Dependencies by service name.
pub type DependsOn = IndexMap<String, Dependency>;

/// When a dependency counts as ready.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// One dependency on another service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    /// Restart this service when the dependency is updated; printed only when true.
    #[serde(
        default,
        deserialize_with = "flex::req",
        skip_serializing_if = "is_false"
    )]
    pub restart: bool,
    /// A missing optional dependency is a warning, not an error.
    #[serde(default = "required_default", deserialize_with = "flex::req")]
    pub required: bool,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

fn required_default() -> bool {
    true
}

impl Default for Dependency {
    fn default() -> Self {
        Dependency {
            condition: Condition::ServiceStarted,
            restart: false,
            required: true,
            extensions: Extensions::new(),
        }
    }
}

/// For the `depends_on` field.
pub(crate) fn depends_on<'de, D: Deserializer<'de>>(d: D) -> Result<DependsOn, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = DependsOn;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of service names or a mapping of service names to conditions")
        }
        fn visit_unit<E: de::Error>(self) -> Result<DependsOn, E> {
            Ok(DependsOn::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
            let mut out = DependsOn::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.insert(name, Dependency::default());
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
            let mut out = DependsOn::new();
            while let Some((name, dep)) = map.next_entry::<String, Dependency>()? {
                out.insert(name, dep);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn long(input: Value) -> Value {
        serde_json::to_value(depends_on(input).unwrap()).unwrap()
    }

    #[test]
    fn list_becomes_started_and_required() {
        assert_eq!(
            long(json!(["db", "cache"])),
            json!({"db": {"condition": "service_started", "required": true},
                   "cache": {"condition": "service_started", "required": true}})
        );
    }

    #[test]
    fn long_entries_keep_values_with_defaults() {
        assert_eq!(
            long(
                json!({"db": {"condition": "service_healthy", "restart": true},
                        "init": {"condition": "service_completed_successfully",
                                 "required": "false"},
                        "bare": {"required": false}})
            ),
            json!({"db": {"condition": "service_healthy", "restart": true, "required": true},
                   "init": {"condition": "service_completed_successfully", "required": false},
                   "bare": {"condition": "service_started", "required": false}})
        );
    }

    #[test]
    fn bad_entries_are_errors() {
        let err = depends_on(json!({"db": {"condition": "service_ready"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("service_ready"), "{err}");
        assert!(depends_on(json!({"db": "yes"})).is_err());
        assert!(depends_on(json!("db")).is_err());
    }
}
