//! Naming rules for projects, services and the other named resources of a compose file.
//!
//! [`validate_name`] is the one check of every name that reaches a path, a container name or
//! a label: the loader runs it over a whole file ([`check_project_names`]) and the daemon's API
//! over every project it is sent, so a name that would escape a directory (`..`, `a/b`) or
//! outgrow a file name never gets past either. Each check returns the rule in words on
//! failure, so callers can put it in a diagnostic as is. The character sets come from the
//! compose spec and its JSON schema, narrowed as compose narrows them in practice: a name
//! starts with a letter or a digit (so it is never `.` or `..`) and is bounded in length.

use std::path::{Component, Path, PathBuf};

use crate::diag::YamlPath;
use crate::model::Project;

/// The kinds of names a compose file declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameKind {
    Project,
    Service,
    Network,
    Volume,
    Secret,
    Config,
    Container,
    /// A node of a cluster (`composure daemon --node-name`).
    Node,
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
            NameKind::Project => "project",
            NameKind::Service => "service",
            NameKind::Network => "network",
            NameKind::Volume => "volume",
            NameKind::Secret => "secret",
            NameKind::Config => "config",
            NameKind::Container => "container",
            NameKind::Node => "node",
        }
    }

    /// The longest name of this kind. Project and service names become DNS labels (the
    /// service's alias, the container's host name), which hold 63 characters; every other
    /// name must at least fit a file name.
    pub fn max_len(self) -> usize {
        match self {
            NameKind::Project | NameKind::Service | NameKind::Node => 63,
            _ => 255,
        }
    }
}

/// Derives a project name from free text (usually a directory name) the way compose does:
/// lower-case it, drop every character outside `[a-z0-9_-]`, then drop leading `_` and `-`
/// so the result can start a valid name. The result may be empty; it is cut to the longest
/// project name.
pub fn normalize_project_name(raw: &str) -> String {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-'))
        .collect();
    kept.trim_start_matches(['_', '-'])
        .chars()
        .take(NameKind::Project.max_len())
        .collect()
}

/// The one check of a name of any kind:
/// - a project name matches `^[a-z0-9][a-z0-9_-]*$`;
/// - a container name matches `^[a-zA-Z0-9][a-zA-Z0-9_.-]+$` (the engine's rule);
/// - service, network, volume, secret and config names match `^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`;
///
/// and none is longer than [`NameKind::max_len`].
pub fn validate_name(kind: NameKind, name: &str) -> Result<(), String> {
    let word = kind.as_str();
    let shown = shown(name);
    let max = kind.max_len();
    let length = name.chars().count();
    if length > max {
        return Err(format!(
            "invalid {word} name `{shown}`: a {word} name is at most {max} characters long, \
             and this one has {length}"
        ));
    }
    let mut chars = name.chars();
    let first = chars.next();
    let rest: Vec<char> = chars.collect();
    let ok = match kind {
        NameKind::Project => {
            first.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && rest
                    .iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        }
        NameKind::Container => {
            first.is_some_and(|c| c.is_ascii_alphanumeric())
                && !rest.is_empty()
                && rest.iter().copied().all(is_resource_name_char)
        }
        _ => {
            first.is_some_and(|c| c.is_ascii_alphanumeric())
                && rest.iter().copied().all(is_resource_name_char)
        }
    };
    if ok {
        return Ok(());
    }
    Err(match kind {
        NameKind::Project => format!(
            "invalid project name `{shown}`: a project name must contain only lowercase \
             letters, digits, `-` and `_`, and must start with a lowercase letter or a digit"
        ),
        NameKind::Container => format!(
            "invalid container name `{shown}`: a container name must be at least two \
             characters long, start with a letter or a digit, and contain only letters, \
             digits, `.`, `_` and `-`"
        ),
        _ => format!(
            "invalid {word} name `{shown}`: a {word} name must start with a letter or a digit \
             and contain only letters, digits, `.`, `_` and `-`"
        ),
    })
}

pub fn validate_project_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Project, name)
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

pub fn validate_container_name(name: &str) -> Result<(), String> {
    validate_name(NameKind::Container, name)
}

