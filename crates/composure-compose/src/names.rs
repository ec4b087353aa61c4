//! Naming rules for projects, services and the other named resources of a compose file.
//!
//! Each validator returns the rule in words on failure, so callers can put it in a
//! diagnostic as is. The character sets come from the compose spec and its JSON schema.

/// The kinds of names a compose file declares as mapping keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Service,
    Network,
    Volume,
    Secret,
    Config,
}

impl NameKind {
    /// The kind whose names are the keys of a top-level section (`services`, `volumes`, ...).
    pub fn of_section(section: &str) -> Option<NameKind> {
        match section {
            "services" => Some(NameKind::Service),
            "networks" => Some(NameKind::Network),
            "volumes" => Some(NameKind::Volume),
            "secrets" => Some(NameKind::Secret),
            "configs" => Some(NameKind::Config),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NameKind::Service => "service",
            NameKind::Network => "network",
            NameKind::Volume => "volume",
            NameKind::Secret => "secret",
            NameKind::Config => "config",
        }
    }
}

/// Derives a project name from free text (usually a directory name) the way compose does:
/// lower-case it, drop every character outside `[a-z0-9_-]`, then drop leading `_` and `-`
/// so the result can start a valid name. The result may be empty.
pub fn normalize_project_name(raw: &str) -> String {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// A project name must match `^[a-z0-9][a-z0-9_-]*$`.
pub fn validate_project_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if starts_well && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name `{name}`: a project name must contain only lowercase letters, \
             digits, `-` and `_`, and must start with a lowercase letter or a digit"
        ))
    }
}

/// Service, network, volume, secret and config names are keys matching `^[a-zA-Z0-9._-]+$`.
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), String> {
    if !name.is_empty() && name.chars().all(is_resource_name_char) {
        Ok(())
    } else {
        let kind = kind.as_str();
        Err(format!(
            "invalid {kind} name `{name}`: a {kind} name must be non-empty and contain only \
             letters, digits, `.`, `_` and `-`"
        ))
    }
}

pub fn validate_service_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Service, name)
}

pub fn validate_network_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Network, name)
}

pub fn validate_volume_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Volume, name)
}

pub fn validate_secret_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Secret, name)
}

pub fn validate_config_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Config, name)
}

/// A container name must match `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`: the Docker engine's rule,
/// which also makes it at least two characters long.
pub fn validate_container_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let starts_well = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest: Vec<char> = chars.collect();
    if starts_well && !rest.is_empty() && rest.iter().copied().all(is_resource_name_char) {
        Ok(())
    } else {
        Err(format!(
            "invalid container name `{name}`: a container name must be at least two characters \
             long, start with a letter or a digit, and contain only letters, digits, `.`, `_` \
             and `-`"
        ))
    }
}

/// The known name closest to `candidate`, if it is close enough to be a likely typo.
/// Case is ignored: `Image` is a typo of `image`.
pub fn closest_name<'k>(
    candidate: &str,
    known: impl IntoIterator<Item = &'k str>,
) -> Option<&'k str> {
    let candidate = candidate.to_lowercase();
    let allowed = (candidate.chars().count() / 4).max(1);
    known
        .into_iter()
        .map(|name| {
            (
                strsim::damerau_levenshtein(&candidate, &name.to_lowercase()),
                name,
            )
        })
        .filter(|(distance, _)| *distance <= allowed)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

fn is_resource_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_lowercases_and_drops_other_characters() {
        assert_eq!(normalize_project_name("My App"), "myapp");
        assert_eq!(normalize_project_name("web_App-2"), "web_app-2");
        assert_eq!(normalize_project_name("my.app"), "myapp");
        assert_eq!(normalize_project_name("café"), "caf");
    }

    #[test]
    fn normalize_drops_leading_separators() {
        assert_eq!(normalize_project_name("__-app_"), "app_");
        assert_eq!(normalize_project_name(".hidden"), "hidden");
        assert_eq!(normalize_project_name("---"), "");
    }

    #[test]
    fn normalized_names_are_valid_unless_empty() {
        for raw in ["My Project", "-x", "A.B.C", "123", "hello_World-1"] {
            let name = normalize_project_name(raw);
            assert_eq!(validate_project_name(&name), Ok(()), "{raw:?} -> {name:?}");
        }
    }

    #[test]
    fn project_name_rule() {
        for ok in ["a", "0", "my-app_1", "9lives"] {
            assert_eq!(validate_project_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "-app", "_app", "MyApp", "my.app", "my app", "é"] {
            let err = validate_project_name(bad).expect_err(bad);
            assert!(
                err.contains("lowercase letters, digits, `-` and `_`"),
                "{err}"
            );
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn service_name_rule() {
        for ok in ["web", "Web.1", "_x", "-", "a_b-c.d"] {
            assert_eq!(validate_service_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "my web", "web/1", "wéb", "a:b"] {
            let err = validate_service_name(bad).expect_err(bad);
            assert!(err.starts_with("invalid service name"), "{err}");
        }
    }

    #[test]
    fn resource_name_rules_name_their_kind() {
        type Check = fn(&str) -> Result<(), String>;
        let checks: [(Check, &str); 4] = [
            (validate_network_name, "network"),
            (validate_volume_name, "volume"),
            (validate_secret_name, "secret"),
            (validate_config_name, "config"),
        ];
        for (check, kind) in checks {
            assert_eq!(check("data.v1_x-y"), Ok(()));
            let err = check("bad name").expect_err(kind);
            assert!(
                err.starts_with(&format!("invalid {kind} name `bad name`")),
                "{err}"
            );
        }
    }

    #[test]
    fn section_kinds() {
        assert_eq!(NameKind::of_section("volumes"), Some(NameKind::Volume));
        assert_eq!(NameKind::of_section("models"), None);
    }

    #[test]
    fn near_misses_are_close_and_case_blind() {
        assert_eq!(closest_name("Image", ["image", "build"]), Some("image"));
        assert_eq!(closest_name("imgae", ["image", "build"]), Some("image"));
        assert_eq!(
            closest_name("container-name", ["container_name"]),
            Some("container_name")
        );
        assert_eq!(
            closest_name("enviroment", ["entrypoint", "environment"]),
            Some("environment")
        );
        assert_eq!(closest_name("zzz", ["image", "tty"]), None);
        assert_eq!(closest_name("db", ["web"]), None);
    }

    #[test]
    fn container_name_rule() {
        for ok in ["db", "my_db.1", "A-b", "0x"] {
            assert_eq!(validate_container_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "a", "_db", ".db", "-db", "my db", "db/1"] {
            let err = validate_container_name(bad).expect_err(bad);
            assert!(err.starts_with("invalid container name"), "{err}");
        }
    }
}
