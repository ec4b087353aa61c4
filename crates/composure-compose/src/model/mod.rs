//! The typed, canonical compose model: what the rest of Composure consumes, and what
//! `composure config` prints.
//!
//! [`project_from_json`] reads a document that has been merged, interpolated and checked
//! against the compose-spec schema, in any mix of short and long syntaxes, and returns a
//! [`Project`] where every short syntax has become its long form. Serializing a `Project`
//! gives that canonical long form with the spec's field names and unset fields left out;
//! reading it back gives the same `Project`.
//!
//! The types are plain data with public fields. Resolving paths, naming resources after
//! the project and filling defaults that depend on the environment are the normaliser's
//! job, not this module's.

pub mod build;
pub mod command;
pub(crate) mod de;
pub mod depends_on;
pub mod deploy;
pub mod devices;
pub mod env_file;
pub mod healthcheck;
pub mod hooks;
pub mod limits;
pub mod maps;
pub mod ports;
pub mod refs;
pub mod resources;
pub mod service;
pub mod units;
pub mod volumes;

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

use crate::diag::{PathSeg, YamlPath};

pub use build::Build;
pub use de::Extensions;
pub use depends_on::{Condition, Dependency, DependsOn};
pub use deploy::{
    Deploy, DiscreteResourceSpec, GenericResource, Placement, PlacementPreference, Resource,
    Resources, RestartPolicy, UpdateConfig, UpdateOrder,
};
pub use devices::{DeviceCount, DeviceMapping, DeviceRequest};
pub use env_file::EnvFile;
pub use healthcheck::Healthcheck;
pub use hooks::{PreStartHook, ServiceHook};
pub use limits::{BlkioConfig, ThrottleDevice, Ulimit, Ulimits, WeightDevice};
pub use maps::{EnvMapping, HostMap, Mapping};
pub use ports::{Exposed, Port, parse_expose};
pub use refs::{FileRef, ServiceModel, ServiceNetwork};
pub use resources::{Config, FileObject, Include, Ipam, IpamPool, Model, Network, Secret, Volume};
pub use service::{CredentialSpec, Extends, Logging, Provider, Service};
pub use units::{Bytes, Cpus, Duration, FileMode, Microseconds, UnitError};
pub use volumes::{
    BindOptions, ImageOptions, MountType, ServiceVolume, TmpfsOptions, VolumeOptions,
};

/// A compose project: the whole model of one application.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Project {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The obsolete top-level `version`: read so the loader can warn about it, never printed.
    #[serde(default, deserialize_with = "de::opt", skip_serializing)]
    pub version: Option<String>,
    /// Files to include; the loader resolves and removes these before the model is final.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<Include>,
    #[serde(default, deserialize_with = "de::named_map")]
    pub services: IndexMap<String, Service>,
    #[serde(
        default,
        deserialize_with = "de::named_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub networks: IndexMap<String, Network>,
    #[serde(
        default,
        deserialize_with = "de::named_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub volumes: IndexMap<String, Volume>,
    #[serde(
        default,
        deserialize_with = "de::named_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub secrets: IndexMap<String, Secret>,
    #[serde(
        default,
        deserialize_with = "de::named_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub configs: IndexMap<String, Config>,
    #[serde(
        default,
        deserialize_with = "de::named_map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub models: IndexMap<String, Model>,
    #[serde(flatten, deserialize_with = "de::extensions")]
    pub extensions: Extensions,
}

/// A document that does not fit the model: where, and what was wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ModelError {
    /// Where, as `services.web.ports[0]`; empty for the document itself.
    pub path: String,
    /// What was expected and what was found.
    pub message: String,
    /// The same place, for looking up a source position.
    pub yaml_path: YamlPath,
}

impl ModelError {
    pub fn new(yaml_path: YamlPath, message: impl Into<String>) -> Self {
        ModelError {
            path: yaml_path.to_string(),
            message: message.into(),
            yaml_path,
        }
    }
}

/// Reads the canonical model from a merged, interpolated, schema-checked document.
/// An empty document (null) is an empty project.
pub fn project_from_json(mut value: serde_json::Value) -> Result<Project, ModelError> {
    if value.is_null() {
        return Ok(Project::default());
    }
    resources::lift_external_names(&mut value)?;
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut path = YamlPath::root();
        for segment in err.path() {
            path = match segment {
                serde_path_to_error::Segment::Seq { index } => path.index(*index),
                serde_path_to_error::Segment::Map { key } => path.key(key.as_str()),
                serde_path_to_error::Segment::Enum { variant } => path.key(variant.as_str()),
                serde_path_to_error::Segment::Unknown => path,
            };
        }
        let message = err.inner().to_string();
        // serde reports an unknown key at the mapping that holds it; point at the key
        // itself so the loader can show where it was written.
        if let Some(key) = unknown_key(&message) {
            let already_there =
                matches!(path.segments().last(), Some(PathSeg::Key(last)) if last == key);
            if !already_there {
                path = path.key(key);
            }
        }
        ModelError::new(path, message)
    })
}

/// The key named by serde's "unknown field" error or our "unknown attribute" error.
fn unknown_key(message: &str) -> Option<&str> {
    let rest = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("unknown attribute `"))?;
    rest.split_once('`').map(|(key, _)| key)
}

#[cfg(test)]
mod tests;
