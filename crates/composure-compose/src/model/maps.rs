//! Key/value attributes that compose lets you write as a list of `KEY=VALUE` strings or as a
//! mapping: environment, labels, annotations, sysctls, build args, extra hosts.
//! The canonical form is always the mapping.

use std::fmt;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};

use super::de::Flex;

/// Variables where a key may have no value: `environment: [DEBUG]` leaves `DEBUG` to be
/// taken from the shell environment (null), unlike `DEBUG=` (the empty string).
pub type EnvMapping = IndexMap<String, Option<String>>;

/// Plain string-to-string attributes (labels, sysctls, driver options).
pub type Mapping = IndexMap<String, String>;

/// Reads a list-or-dict into an [`EnvMapping`]; `what` names the attribute in messages.
struct ListOrDict {
    what: &'static str,
}

impl<'de> Visitor<'de> for ListOrDict {
    type Value = EnvMapping;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} as a mapping or a list of `KEY=VALUE` strings",
            self.what
        )
    }

    fn visit_unit<E: de::Error>(self) -> Result<EnvMapping, E> {
        Ok(EnvMapping::new())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvMapping, A::Error> {
        let mut out = EnvMapping::new();
        while let Some(Flex(item)) = seq.next_element::<Flex<String>>()? {
            let (key, value) = split_equals(&item);
            if key.is_empty() {
                return Err(de::Error::custom(format!(
                    "`{item}` has no key before `=` in {}",
                    self.what
                )));
            }
            out.insert(key, value);
        }
        Ok(out)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<EnvMapping, A::Error> {
        let mut out = EnvMapping::new();
        while let Some((key, value)) = map.next_entry::<String, Option<Flex<String>>>()? {
            out.insert(key, value.map(|v| v.0));
        }
        Ok(out)
    }
}

fn split_equals(item: &str) -> (String, Option<String>) {
    match item.split_once('=') {
        Some((k, v)) => (k.to_string(), Some(v.to_string())),
        None => (item.to_string(), None),
    }
}

/// `environment`, build `args`, hook environments: null values stay null.
pub(crate) fn env_mapping<'de, D: Deserializer<'de>>(d: D) -> Result<EnvMapping, D::Error> {
    d.deserialize_any(ListOrDict { what: "variables" })
}

/// `labels`, `annotations`, `sysctls` and the like: a key without a value means the empty
/// string, as in compose-go.
pub(crate) fn mapping<'de, D: Deserializer<'de>>(d: D) -> Result<Mapping, D::Error> {
    let env = d.deserialize_any(ListOrDict { what: "entries" })?;
    Ok(env
        .into_iter()
        .map(|(k, v)| (k, v.unwrap_or_default()))
        .collect())
}

/// A mapping written only as a mapping (driver options, storage options, log options);
/// numbers are kept as their text and null as the empty string.
pub(crate) fn dict<'de, D: Deserializer<'de>>(d: D) -> Result<Mapping, D::Error> {
    let map = Option::<IndexMap<String, Option<Flex<String>>>>::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.map(|f| f.0).unwrap_or_default()))
        .collect())
}

/// Host names and their addresses (`extra_hosts`). One host may have several addresses.
pub type HostMap = IndexMap<String, Vec<String>>;

