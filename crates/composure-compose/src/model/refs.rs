//! A service's references to top-level resources: networks, secrets, configs and models.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions};
use super::maps::{self, Mapping};
use super::units::FileMode;

/// How a service joins one network. `networks: [front]` joins with no options (`null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceNetwork {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(
        default,
        deserialize_with = "maps::dict",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub driver_opts: Mapping,
    /// Which network provides the default gateway; highest wins.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub gw_priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv4_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub link_local_ips: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    /// The order in which networks are connected; highest first.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub priority: Option<i64>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// How a service uses one model. `models: [llm]` uses it with no options (`null`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ServiceModel {
    /// The variable that receives the model's endpoint URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_var: Option<String>,
    /// The variable that receives the model's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_var: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// A secret or config granted to a service (`secrets: [token]` is `{source: token}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FileRef {
    pub source: String,
    /// Where the file appears in the container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Deserialize)]
struct LongFileRef {
    source: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    uid: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    gid: Option<String>,
    #[serde(default)]
    mode: Option<FileMode>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    extensions: Extensions,
}

impl<'de> Deserialize<'de> for FileRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name, or a mapping with `source`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileRef, E> {
                Ok(FileRef {
                    source: v.to_string(),
                    ..FileRef::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileRef, A::Error> {
                let long = LongFileRef::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(FileRef {
                    source: long.source,
                    target: long.target,
                    uid: long.uid,
                    gid: long.gid,
                    mode: long.mode,
                    extensions: long.extensions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// For a service's `secrets`: a secret without a target is mounted at
/// `/run/secrets/<source>`, which compose-go writes into the model.
pub(crate) fn secrets<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<FileRef>, D::Error> {
    let mut refs = Option::<Vec<FileRef>>::deserialize(d)?.unwrap_or_default();
    for r in &mut refs {
        if r.target.is_none() {
            r.target = Some(format!("/run/secrets/{}", r.source));
        }
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_short_syntax_gets_source_and_default_target() {
        let refs = secrets(
            json!(["token", {"source": "key", "target": "/k", "mode": "440",
                                              "uid": 103, "gid": "103", "x-a": 1}]),
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&refs).unwrap(),
            json!([
                {"source": "token", "target": "/run/secrets/token"},
                {"source": "key", "target": "/k", "uid": "103", "gid": "103",
                 "mode": "0440", "x-a": 1},
            ])
        );
    }

    #[test]
    fn config_short_syntax_is_just_the_source() {
        let refs: Vec<FileRef> = serde_json::from_value(json!(["site"])).unwrap();
        assert_eq!(
            serde_json::to_value(&refs).unwrap(),
            json!([{"source": "site"}])
        );
        let err = serde_json::from_value::<Vec<FileRef>>(json!([{"target": "/x"}]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn service_network_long_syntax() {
        let net: ServiceNetwork = serde_json::from_value(json!({
            "aliases": ["db"], "ipv4_address": "172.16.238.10", "priority": "100",
            "gw_priority": 1, "driver_opts": {"com.docker.network.bridge.mtu": 1400},
            "link_local_ips": ["169.254.1.1"], "mac_address": "02:42:ac:11:00:02",
            "interface_name": "eth1", "ipv6_address": "2001:3984:3989::10",
        }))
        .unwrap();
        assert_eq!(net.priority, Some(100));
        assert_eq!(net.driver_opts["com.docker.network.bridge.mtu"], "1400");
        let err = serde_json::from_value::<ServiceNetwork>(json!({"alias": ["db"]}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`alias`"), "{err}");
    }
}
