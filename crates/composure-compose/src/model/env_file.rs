//! `env_file`: files of variables for a service's environment.
//!
//! A string or a list of strings and `{path, required, format}` mappings; the canonical
//! form is always the list of mappings, with `required` written out (true by default).

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::de as flex;

/// One env file of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    /// A missing required file is an error; a missing optional one is skipped.
    #[serde(default = "required_default", deserialize_with = "flex::req")]
    pub required: bool,
    /// How to read the file; unset means the dotenv format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

fn required_default() -> bool {
    true
}

impl EnvFile {
    pub fn new(path: impl Into<String>) -> Self {
        EnvFile {
            path: path.into(),
            required: true,
            format: None,
        }
    }
}

/// One entry of the list: a path, or the long syntax.
struct EnvFileEntry(EnvFile);

impl<'de> Deserialize<'de> for EnvFileEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFileEntry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path, or a mapping with `path`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EnvFileEntry, E> {
                Ok(EnvFileEntry(EnvFile::new(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<EnvFileEntry, A::Error> {
                EnvFile::deserialize(de::value::MapAccessDeserializer::new(map)).map(EnvFileEntry)
            }
        }
        d.deserialize_any(V)
    }
}

/// For the `env_file` field.
pub(crate) fn env_files<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<EnvFile>, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<EnvFile>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a path or a list of env files")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(vec![EnvFile::new(v)])
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(EnvFileEntry(file)) = seq.next_element()? {
                out.push(file);
            }
            Ok(out)
        }
    }
    d.deserialize_any(V)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_form_becomes_the_long_list() {
        let want = json!([{"path": ".env", "required": true}]);
        assert_eq!(
            serde_json::to_value(env_files(json!(".env")).unwrap()).unwrap(),
            want
        );
        assert_eq!(
            serde_json::to_value(env_files(json!([".env"])).unwrap()).unwrap(),
            want
        );
        assert_eq!(
            serde_json::to_value(
                env_files(json!([{"path": "a.env", "required": "false", "format": "raw"}]))
                    .unwrap()
            )
            .unwrap(),
            json!([{"path": "a.env", "required": false, "format": "raw"}])
        );
    }

    #[test]
    fn long_syntax_needs_a_path_and_no_strangers() {
        assert!(
            env_files(json!([{"required": true}]))
                .unwrap_err()
                .to_string()
                .contains("path")
        );
        assert!(env_files(json!([{"path": "a", "x-b": 1}])).is_err());
    }
}
