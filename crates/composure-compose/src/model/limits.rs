//! Kernel limits on a container: `ulimits` and `blkio_config`.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions, Raw};
use super::units::Bytes;

/// Ulimits by name (`nofile`, `nproc`, ...).
pub type Ulimits = IndexMap<String, Ulimit>;

/// One ulimit: a single value for both limits (`nproc: 65535`), or soft and hard limits.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Ulimit {
    Single(i64),
    Range {
        soft: i64,
        hard: i64,
        #[serde(flatten)]
        extensions: Extensions,
    },
}

impl Ulimit {
    pub fn soft(&self) -> i64 {
        match self {
            Ulimit::Single(v) => *v,
            Ulimit::Range { soft, .. } => *soft,
        }
    }

    pub fn hard(&self) -> i64 {
        match self {
            Ulimit::Single(v) => *v,
            Ulimit::Range { hard, .. } => *hard,
        }
    }
}

#[derive(Deserialize)]
struct UlimitRange {
    #[serde(deserialize_with = "flex::req")]
    soft: i64,
    #[serde(deserialize_with = "flex::req")]
    hard: i64,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    extensions: Extensions,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl V {
            fn single<E: de::Error>(raw: Raw<'_>) -> Result<Ulimit, E> {
                <i64 as flex::Scalar>::from_raw(raw)
                    .map(Ulimit::Single)
                    .map_err(E::custom)
            }
        }
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a limit as an integer or a mapping with `soft` and `hard`")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ulimit, E> {
                Ok(Ulimit::Single(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ulimit, E> {
                Self::single(Raw::UInt(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ulimit, E> {
                Self::single(Raw::Text(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let r = UlimitRange::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit::Range {
                    soft: r.soft,
                    hard: r.hard,
                    extensions: r.extensions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Block IO limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlkioConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_read_iops: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_bps: Vec<ThrottleDevice>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_write_iops: Vec<ThrottleDevice>,
    /// Relative weight, 10 to 1000.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weight_device: Vec<WeightDevice>,
}

/// A rate limit on one device: bytes per second (`1mb`) or operations per second.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThrottleDevice {
    pub path: String,
    pub rate: Bytes,
}

/// A relative weight for one device.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightDevice {
    pub path: String,
    #[serde(deserialize_with = "flex::req")]
    pub weight: u16,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ulimits_single_value_or_soft_and_hard() {
        let u: Ulimits = serde_json::from_value(json!({"nproc": 65535, "core": "0",
                                          "nofile": {"soft": "20000", "hard": 40000}}))
        .unwrap();
        assert_eq!(u["nproc"], Ulimit::Single(65535));
        assert_eq!(u["core"], Ulimit::Single(0));
        assert_eq!((u["nofile"].soft(), u["nofile"].hard()), (20000, 40000));
        assert_eq!(
            serde_json::to_value(&u).unwrap(),
            json!({"nproc": 65535, "core": 0, "nofile": {"soft": 20000, "hard": 40000}})
        );
    }

    #[test]
    fn ulimits_need_both_soft_and_hard() {
        let err = serde_json::from_value::<Ulimits>(json!({"nofile": {"soft": 1}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("hard"), "{err}");
        assert!(serde_json::from_value::<Ulimits>(json!({"nofile": "lots"})).is_err());
    }

    #[test]
    fn blkio_rates_read_byte_units() {
        let b: BlkioConfig = serde_json::from_value(json!({
            "weight": "300",
            "weight_device": [{"path": "/dev/sda", "weight": 400}],
            "device_read_bps": [{"path": "/dev/sda", "rate": "12mb"}],
            "device_write_iops": [{"path": "/dev/sda", "rate": 30}],
        }))
        .unwrap();
        assert_eq!(b.weight, Some(300));
        assert_eq!(b.device_read_bps[0].rate, Bytes(12 << 20));
        assert_eq!(b.device_write_iops[0].rate, Bytes(30));
        assert!(serde_json::from_value::<BlkioConfig>(json!({"x-a": 1})).is_err());
    }
}
