//! Commands: `command`, `entrypoint`, hook commands and healthcheck tests.
//!
//! A command written as one string is split into argv the way a POSIX shell splits words
//! (compose does not run it through a shell). A list is kept as written. The distinction
//! between "not set" (`None`) and "set to nothing" (`Some([])`) matters: `command: []`
//! clears the image's `CMD`.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, SeqAccess, Visitor};

use super::de::Flex;

/// Splits a command line into words, shell style: `echo "a b"` is `["echo", "a b"]`.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    shell_words::split(line).map_err(|e| format!("cannot split command `{line}`: {e}"))
}

struct CommandVisitor {
    /// What a single string turns into.
    from_string: fn(&str) -> Result<Vec<String>, String>,
}

impl<'de> Visitor<'de> for CommandVisitor {
    type Value = Option<Vec<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a command as a string or a list of strings")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        (self.from_string)(v).map(Some).map_err(E::custom)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut argv = Vec::new();
        while let Some(Flex(arg)) = seq.next_element::<Flex<String>>()? {
            argv.push(arg);
        }
        Ok(Some(argv))
    }
}

/// For `command`, `entrypoint` and hook commands.
pub(crate) fn command<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    d.deserialize_option(CommandVisitor {
        from_string: split_command,
    })
}

/// For healthcheck `test`: a string is a shell command, `["CMD-SHELL", string]`.
pub(crate) fn health_test<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<String>>, D::Error> {
    d.deserialize_option(CommandVisitor {
        from_string: |s| Ok(vec!["CMD-SHELL".to_string(), s.to_string()]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn string_commands_are_split_shell_style() {
        let argv = command(json!(r#"bundle exec "thin -p" 'a b' c\ d"#)).unwrap();
        assert_eq!(
            argv,
            Some(vec![
                "bundle".into(),
                "exec".into(),
                "thin -p".into(),
                "a b".into(),
                "c d".into()
            ])
        );
    }

    #[test]
    fn lists_are_kept_and_empty_is_not_unset() {
        assert_eq!(
            command(json!(["sh", "-c", "echo $X"])).unwrap(),
            Some(vec!["sh".into(), "-c".into(), "echo $X".into()])
        );
        assert_eq!(command(json!([])).unwrap(), Some(vec![]));
        assert_eq!(command(json!("")).unwrap(), Some(vec![]));
        assert_eq!(command(json!(null)).unwrap(), None);
    }

    #[test]
    fn unbalanced_quotes_are_an_error_naming_the_command() {
        let err = command(json!("echo 'oops")).unwrap_err().to_string();
        assert!(err.contains("`echo 'oops`"), "{err}");
    }

    #[test]
    fn health_test_string_is_a_shell_command() {
        assert_eq!(
            health_test(json!("curl -f http://localhost")).unwrap(),
            Some(vec!["CMD-SHELL".into(), "curl -f http://localhost".into()])
        );
        assert_eq!(
            health_test(json!(["CMD", "true"])).unwrap(),
            Some(vec!["CMD".into(), "true".into()])
        );
    }
}
