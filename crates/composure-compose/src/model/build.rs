//! `build`: how to build a service's image. `build: ./dir` is `{context: ./dir}`.

use std::fmt;

use indexmap::IndexMap;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions};
use super::limits::Ulimits;
use super::maps::{self, EnvMapping, HostMap, Mapping};
use super::refs::FileRef;
use super::units::Bytes;

/// A service's build definition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Build {
    /// Named extra contexts (`name: path-or-url`).
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub additional_contexts: Mapping,
    /// Build arguments; a null value is taken from the environment by the normaliser.
    #[serde(
        default,
        deserialize_with = "maps::env_mapping",
        skip_serializing_if = "EnvMapping::is_empty"
    )]
    pub args: EnvMapping,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_to: Vec<String>,
    /// The build context: a directory or a URL; `.` when the long syntax leaves it out.
    #[serde(default = "default_context")]
    pub context: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile_inline: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entitlements: Vec<String>,
    #[serde(
        default,
        deserialize_with = "maps::extra_hosts",
        serialize_with = "maps::serialize_multi_map",
        skip_serializing_if = "HostMap::is_empty"
    )]
    pub extra_hosts: HostMap,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<String>,
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub no_cache: Option<bool>,
    /// Stages to build without cache.
    #[serde(
        default,
        deserialize_with = "flex::string_or_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub no_cache_filter: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub privileged: Option<bool>,
    /// Provenance attestation: `true`, `false` or a BuildKit attestation spec.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub provenance: Option<String>,
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub pull: Option<bool>,
    /// SBOM attestation: `true`, `false` or a BuildKit attestation spec.
    #[serde(
        default,
        deserialize_with = "flex::opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub sbom: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<FileRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<Bytes>,
    /// SSH agent sockets or keys by id; `default` with no path means the local agent.
    #[serde(
        default,
        deserialize_with = "ssh",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub ssh: IndexMap<String, Option<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Ulimits::is_empty")]
    pub ulimits: Ulimits,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

fn default_context() -> String {
    ".".to_string()
}

impl Build {
    /// A build of the given context with nothing else set.
    pub fn from_context(context: impl Into<String>) -> Self {
        Build {
            additional_contexts: Mapping::new(),
            args: EnvMapping::new(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            context: context.into(),
            dockerfile: None,
            dockerfile_inline: None,
            entitlements: Vec::new(),
            extra_hosts: HostMap::new(),
            isolation: None,
            labels: Mapping::new(),
            network: None,
            no_cache: None,
            no_cache_filter: Vec::new(),
            platforms: Vec::new(),
            privileged: None,
            provenance: None,
            pull: None,
            sbom: None,
            secrets: Vec::new(),
            shm_size: None,
            ssh: IndexMap::new(),
            tags: Vec::new(),
            target: None,
            ulimits: Ulimits::new(),
            extensions: Extensions::new(),
        }
    }
}

impl Default for Build {
    fn default() -> Self {
        Build::from_context(default_context())
    }
}

/// For the `build` field: a context path or URL, or the long syntax.
pub(crate) fn build<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Build>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<Build>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a build context, or a mapping of build options")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(Build::from_context(v)))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Build::deserialize(de::value::MapAccessDeserializer::new(map)).map(Some)
        }
    }
    d.deserialize_any(V)
}

/// Reads `ssh` as a list (`default`, `id=path`) or a mapping of id to path.
fn ssh<'de, D: Deserializer<'de>>(d: D) -> Result<IndexMap<String, Option<String>>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = IndexMap<String, Option<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of `default` or `ID=PATH`, or a mapping of ids to paths")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(IndexMap::new())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(item) = seq.next_element::<String>()? {
                match item.split_once('=') {
                    Some((id, path)) => out.insert(id.to_string(), Some(path.to_string())),
                    None if item == "default" => out.insert(item, None),
                    None => {
                        return Err(de::Error::custom(format!(
                            "invalid ssh key `{item}` (expected `default` or `ID=PATH`)"
                        )));
                    }
                };
            }
            Ok(out)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some((id, path)) = map.next_entry::<String, Option<String>>()? {
                out.insert(id, path);
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
        serde_json::to_value(build(input).unwrap()).unwrap()
    }

    #[test]
    fn string_is_the_context() {
        assert_eq!(long(json!("./dir")), json!({"context": "./dir"}));
        assert_eq!(long(json!({})), json!({"context": "."}));
    }

    #[test]
    fn long_syntax_normalises_its_short_parts() {
        assert_eq!(
            long(json!({
                "context": "app", "dockerfile": "Dockerfile.dev",
                "args": ["GIT_COMMIT=cdc3b19", "EMPTY"],
                "ssh": ["default", "myproject=~/.ssh/myproject.pem"],
                "labels": ["com.example.description=Accounting"],
                "additional_contexts": ["resources=/path/to/resources"],
                "extra_hosts": ["somehost=162.242.195.82"],
                "secrets": ["server-certificate"],
                "shm_size": "2gb", "no_cache": "true", "pull": true, "privileged": false,
                "provenance": true, "sbom": "generator=x",
                "no_cache_filter": "stage1", "ulimits": {"nproc": 65535},
                "cache_from": ["a"], "cache_to": ["b"], "tags": ["t"], "platforms": ["linux/amd64"],
                "entitlements": ["network.host"], "isolation": "default", "network": "host",
                "target": "prod", "dockerfile_inline": "FROM scratch", "x-k": true,
            })),
            json!({
                "additional_contexts": {"resources": "/path/to/resources"},
                "args": {"GIT_COMMIT": "cdc3b19", "EMPTY": null},
                "cache_from": ["a"], "cache_to": ["b"], "context": "app",
                "dockerfile": "Dockerfile.dev", "dockerfile_inline": "FROM scratch",
                "entitlements": ["network.host"],
                "extra_hosts": {"somehost": "162.242.195.82"}, "isolation": "default",
                "labels": {"com.example.description": "Accounting"}, "network": "host",
                "no_cache": true, "no_cache_filter": ["stage1"], "platforms": ["linux/amd64"],
                "privileged": false, "provenance": "true", "pull": true, "sbom": "generator=x",
                "secrets": [{"source": "server-certificate"}], "shm_size": 2_147_483_648i64,
                "ssh": {"default": null, "myproject": "~/.ssh/myproject.pem"},
                "tags": ["t"], "target": "prod", "ulimits": {"nproc": 65535}, "x-k": true,
            })
        );
    }

    #[test]
    fn bad_build_options_are_errors() {
        assert!(
            build(json!({"ssh": ["nokey"]}))
                .unwrap_err()
                .to_string()
                .contains("`nokey`")
        );
        assert!(
            build(json!({"contxt": "."}))
                .unwrap_err()
                .to_string()
                .contains("`contxt`")
        );
        assert!(build(json!(["."])).is_err());
    }
}