/// Reads `extra_hosts` as a list (`host=ip`, `host:ip`, `host=ip1,ip2`) or a mapping
/// (`host: ip` or `host: [ip1, ip2]`). Brackets around IPv6 addresses are dropped.
pub(crate) fn extra_hosts<'de, D: Deserializer<'de>>(d: D) -> Result<HostMap, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = HostMap;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("extra hosts as a list of `HOST=IP` strings or a mapping of host to IP")
        }
        fn visit_unit<E: de::Error>(self) -> Result<HostMap, E> {
            Ok(HostMap::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostMap, A::Error> {
            let mut out = HostMap::new();
            while let Some(Flex(item)) = seq.next_element::<Flex<String>>()? {
                let (host, ips) = split_host_entry(&item).map_err(de::Error::custom)?;
                add_host(&mut out, host, ips.split(',')).map_err(de::Error::custom)?;
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<HostMap, A::Error> {
            let mut out = HostMap::new();
            while let Some((host, OneOrMany(ips))) = map.next_entry::<String, OneOrMany>()? {
                add_host(&mut out, &host, ips.iter().map(String::as_str))
                    .map_err(de::Error::custom)?;
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

/// `host=ip` or, the older spelling, `host:ip` (`=` wins so `h=::1` keeps its colons).
fn split_host_entry(item: &str) -> Result<(&str, &str), String> {
    item.split_once('=')
        .or_else(|| item.split_once(':'))
        .ok_or_else(|| format!("extra host `{item}` has no IP address (write `HOST=IP`)"))
}

fn add_host<'a>(
    out: &mut HostMap,
    host: &str,
    ips: impl Iterator<Item = &'a str>,
) -> Result<(), String> {
    if host.is_empty() || host.contains([':', '=']) {
        return Err(format!("bad host name `{host}` in extra_hosts"));
    }
    let entry = out.entry(host.to_string()).or_default();
    for ip in ips {
        let ip = ip
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(ip);
        entry.push(ip.to_string());
    }
    Ok(())
}

/// One value or a list of values, read as a list (`options: {region: eu}` or
/// `{zones: [a, b]}`). Null reads as the empty string.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value or a list of values")
            }
            fn visit_unit<E: de::Error>(self) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![String::new()]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![super::de::float_text(v)]))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(Flex(item)) = seq.next_element::<Flex<String>>()? {
                    out.push(item);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a mapping whose values are one value or a list (provider `options`).
pub(crate) fn multi_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, Vec<String>>, D::Error> {
    let map = Option::<IndexMap<String, OneOrMany>>::deserialize(d)?.unwrap_or_default();
    Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
}

/// Writes a mapping whose values are lists, a single value as a plain string.
pub(crate) fn serialize_multi_map<S: Serializer>(
    map: &IndexMap<String, Vec<String>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut out = s.serialize_map(Some(map.len()))?;
    for (key, values) in map {
        match values.as_slice() {
            [one] => out.serialize_entry(key, one)?,
            many => out.serialize_entry(key, many)?,
        }
    }
    out.end()
}

/// A list of names, or a mapping of names to an optional definition, read as the mapping:
/// service `networks` and `models` (`[front]` means `{front: null}`).
pub(crate) fn names_or_map<'de, D, T>(d: D) -> Result<IndexMap<String, Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct V<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
        type Value = IndexMap<String, Option<T>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of names or a mapping of names to definitions")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(IndexMap::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(name) = seq.next_element::<String>()? {
                out.insert(name, None);
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some((name, def)) = map.next_entry::<String, Option<T>>()? {
                out.insert(name, def);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn environment_list_and_map_give_the_same_mapping() {
        let from_list = env_mapping(json!(["A=1", "B", "C=", "D=x=y"])).unwrap();
        let from_map = env_mapping(json!({"A": 1, "B": null, "C": "", "D": "x=y"})).unwrap();
        let want: EnvMapping = [
            ("A".to_string(), Some("1".to_string())),
            ("B".to_string(), None),
            ("C".to_string(), Some(String::new())),
            ("D".to_string(), Some("x=y".to_string())),
        ]
        .into_iter()
        .collect();
        assert_eq!(from_list, want);
        assert_eq!(from_map, want);
    }

    #[test]
    fn environment_values_of_any_scalar_become_text() {
        let env = env_mapping(json!({"T": true, "F": 1.5, "I": 2.0})).unwrap();
        assert_eq!(env["T"].as_deref(), Some("true"));
        assert_eq!(env["F"].as_deref(), Some("1.5"));
        assert_eq!(env["I"].as_deref(), Some("2"));
    }

    #[test]
    fn environment_rejects_entries_without_a_key() {
        let err = env_mapping(json!(["=oops"])).unwrap_err().to_string();
        assert!(err.contains("`=oops`"), "{err}");
        assert!(env_mapping(json!("A=1")).is_err());
    }

    #[test]
    fn labels_without_value_are_empty_strings() {
        let labels = mapping(json!(["com.example=1", "flag"])).unwrap();
        assert_eq!(labels["com.example"], "1");
        assert_eq!(labels["flag"], "");
        let labels = mapping(json!({"a": null, "b": 2})).unwrap();
        assert_eq!(labels["a"], "");
        assert_eq!(labels["b"], "2");
    }

    #[test]
    fn extra_hosts_from_list_and_map() {
        let hosts = extra_hosts(json!([
            "somehost=162.242.195.82",
            "otherhost:50.31.209.229",
            "v6=::1",
            "v6b:::1",
            "br=[::2]",
            "multi=10.0.0.1,10.0.0.2",
        ]))
        .unwrap();
        assert_eq!(hosts["somehost"], vec!["162.242.195.82"]);
        assert_eq!(hosts["otherhost"], vec!["50.31.209.229"]);
        assert_eq!(hosts["v6"], vec!["::1"]);
        assert_eq!(hosts["v6b"], vec!["::1"]);
        assert_eq!(hosts["br"], vec!["::2"]);
        assert_eq!(hosts["multi"], vec!["10.0.0.1", "10.0.0.2"]);

        let hosts = extra_hosts(json!({"a": "1.2.3.4", "b": ["::1", "[::2]"]})).unwrap();
        assert_eq!(hosts["a"], vec!["1.2.3.4"]);
        assert_eq!(hosts["b"], vec!["::1", "::2"]);
    }

    #[test]
    fn extra_hosts_reject_entries_without_ip() {
        let err = extra_hosts(json!(["lonely"])).unwrap_err().to_string();
        assert!(err.contains("`lonely`"), "{err}");
        assert!(extra_hosts(json!(["=1.2.3.4"])).is_err());
    }

    #[test]
    fn names_or_map_reads_lists_as_null_entries() {
        let m = names_or_map::<_, serde_json::Value>(json!(["a", "b"])).unwrap();
        assert_eq!(m.get("a"), Some(&None));
        let m = names_or_map::<_, serde_json::Value>(json!({"a": null, "b": {"x": 1}})).unwrap();
        assert_eq!(m.get("b"), Some(&Some(json!({"x": 1}))));
    }
}
