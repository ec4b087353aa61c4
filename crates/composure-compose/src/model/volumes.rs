//! Service mounts (`services.*.volumes`).
//!
//! The short syntax `SOURCE:TARGET[:OPTIONS]` becomes a bind mount when the source looks
//! like a path (`.`, `/`, `~`, a Windows drive or pipe), a named volume otherwise, and an
//! anonymous volume when there is no source. A short bind mount creates its host path if
//! missing (`bind.create_host_path: true`), for compatibility with docker-compose v1.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de::{self as flex, Extensions, is_false};
use super::maps::{self, Mapping};
use super::units::{Bytes, FileMode};

/// The kind of a mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    #[default]
    Volume,
    Tmpfs,
    Cluster,
    Npipe,
    Image,
}

/// One mount of a service, in the long syntax.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceVolume {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// Host path, volume name or image; unset for tmpfs and anonymous volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageOptions>,
    #[serde(flatten)]
    pub extensions: Extensions,
}

/// The long syntax as written, before the defaults a `bind:` section implies.
#[derive(Deserialize)]
struct LongVolume {
    #[serde(rename = "type")]
    kind: MountType,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default, deserialize_with = "flex::opt")]
    read_only: Option<bool>,
    #[serde(default)]
    consistency: Option<String>,
    #[serde(default)]
    bind: Option<BindOptions>,
    #[serde(default)]
    volume: Option<VolumeOptions>,
    #[serde(default)]
    tmpfs: Option<TmpfsOptions>,
    #[serde(default)]
    image: Option<ImageOptions>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    extensions: Extensions,
}

/// Options of a bind mount.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BindOptions {
    /// Create the host path if it is missing; true unless set to false.
    #[serde(default = "yes", deserialize_with = "flex::req")]
    pub create_host_path: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// `enabled`, `disabled`, `writable` or `readonly`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<String>,
    /// `z` (shared) or `Z` (private) SELinux relabelling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions {
            create_host_path: true,
            propagation: None,
            recursive: None,
            selinux: None,
            extensions: Extensions::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Options of a volume mount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VolumeOptions {
    #[serde(
        default,
        deserialize_with = "maps::mapping",
        skip_serializing_if = "Mapping::is_empty"
    )]
    pub labels: Mapping,
    #[serde(
        default,
        deserialize_with = "flex::req",
        skip_serializing_if = "is_false"
    )]
    pub nocopy: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Options of a tmpfs mount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FileMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Bytes>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

/// Options of an image mount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    #[serde(flatten, deserialize_with = "flex::extensions")]
    pub extensions: Extensions,
}

