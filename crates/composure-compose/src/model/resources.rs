//! Top-level resources: networks, volumes, secrets, configs, models, and `include`.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ModelError;
use super::de::{self as flex, Extensions, Raw, Scalar};
use super::maps::{self, Mapping};
use crate::diag::YamlPath;

/// A network definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Network {
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub attachable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub driver_opts: Mapping,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ipv4: Option<bool>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub enable_ipv6: Option<bool>,
    /// Created outside the project; the project never creates nor removes it.
    #[serde(
        default,
        deserialize_with = "external",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// IP address management of a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipam {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamPool>,
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

/// One address pool of a network.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IpamPool {
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub aux_addresses: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A named volume definition.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub driver_opts: Mapping,
    #[serde(
        default,
        deserialize_with = "external",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A secret or config definition: where its content comes from. The schema lets a
/// config have `content` and a secret have `driver` and `driver_opts`; one type holds both.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FileObject {
    /// The content itself (configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub driver_opts: Mapping,
    /// The variable holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    #[serde(
        default,
        deserialize_with = "external",
        skip_serializing_if = "Option::is_none"
    )]
    pub external: Option<bool>,
    /// The file holding the content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_driver: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A top-level secret.
pub type Secret = FileObject;
/// A top-level config.
pub type Config = FileObject;

/// An AI model the project runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Model {
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub context_size: Option<u64>,
    /// The model reference (an OCI artifact).
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runtime_flags: Vec<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Another compose application to include (`include: [../db/compose.yaml]`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Include {
    pub path: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_file: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_directory: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongInclude {
    #[serde(deserialize_with = "flex::string_or_list")]
    path: Vec<String>,
    #[serde(default, deserialize_with = "flex::string_or_list")]
    env_file: Vec<String>,
    #[serde(default)]
    project_directory: Option<String>,
}

impl<'de> Deserialize<'de> for Include {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Include;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or a mapping with `path`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Include, E> {
                Ok(Include {
                    path: vec![v.to_string()],
                    ..Include::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Include, A::Error> {
                let long = LongInclude::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Include {
                    path: long.path,
                    env_file: long.env_file,
                    project_directory: long.project_directory,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// `external` is a boolean; the deprecated `external: {name: x}` means `true` (its name
/// was moved to the resource's `name` before decoding, see [`lift_external_names`]).
#[derive(Clone, Copy)]
struct External(bool);

impl<'de> Deserialize<'de> for External {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = External;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<External, E> {
                Ok(External(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<External, E> {
                bool::from_raw(Raw::Text(v))
                    .map(External)
                    .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<External, A::Error> {
                while let Some((key, _)) = map.next_entry::<String, de::IgnoredAny>()? {
                    if !key.starts_with("x-") {
                        return Err(de::Error::custom(format!(
                            "unknown attribute `{key}` in `external` (set `external: true` \
                             and the resource's `name` instead)"
                        )));
                    }
                }
                Ok(External(true))
            }
        }
        d.deserialize_any(V)
    }
}

fn external<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    Ok(Option::<External>::deserialize(d)?.map(|e| e.0))
}

/// Moves the deprecated `external: {name: x}` of networks, volumes, secrets and configs to
/// the resource's `name`, as compose-go does. Fails when both are set and differ.
pub(crate) fn lift_external_names(doc: &mut Value) -> Result<(), ModelError> {
    for section in ["networks", "volumes", "secrets", "configs"] {
        let Some(Value::Object(resources)) = doc.get_mut(section) else {
            continue;
        };
        for (key, resource) in resources.iter_mut() {
            let Value::Object(resource) = resource else {
                continue;
            };
            let Some(Value::Object(ext)) = resource.get_mut("external") else {
                continue;
            };
            let Some(legacy) = ext.remove("name") else {
                continue;
            };
            match resource.get("name") {
                Some(name) if *name != legacy => {
                    return Err(ModelError::new(
                        YamlPath::root().key(section).key(key.as_str()),
                        "`name` and the deprecated `external.name` conflict; use only `name`",
                    ));
                }
                _ => {
                    resource.insert("name".to_string(), legacy);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn network_definition() {
        let net: Network = serde_json::from_value(json!({
            "driver": "bridge", "driver_opts": {"com.docker.network.bridge.mtu": 1400},
            "attachable": "true", "internal": false, "enable_ipv6": true, "enable_ipv4": "no",
            "labels": ["a=b"], "name": "front",
            "ipam": {"driver": "default", "options": {"foo": "bar"},
                     "config": [{"subnet": "172.28.0.0/16", "ip_range": "172.28.5.0/24",
                                 "gateway": "172.28.5.254",
                                 "aux_addresses": {"host1": "172.28.1.5"}}]},
            "x-meta": {"k": 1},
        }))
        .unwrap();
        assert_eq!(net.attachable, Some(true));
        assert_eq!(net.enable_ipv4, Some(false));
        assert_eq!(net.driver_opts["com.docker.network.bridge.mtu"], "1400");
        assert_eq!(
            net.ipam.as_ref().unwrap().config[0].aux_addresses["host1"],
            "172.28.1.5"
        );
        assert_eq!(net.extensions["x-meta"], json!({"k": 1}));
    }

    #[test]
    fn external_reads_booleans_text_and_the_legacy_mapping() {
        let v: Volume = serde_json::from_value(json!({"external": "true"})).unwrap();
        assert_eq!(v.external, Some(true));
        let v: Volume = serde_json::from_value(json!({"external": {}})).unwrap();
        assert_eq!(v.external, Some(true));
        assert!(serde_json::from_value::<Volume>(json!({"external": "maybe"})).is_err());
    }

    #[test]
    fn legacy_external_name_moves_to_name() {
        let mut doc = json!({"networks": {"n": {"external": {"name": "real"}}},
                             "volumes": {"v": {"external": {"name": "x"}, "name": "x"}}});
        lift_external_names(&mut doc).unwrap();
        assert_eq!(
            doc["networks"]["n"],
            json!({"external": {}, "name": "real"})
        );
        let mut conflict = json!({"secrets": {"s": {"external": {"name": "a"}, "name": "b"}}});
        let err = lift_external_names(&mut conflict).unwrap_err();
        assert_eq!(err.path, "secrets.s");
        assert!(err.message.contains("conflict"), "{err}");
    }

    #[test]
    fn secrets_configs_and_models() {
        let s: Secret = serde_json::from_value(json!({"file": "./server.cert"})).unwrap();
        assert_eq!(s.file.as_deref(), Some("./server.cert"));
        let c: Config =
            serde_json::from_value(json!({"content": "hello", "labels": {"a": 1}})).unwrap();
        assert_eq!(c.labels["a"], "1");
        let m: Model =
            serde_json::from_value(json!({"model": "ai/smollm2", "context_size": "1024"})).unwrap();
        assert_eq!(m.context_size, Some(1024));
        assert!(serde_json::from_value::<Model>(json!({"name": "x"})).is_err());
    }

    #[test]
    fn include_short_and_long() {
        let i: Include = serde_json::from_value(json!("../db/compose.yaml")).unwrap();
        assert_eq!(i.path, vec!["../db/compose.yaml"]);
        let i: Include = serde_json::from_value(json!({"path": ["a.yaml", "b.yaml"],
                                                       "env_file": "x.env",
                                                       "project_directory": ".."}))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&i).unwrap(),
            json!({"path": ["a.yaml", "b.yaml"], "env_file": ["x.env"], "project_directory": ".."})
        );
        assert!(serde_json::from_value::<Include>(json!({"path": "a", "x-b": 1})).is_err());
    }
}
