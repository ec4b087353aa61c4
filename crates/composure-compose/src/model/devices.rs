//! Devices: host device mappings (`devices`) and device requests (`gpus`,
//! `deploy.resources.reservations.devices`).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::de::{self as flex, Extensions, Raw, Scalar, mismatch};
use super::maps::{self, Mapping};

/// A host device made available in the container (`/dev/ttyUSB0:/dev/ttyUSB0:rwm`).
/// A CDI name (`vendor.com/device=gpu`) is a source with no separate target.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceMapping {
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Cgroup permissions, `rwm` by default in the short syntax.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Deserialize)]
struct LongDeviceMapping {
    source: String,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    permissions: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    extensions: Extensions,
}

/// Parses `HOST[:CONTAINER[:PERMISSIONS]]`.
pub fn parse_device(spec: &str) -> Result<DeviceMapping, String> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, permissions) = match parts.as_slice() {
        [source] => (*source, *source, "rwm"),
        [source, target] => (*source, *target, "rwm"),
        [source, target, permissions] => (*source, *target, *permissions),
        _ => {
            return Err(format!(
                "confusing device mapping `{spec}`: use the long syntax with source and target"
            ));
        }
    };
    if source.is_empty() {
        return Err(format!("device mapping `{spec}` has no host device"));
    }
    Ok(DeviceMapping {
        source: source.to_string(),
        target: Some(if target.is_empty() { source } else { target }.to_string()),
        permissions: Some(permissions.to_string()),
        extensions: Extensions::new(),
    })
}

impl<'de> Deserialize<'de> for DeviceMapping {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DeviceMapping;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a device as `HOST:CONTAINER[:PERMISSIONS]` or a mapping")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DeviceMapping, E> {
                parse_device(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DeviceMapping, A::Error> {
                let long =
                    LongDeviceMapping::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(DeviceMapping {
                    source: long.source,
                    target: long.target,
                    permissions: long.permissions,
                    extensions: long.extensions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// How many devices a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceCount {
    /// Every matching device (`count: all`).
    All,
    Count(u64),
}

impl Scalar for DeviceCount {
    const EXPECTING: &'static str = "`all` or a number of devices";
    fn from_raw(raw: Raw<'_>) -> Result<Self, String> {
        match raw {
            Raw::Text(s) if s.eq_ignore_ascii_case("all") => Ok(DeviceCount::All),
            // compose-go stores `all` as -1 and accepts it back.
            Raw::Int(-1) => Ok(DeviceCount::All),
            Raw::Text("-1") => Ok(DeviceCount::All),
            _ => u64::from_raw(raw)
                .map(DeviceCount::Count)
                .map_err(|_| mismatch::<Self>(raw)),
        }
    }
}

impl Serialize for DeviceCount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            DeviceCount::All => s.serialize_str("all"),
            DeviceCount::Count(n) => s.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for DeviceCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        flex::scalar(d)
    }
}

/// A request for devices from a driver (GPUs, mostly).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DeviceRequest {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// Set when `device_ids` is not: a request naming neither asks for all devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<DeviceCount>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub device_ids: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    #[serde(skip_serializing_if = "Mapping::is_empty")]
    pub options: Mapping,
    #[serde(flatten)]
    pub extensions: Extensions,
}

#[derive(Deserialize)]
struct LongDeviceRequest {
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default)]
    count: Option<DeviceCount>,
    #[serde(default)]
    device_ids: Vec<String>,
    #[serde(default)]
    driver: Option<String>,
    #[serde(default, deserialize_with = "maps::mapping")]
    options: Mapping,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    extensions: Extensions,
}

impl<'de> Deserialize<'de> for DeviceRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let long = LongDeviceRequest::deserialize(d)?;
        let count = match (long.count, long.device_ids.is_empty()) {
            (Some(_), false) => {
                return Err(de::Error::custom(
                    "`count` and `device_ids` cannot both be set",
                ));
            }
            (None, true) => Some(DeviceCount::All),
            (count, _) => count,
        };
        Ok(DeviceRequest {
            capabilities: long.capabilities,
            count,
            device_ids: long.device_ids,
            driver: long.driver,
            options: long.options,
            extensions: long.extensions,
        })
    }
}

/// For `gpus`: `all`, or a list of device requests.
pub(crate) fn gpus<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<DeviceRequest>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<DeviceRequest>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("`all` or a list of device requests")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            if v.eq_ignore_ascii_case("all") {
                Ok(vec![DeviceRequest {
                    count: Some(DeviceCount::All),
                    ..DeviceRequest::default()
                }])
            } else {
                Err(E::custom(format!(
                    "gpus must be `all` or a list, found `{v}`"
                )))
            }
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(req) = seq.next_element()? {
                out.push(req);
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

    fn device(input: Value) -> Result<Value, String> {
        serde_json::from_value::<DeviceMapping>(input)
            .map(|d| serde_json::to_value(d).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn device_short_syntax() {
        assert_eq!(
            device(json!("/dev/sda:/dev/xvda:rwm")),
            Ok(json!({"source": "/dev/sda", "target": "/dev/xvda", "permissions": "rwm"}))
        );
        assert_eq!(
            device(json!("/dev/ttyUSB0:/dev/ttyUSB1")),
            Ok(json!({"source": "/dev/ttyUSB0", "target": "/dev/ttyUSB1", "permissions": "rwm"}))
        );
        assert_eq!(
            device(json!("vendor1.com/device=gpu")),
            Ok(
                json!({"source": "vendor1.com/device=gpu", "target": "vendor1.com/device=gpu",
                      "permissions": "rwm"})
            )
        );
        assert_eq!(
            device(json!({"source": "/dev/a", "permissions": "r"})),
            Ok(json!({"source": "/dev/a", "permissions": "r"}))
        );
        assert!(device(json!("a:b:c:d")).unwrap_err().contains("`a:b:c:d`"));
    }

    #[test]
    fn gpus_all_is_one_request_for_every_device() {
        let reqs = gpus(json!("all")).unwrap();
        assert_eq!(
            serde_json::to_value(&reqs).unwrap(),
            json!([{"count": "all"}])
        );
        assert!(gpus(json!("some")).is_err());
    }

    #[test]
    fn device_requests_default_to_all_devices() {
        let reqs = gpus(json!([
            {"driver": "nvidia", "capabilities": ["gpu"]},
            {"driver": "3dfx", "count": "2"},
            {"device_ids": ["0", "3"], "options": ["a=b"]},
            {"count": -1},
        ]))
        .unwrap();
        assert_eq!(
            serde_json::to_value(&reqs).unwrap(),
            json!([
                {"capabilities": ["gpu"], "count": "all", "driver": "nvidia"},
                {"count": 2, "driver": "3dfx"},
                {"device_ids": ["0", "3"], "options": {"a": "b"}},
                {"count": "all"},
            ])
        );
        let err = gpus(json!([{"count": 1, "device_ids": ["0"]}]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cannot both"), "{err}");
        assert!(gpus(json!([{"count": "many"}])).is_err());
    }
}