impl<'de> Deserialize<'de> for ServiceVolume {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceVolume;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mount as `SOURCE:TARGET[:OPTIONS]` or a mapping with `type`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServiceVolume, E> {
                parse_volume(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceVolume, A::Error> {
                let long = LongVolume::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ServiceVolume {
                    kind: long.kind,
                    source: long.source,
                    target: long.target,
                    read_only: long.read_only.unwrap_or(false),
                    consistency: long.consistency,
                    bind: long.bind,
                    volume: long.volume,
                    tmpfs: long.tmpfs,
                    image: long.image,
                    extensions: long.extensions,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses the short syntax of a mount.
pub fn parse_volume(spec: &str) -> Result<ServiceVolume, String> {
    let err = |why: &str| format!("invalid volume `{spec}`: {why}");
    if spec.is_empty() {
        return Err(err("empty"));
    }
    let parts = split_volume_spec(spec);
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("empty section between colons"));
    }
    let (source, target, options) = match parts.as_slice() {
        [target] => (None, *target, None),
        [source, target] => (Some(*source), *target, None),
        [source, target, options] => (Some(*source), *target, Some(*options)),
        _ => return Err(err("too many colons")),
    };
    let mut mount = ServiceVolume {
        source: source.map(str::to_string),
        target: Some(clean_path(target)),
        ..ServiceVolume::default()
    };
    if source.is_some_and(is_host_path) {
        mount.kind = MountType::Bind;
        mount.bind = Some(BindOptions::default());
    } else {
        mount.kind = MountType::Volume;
        mount.volume = Some(VolumeOptions::default());
    }
    for option in options.into_iter().flat_map(|o| o.split(',')) {
        apply_option(&mut mount, option).map_err(|why| err(&why))?;
    }
    Ok(mount)
}

fn apply_option(mount: &mut ServiceVolume, option: &str) -> Result<(), String> {
    match option {
        "ro" => mount.read_only = true,
        "rw" => mount.read_only = false,
        "nocopy" => mount.volume.get_or_insert_with(Default::default).nocopy = true,
        "z" | "Z" => {
            mount.bind.get_or_insert_with(Default::default).selinux = Some(option.to_string());
        }
        "rprivate" | "private" | "rshared" | "shared" | "rslave" | "slave" => {
            mount.bind.get_or_insert_with(Default::default).propagation = Some(option.to_string());
        }
        // Docker Desktop's macOS consistency hints; the long syntax's `consistency`.
        "cached" | "delegated" | "consistent" => mount.consistency = Some(option.to_string()),
        _ => {
            return Err(format!(
                "unknown option `{option}` (expected ro, rw, z, Z, nocopy, a propagation \
                 mode or a consistency)"
            ));
        }
    }
    Ok(())
}

/// Splits on colons, except the one after a Windows drive letter (`C:\data:/data`).
fn split_volume_spec(spec: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    for (i, c) in spec.char_indices() {
        if c != ':' {
            continue;
        }
        let current = &spec[start..i];
        let is_drive = current.len() == 1 && current.chars().all(|c| c.is_ascii_alphabetic());
        if !is_drive {
            parts.push(current);
            start = i + 1;
        }
    }
    parts.push(&spec[start..]);
    parts
}

/// Whether a short-syntax source is a host path rather than a volume name.
fn is_host_path(source: &str) -> bool {
    if source.starts_with(['.', '/', '~']) || source.starts_with(r"\\") {
        return true;
    }
    let mut chars = source.chars();
    matches!((chars.next(), chars.next()), (Some(d), Some(':')) if d.is_ascii_alphabetic())
}

/// Lexically cleans a container path as Go's `path.Clean` does (`/data/` is `/data`).
fn clean_path(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            _ => parts.push(part),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_string(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn long(input: Value) -> Value {
        let mount: ServiceVolume = serde_json::from_value(input).unwrap();
        serde_json::to_value(mount).unwrap()
    }

    fn err(input: Value) -> String {
        serde_json::from_value::<ServiceVolume>(input)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn short_bind_creates_host_path() {
        assert_eq!(
            long(json!("./a:/b:ro,z")),
            json!({"type": "bind", "source": "./a", "target": "/b", "read_only": true,
                   "bind": {"create_host_path": true, "selinux": "z"}})
        );
        assert_eq!(
            long(json!("/var/run/docker.sock:/var/run/docker.sock")),
            json!({"type": "bind", "source": "/var/run/docker.sock",
                   "target": "/var/run/docker.sock", "bind": {"create_host_path": true}})
        );
        assert_eq!(long(json!("~/x:/x"))["type"], "bind");
        assert_eq!(long(json!(r"C:\data:/data"))["source"], r"C:\data");
    }

    #[test]
    fn short_named_and_anonymous_volumes() {
        assert_eq!(
            long(json!("db:/var/lib/db")),
            json!({"type": "volume", "source": "db", "target": "/var/lib/db", "volume": {}})
        );
        assert_eq!(
            long(json!("/data")),
            json!({"type": "volume", "target": "/data", "volume": {}})
        );
        assert_eq!(
            long(json!("db:/data:nocopy")),
            json!({"type": "volume", "source": "db", "target": "/data",
                   "volume": {"nocopy": true}})
        );
    }

    #[test]
    fn short_options_and_path_cleaning() {
        assert_eq!(long(json!("./a:/b/:rw"))["target"], "/b");
        assert_eq!(long(json!("./a:/b/./c/../d"))["target"], "/b/d");
        assert_eq!(
            long(json!("/src:/dst:rshared"))["bind"],
            json!({"create_host_path": true, "propagation": "rshared"})
        );
        assert_eq!(long(json!("./src:/app:cached"))["consistency"], "cached");
    }

    #[test]
    fn long_syntax_is_kept() {
        let tmpfs = json!({"type": "tmpfs", "target": "/tmp",
                           "tmpfs": {"size": "64m", "mode": "1777"}});
        assert_eq!(
            long(tmpfs),
            json!({"type": "tmpfs", "target": "/tmp",
                   "tmpfs": {"mode": "01777", "size": 67_108_864}})
        );
        assert_eq!(
            long(json!({"type": "npipe", "source": r"\\.\pipe\docker_engine",
                        "target": r"\\.\pipe\docker_engine"}))["type"],
            "npipe"
        );
        assert_eq!(
            long(
                json!({"type": "image", "source": "alpine", "target": "/mnt",
                        "image": {"subpath": "etc"}, "x-k": 1})
            ),
            json!({"type": "image", "source": "alpine", "target": "/mnt",
                   "image": {"subpath": "etc"}, "x-k": 1})
        );
        assert_eq!(
            long(
                json!({"type": "volume", "source": "db", "target": "/d", "read_only": "true",
                        "volume": {"nocopy": "true", "subpath": "s", "labels": ["a=b"]}})
            ),
            json!({"type": "volume", "source": "db", "target": "/d", "read_only": true,
                   "volume": {"labels": {"a": "b"}, "nocopy": true, "subpath": "s"}})
        );
    }

    #[test]
    fn long_bind_section_defaults_create_host_path_to_true() {
        let with_section = long(json!({"type": "bind", "source": "/a", "target": "/b",
                                       "bind": {"propagation": "shared"}}));
        assert_eq!(with_section["bind"]["create_host_path"], true);
        let off = long(json!({"type": "bind", "source": "/a", "target": "/b",
                              "bind": {"create_host_path": false}}));
        assert_eq!(off["bind"]["create_host_path"], false);
        let without = long(json!({"type": "bind", "source": "/a", "target": "/b"}));
        assert_eq!(without.get("bind"), None);
    }

    #[test]
    fn bad_mounts_name_the_text() {
        assert!(err(json!("vol:/a:ro:x")).contains("too many colons"));
        // A single letter before a colon is a Windows drive, as in compose-go.
        assert_eq!(long(json!("c:/a:/b"))["source"], "c:/a");
        assert!(err(json!("vol::/b")).contains("empty section"));
        assert!(err(json!("./a:/b:bogus")).contains("unknown option `bogus`"));
        assert!(err(json!({"type": "floppy", "target": "/a"})).contains("floppy"));
        assert!(err(json!({"target": "/a"})).contains("type"));
        assert!(err(json!({"type": "bind", "target": "/a", "nope": 1})).contains("`nope`"));
        assert!(err(json!(7)).contains("SOURCE:TARGET"));
    }
}