/// Every name of a typed project that fails [`validate_name`], with where it is: the project's
/// own name, the keys of the top-level sections and each service's `container_name`. The
/// daemon runs this on every project it is sent, since a project that did not come through
/// the loader was never checked.
pub fn check_project_names(project: &Project) -> Vec<(YamlPath, String)> {
    let mut problems = Vec::new();
    let root = YamlPath::root();
    if let Some(name) = &project.name
        && let Err(rule) = validate_project_name(name)
    {
        problems.push((root.key("name"), rule));
    }
    let sections = [
        ("services", project.services.keys().collect::<Vec<_>>()),
        ("networks", project.networks.keys().collect()),
        ("volumes", project.volumes.keys().collect()),
        ("secrets", project.secrets.keys().collect()),
        ("configs", project.configs.keys().collect()),
    ];
    for (section, keys) in sections {
        let Some(kind) = NameKind::of_section(section) else {
            continue;
        };
        for key in keys {
            if let Err(rule) = validate_name(kind, key) {
                problems.push((root.key(section).key(key.as_str()), rule));
            }
        }
    }
    for (name, service) in &project.services {
        if let Some(container) = &service.container_name
            && let Err(rule) = validate_container_name(container)
        {
            let path = root
                .key("services")
                .key(name.as_str())
                .key("container_name");
            problems.push((path, rule));
        }
    }
    problems
}

/// `root` joined with `parts`, each of which must be one plain path component (not empty,
/// not `.` or `..`, no separator, not absolute), so the result always lies inside `root`.
/// Names that passed [`validate_name`] always do; this is the second lock on the door for
/// every path built from input.
pub fn path_within(root: &Path, parts: &[&str]) -> Result<PathBuf, String> {
    let mut path = root.to_path_buf();
    for part in parts {
        let mut components = Path::new(part).components();
        match (components.next(), components.next()) {
            (Some(Component::Normal(c)), None) if c == std::ffi::OsStr::new(part) => {
                path.push(part);
            }
            _ => {
                return Err(format!(
                    "`{}` is not a plain name: it would lead outside {}",
                    shown(part),
                    root.display()
                ));
            }
        }
    }
    Ok(path)
}

/// A name as an error message shows it: at most 64 characters of it.
fn shown(name: &str) -> String {
    const SHOWN: usize = 64;
    if name.chars().count() <= SHOWN {
        name.to_string()
    } else {
        let head: String = name.chars().take(SHOWN).collect();
        format!("{head}…")
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
        for ok in ["web", "Web.1", "x_", "a_b-c.d", "withUlimits"] {
            assert_eq!(validate_service_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "", "my web", "web/1", "wéb", "a:b", "..", ".", "_x", "-", ".web",
        ] {
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
    fn names_that_would_leave_a_directory_are_refused() {
        for kind in [
            NameKind::Project,
            NameKind::Service,
            NameKind::Network,
            NameKind::Volume,
            NameKind::Secret,
            NameKind::Config,
            NameKind::Container,
        ] {
            for bad in [
                "..",
                ".",
                "../x",
                "../../../victimdir",
                "a/b",
                "/etc",
                "a\\b",
                "",
            ] {
                assert!(validate_name(kind, bad).is_err(), "{kind:?} {bad:?}");
            }
        }
    }

    #[test]
    fn names_are_bounded_in_length() {
        let long = "a".repeat(10_000);
        let err = validate_project_name(&long).expect_err("too long");
        assert!(err.contains("at most 63 characters"), "{err}");
        assert!(err.contains("this one has 10000"), "{err}");
        assert!(err.len() < 300, "the message quotes only the start: {err}");
        assert_eq!(validate_service_name(&"s".repeat(63)), Ok(()));
        assert!(validate_service_name(&"s".repeat(64)).is_err());
        assert_eq!(validate_volume_name(&"v".repeat(255)), Ok(()));
        assert!(validate_volume_name(&"v".repeat(256)).is_err());
        assert_eq!(normalize_project_name(&long).len(), 63);
    }

    #[test]
    fn paths_stay_within_their_root() {
        let root = Path::new("/data/vip");
        assert_eq!(
            path_within(root, &["app", "web.1"]),
            Ok(PathBuf::from("/data/vip/app/web.1"))
        );
        for bad in [
            "..",
            ".",
            "",
            "a/b",
            "/abs",
            "a/",
            "./a",
            "../../../victimdir",
        ] {
            let err = path_within(root, &["app", bad]).expect_err(bad);
            assert!(err.contains("not a plain name"), "{err}");
        }
    }

    #[test]
    fn every_name_of_a_project_is_checked() {
        let project = crate::model::project_from_json(serde_json::json!({
            "name": "Bad",
            "services": {
                "../../../victimdir": { "image": "x" },
                "web": { "image": "x", "container_name": "../web" },
            },
            "networks": { "..": {} },
            "volumes": { "data": {} },
            "secrets": { "a/b": { "file": "/x" } },
        }))
        .expect("the model reads");
        let paths: Vec<String> = check_project_names(&project)
            .into_iter()
            .map(|(path, _)| path.to_string())
            .collect();
        assert_eq!(paths.len(), 5, "{paths:?}");
        for expected in ["name", "victimdir", "container_name", "networks", "secrets"] {
            assert!(
                paths.iter().any(|p| p.contains(expected)),
                "{expected}: {paths:?}"
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
