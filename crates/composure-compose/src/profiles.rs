//! Service selection by profiles and by name (spec chapter "Profiles").
//!
//! A service with `profiles:` is enabled only when one of them is active. Naming services
//! to run narrows the project to them and everything they depend on, and turns on the
//! profiles of a named service that would otherwise be disabled. A kept service must not
//! depend on a disabled one: compose reports that instead of quietly enabling it.

use std::collections::{HashMap, HashSet};

use crate::diag::{Diagnostic, Span, YamlPath};
use crate::names;
use crate::yaml::{Value, YamlNode};

/// The profile name that activates every profile.
const ALL_PROFILES: &str = "*";

/// Attributes whose `service:<name>` value shares a namespace with another service.
const SHARED_NAMESPACE_KEYS: [&str; 5] = ["network_mode", "ipc", "pid", "cgroup", "uts"];

/// Keeps the services that the active profiles enable, narrowed to `selected_services` and
/// their transitive dependencies when that list is not empty, and removes all others from
/// `doc`. Returns the errors found: unknown selected services, and kept services that need a
/// service the profiles disable.
pub fn apply_profiles(
    doc: &mut YamlNode,
    active: &[String],
    selected_services: &[String],
) -> Vec<Diagnostic> {
    let services = read_services(doc);
    let by_name = index_by_name(&services);
    let mut errors = unknown_selection_errors(&services, &by_name, selected_services);
    let profiles = ActiveProfiles::new(&services, active, selected_services);
    let kept = kept_services(&services, &by_name, &profiles, selected_services);
    errors.extend(disabled_dependency_errors(
        &services, &by_name, &profiles, &kept,
    ));
    if let Some(map) = doc.get_mut("services").and_then(YamlNode::as_map_mut) {
        map.retain(|name, _| kept.contains(name.name.as_str()));
    }
    errors
}

/// Services by name: dependencies are looked up here, so that a long chain of services
/// costs linear time, not quadratic.
type ByName<'s> = HashMap<&'s str, &'s ServiceInfo>;

fn index_by_name(services: &[ServiceInfo]) -> ByName<'_> {
    services.iter().map(|s| (s.name.as_str(), s)).collect()
}

/// What selection needs to know about one service.
struct ServiceInfo {
    name: String,
    profiles: Vec<String>,
    dependencies: Vec<Dependency>,
}

/// A reference from one service to another that makes the first need the second.
struct Dependency {
    target: String,
    /// `depends_on` entries may say `required: false`; other references are always required.
    required: bool,
    /// Declared under `depends_on` (where `required: false` is possible).
    declared: bool,
    path: YamlPath,
    span: Span,
}

fn read_services(doc: &YamlNode) -> Vec<ServiceInfo> {
    let Some(services) = doc.get("services").and_then(YamlNode::as_map) else {
        return Vec::new();
    };
    services
        .iter()
        .map(|(key, service)| {
            let path = YamlPath::root().key("services").key(key.name.as_str());
            ServiceInfo {
                name: key.name.clone(),
                profiles: service
                    .get("profiles")
                    .and_then(YamlNode::as_seq)
                    .map(|items| items.iter().filter_map(YamlNode::scalar_text).collect())
                    .unwrap_or_default(),
                dependencies: dependencies(service, &path),
            }
        })
        .collect()
}

fn dependencies(service: &YamlNode, path: &YamlPath) -> Vec<Dependency> {
    let mut found = depends_on(service, path);
    for key in ["links", "volumes_from"] {
        for (i, item) in service
            .get(key)
            .and_then(YamlNode::as_seq)
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let Some(text) = item.as_str() else { continue };
            // `container:<name>` names a container outside the project.
            if key == "volumes_from" && text.starts_with("container:") {
                continue;
            }
            let target = text.split(':').next().unwrap_or(text);
            found.push(implicit(target, path.key(key).index(i), item));
        }
    }
    for key in SHARED_NAMESPACE_KEYS {
        let Some(node) = service.get(key) else {
            continue;
        };
        if let Some(target) = node.as_str().and_then(|v| v.strip_prefix("service:")) {
            found.push(implicit(target, path.key(key), node));
        }
    }
    found
}

fn implicit(target: &str, path: YamlPath, node: &YamlNode) -> Dependency {
    Dependency {
        target: target.to_string(),
        required: true,
        declared: false,
        path,
        span: node.span.clone(),
    }
}

/// `depends_on` as a list of names or as a mapping of names to conditions.
fn depends_on(service: &YamlNode, path: &YamlPath) -> Vec<Dependency> {
    let path = path.key("depends_on");
    match service.get("depends_on").map(|n| &n.value) {
        Some(Value::Seq(items)) => items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| {
                Some(Dependency {
                    target: item.scalar_text()?,
                    required: true,
                    declared: true,
                    path: path.index(i),
                    span: item.span.clone(),
                })
            })
            .collect(),
        Some(Value::Map(entries)) => entries
            .iter()
            .map(|(key, entry)| Dependency {
                target: key.name.clone(),
                required: !entry.get("required").is_some_and(is_false),
                declared: true,
                path: path.key(key.name.as_str()),
                span: key.span.clone(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn is_false(node: &YamlNode) -> bool {
    match &node.value {
        Value::Bool(b) => !b,
        Value::String(s) => s.eq_ignore_ascii_case("false"),
        _ => false,
    }
}

/// The profiles in force: the ones asked for, plus those of named services that they
/// would not enable otherwise.
struct ActiveProfiles {
    all: bool,
    names: HashSet<String>,
}

impl ActiveProfiles {
    fn new(services: &[ServiceInfo], active: &[String], selected: &[String]) -> Self {
        let mut profiles = ActiveProfiles {
            all: active.iter().any(|p| p == ALL_PROFILES),
            names: active.iter().cloned().collect(),
        };
        // With no profile asked for, `docker compose` has the empty profile active (it
        // splits an empty `COMPOSE_PROFILES`), so `profiles: ["", debug]` runs by default.
        if active.is_empty() {
            profiles.names.insert(String::new());
        }
        let turned_on: Vec<String> = services
            .iter()
            .filter(|s| selected.contains(&s.name) && !profiles.enables(s))
            .flat_map(|s| s.profiles.iter().cloned())
            .collect();
        profiles.names.extend(turned_on);
        profiles
    }

    fn enables(&self, service: &ServiceInfo) -> bool {
        self.all
            || service.profiles.is_empty()
            || service.profiles.iter().any(|p| self.names.contains(p))
    }
}

fn kept_services<'s>(
    services: &'s [ServiceInfo],
    by_name: &ByName<'s>,
    profiles: &ActiveProfiles,
    selected: &[String],
) -> HashSet<&'s str> {
    let enabled = |name: &str| by_name.get(name).copied().filter(|s| profiles.enables(s));
    if selected.is_empty() {
        return services
            .iter()
            .filter(|s| profiles.enables(s))
            .map(|s| s.name.as_str())
            .collect();
    }
    let mut kept = HashSet::new();
    let mut pending: Vec<&ServiceInfo> = selected.iter().filter_map(|n| enabled(n)).collect();
    while let Some(service) = pending.pop() {
        if kept.insert(service.name.as_str()) {
            pending.extend(
                service
                    .dependencies
                    .iter()
                    .filter_map(|d| enabled(&d.target)),
            );
        }
    }
    kept
}

fn disabled_dependency_errors(
    services: &[ServiceInfo],
    by_name: &ByName<'_>,
    profiles: &ActiveProfiles,
    kept: &HashSet<&str>,
) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    for service in services.iter().filter(|s| kept.contains(s.name.as_str())) {
        for dependency in service.dependencies.iter().filter(|d| d.required) {
            // A target that does not exist at all is the consistency check's business.
            let Some(target) = by_name.get(dependency.target.as_str()) else {
                continue;
            };
            if !profiles.enables(target) {
                errors.push(disabled_dependency(service, target, dependency));
            }
        }
    }
    errors
}

fn disabled_dependency(
    service: &ServiceInfo,
    target: &ServiceInfo,
    dependency: &Dependency,
) -> Diagnostic {
    let quoted: Vec<String> = target.profiles.iter().map(|p| format!("`{p}`")).collect();
    let by = match quoted.as_slice() {
        [one] => format!("profile {one}"),
        many => format!("profiles {}", many.join(", ")),
    };
    let mut hint = match quoted.as_slice() {
        [one] => format!("activate profile {one}"),
        many => format!("activate one of the profiles {}", many.join(", ")),
    };
    if dependency.declared {
        hint.push_str(", or mark the dependency `required: false`");
    }
    Diagnostic::error(
        dependency.span.clone(),
        dependency.path.clone(),
        format!(
            "service `{}` depends on `{}`, which is disabled by {by}",
            service.name, target.name
        ),
    )
    .with_hint(hint)
}

fn unknown_selection_errors(
    services: &[ServiceInfo],
    by_name: &ByName<'_>,
    selected: &[String],
) -> Vec<Diagnostic> {
    selected
        .iter()
        .filter(|name| !by_name.contains_key(name.as_str()))
        .map(|name| {
            let error = Diagnostic::global(format!("no such service: `{name}`"));
            match names::closest_name(name, services.iter().map(|s| s.name.as_str())) {
                Some(close) => error.with_hint(format!("did you mean `{close}`?")),
                None => error,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::{Limits, parse};

    /// The example of the spec's "Profiles" chapter.
    const SPEC_EXAMPLE: &str = "\
services:
  foo:
    image: foo
  bar:
    image: bar
    profiles:
      - test
  baz:
    image: baz
    depends_on:
      - bar
    profiles:
      - test
  zot:
    image: zot
    depends_on:
      - bar
    profiles:
      - debug
";

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    /// Applies the selection; returns the kept service names in document order and the
    /// error messages.
    fn select(text: &str, active: &[&str], selected: &[&str]) -> (Vec<String>, Vec<Diagnostic>) {
        let mut doc = parse(text, "compose.yaml", &Limits::default())
            .expect("parses")
            .remove(0);
        let errors = apply_profiles(&mut doc, &strings(active), &strings(selected));
        let kept = doc
            .get("services")
            .and_then(YamlNode::as_map)
            .map(|m| m.keys().map(|k| k.name.clone()).collect())
            .unwrap_or_default();
        (kept, errors)
    }

    fn kept(text: &str, active: &[&str], selected: &[&str]) -> Vec<String> {
        let (kept, errors) = select(text, active, selected);
        assert_eq!(errors, vec![], "unexpected errors");
        kept
    }

    #[test]
    fn no_active_profile_keeps_services_without_profiles() {
        assert_eq!(kept(SPEC_EXAMPLE, &[], &[]), ["foo"]);
    }

    #[test]
    fn an_active_profile_enables_its_services() {
        assert_eq!(kept(SPEC_EXAMPLE, &["test"], &[]), ["foo", "bar", "baz"]);
        assert_eq!(
            kept(SPEC_EXAMPLE, &["debug", "test"], &[]),
            ["foo", "bar", "baz", "zot"]
        );
    }

    #[test]
    fn an_empty_profile_name_is_active_when_no_profile_is_asked_for() {
        let text = "services:\n  a:\n    image: a\n    profiles: [\"\", extra]\n  b:\n    image: b\n    profiles: [extra]\n";
        assert_eq!(kept(text, &[], &[]), ["a"]);
        assert_eq!(kept(text, &["extra"], &[]), ["a", "b"]);
        assert_eq!(kept(text, &["other"], &[]), Vec::<String>::new());
    }

    #[test]
    fn star_activates_every_profile() {
        assert_eq!(
            kept(SPEC_EXAMPLE, &["*"], &[]),
            ["foo", "bar", "baz", "zot"]
        );
    }

    #[test]
    fn kept_service_needing_a_disabled_one_is_an_error() {
        let (kept, errors) = select(SPEC_EXAMPLE, &["debug"], &[]);
        assert_eq!(kept, ["foo", "zot"]);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(
            e.message,
            "service `zot` depends on `bar`, which is disabled by profile `test`"
        );
        assert_eq!(e.path.to_string(), "services.zot.depends_on[0]");
        assert_eq!((e.span.line, e.span.column), (17, 9));
        assert_eq!(
            e.hint.as_deref(),
            Some("activate profile `test`, or mark the dependency `required: false`")
        );
    }

    #[test]
    fn selecting_a_service_turns_on_its_profile() {
        assert_eq!(kept(SPEC_EXAMPLE, &[], &["bar"]), ["bar"]);
    }

    #[test]
    fn selecting_a_service_pulls_in_its_dependencies() {
        assert_eq!(kept(SPEC_EXAMPLE, &[], &["baz"]), ["bar", "baz"]);
    }

    #[test]
    fn selection_does_not_enable_a_dependency_of_another_profile() {
        let (kept, errors) = select(SPEC_EXAMPLE, &[], &["zot"]);
        assert_eq!(kept, ["zot"]);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert!(
            errors[0].message.contains("`zot` depends on `bar`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn selection_with_the_dependency_profile_active() {
        assert_eq!(kept(SPEC_EXAMPLE, &["test"], &["zot"]), ["bar", "zot"]);
    }

    #[test]
    fn selecting_an_enabled_service_does_not_turn_on_its_other_profiles() {
        let text = "\
services:
  a:
    image: a
    profiles: [x, y]
    depends_on: {b: {condition: service_started, required: false}}
  b: {image: b, profiles: [y]}
";
        assert_eq!(kept(text, &["x"], &["a"]), ["a"]);
        assert_eq!(kept(text, &["y"], &["a"]), ["a", "b"]);
    }

    #[test]
    fn profiles_are_kept_on_the_services_they_enable() {
        let text = "services:\n  web: {image: w}\n  tools: {image: t, profiles: [debug, dev]}\n";
        assert_eq!(kept(text, &[], &[]), ["web"]);
        let mut doc = parse(text, "c.yaml", &Limits::default())
            .expect("parses")
            .remove(0);
        assert_eq!(apply_profiles(&mut doc, &strings(&["debug"]), &[]), vec![]);
        let profiles = doc.at(&YamlPath::root()
            .key("services")
            .key("tools")
            .key("profiles"));
        let profiles: Vec<String> = profiles
            .and_then(YamlNode::as_seq)
            .map(|items| items.iter().filter_map(YamlNode::scalar_text).collect())
            .unwrap_or_default();
        assert_eq!(profiles, ["debug", "dev"]);
    }

    #[test]
    fn dependencies_are_followed_transitively() {
        let text = "\
services:
  a: {image: a, depends_on: [b]}
  b: {image: b, depends_on: {c: {condition: service_healthy}}}
  c: {image: c}
  d: {image: d}
";
        assert_eq!(kept(text, &[], &["a"]), ["a", "b", "c"]);
        assert_eq!(kept(text, &[], &["b", "d"]), ["b", "c", "d"]);
        assert_eq!(kept(text, &[], &[]), ["a", "b", "c", "d"]);
    }

    #[test]
    fn dependency_cycles_terminate() {
        let text = "\
services:
  a: {image: a, depends_on: [b]}
  b: {image: b, depends_on: [a]}
  c: {image: c}
";
        assert_eq!(kept(text, &[], &["a"]), ["a", "b"]);
    }

    #[test]
    fn optional_dependency_on_a_disabled_service_is_dropped_quietly() {
        let text = "\
services:
  web:
    image: w
    depends_on:
      cache: {condition: service_started, required: false}
  cache: {image: c, profiles: [cache]}
";
        assert_eq!(kept(text, &[], &["web"]), ["web"]);
        assert_eq!(kept(text, &[], &[]), ["web"]);
        assert_eq!(kept(text, &["cache"], &["web"]), ["web", "cache"]);
    }

    #[test]
    fn mapping_dependency_error_points_at_the_key() {
        let text = "\
services:
  web:
    image: w
    depends_on:
      cache: {condition: service_started}
  cache: {image: c, profiles: [cache, fast]}
";
        let (_, errors) = select(text, &[], &[]);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(e.path.to_string(), "services.web.depends_on.cache");
        assert_eq!((e.span.line, e.span.column), (5, 7));
        assert!(
            e.message.ends_with("disabled by profiles `cache`, `fast`"),
            "{}",
            e.message
        );
    }

    #[test]
    fn implicit_dependencies_are_followed() {
        let text = "\
services:
  app:
    image: a
    network_mode: service:net
    ipc: service:shm
    pid: service:proc
    uts: service:host1
    links: ['db:database']
    volumes_from: [data, 'logs:ro', 'container:outside']
  net: {image: n}
  shm: {image: s}
  proc: {image: p}
  host1: {image: h}
  db: {image: d}
  data: {image: v}
  logs: {image: l}
  other: {image: o}
";
        let expected = ["app", "net", "shm", "proc", "host1", "db", "data", "logs"];
        assert_eq!(kept(text, &[], &["app"]), expected);
    }

    #[test]
    fn implicit_dependency_on_a_disabled_service_is_an_error() {
        let text = "\
services:
  app:
    image: a
    network_mode: service:vpn
  vpn: {image: v, profiles: [vpn]}
";
        let (kept, errors) = select(text, &[], &[]);
        assert_eq!(kept, ["app"]);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        let e = &errors[0];
        assert_eq!(e.path.to_string(), "services.app.network_mode");
        assert_eq!((e.span.line, e.span.column), (4, 19));
        assert_eq!(e.hint.as_deref(), Some("activate profile `vpn`"));
    }

    #[test]
    fn unknown_selected_service_is_an_error() {
        let (kept, errors) = select(SPEC_EXAMPLE, &[], &["fooo", "nope"]);
        assert_eq!(kept, Vec::<String>::new());
        let messages: Vec<&str> = errors.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            messages,
            ["no such service: `fooo`", "no such service: `nope`"]
        );
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `foo`?"));
        assert_eq!(errors[1].hint, None);
    }

    /// `s0 <- s1 <- ... <- s{n-1}`, each depending on the one before; `s0` has `first`.
    fn chain(n: usize, first: &str) -> String {
        let mut text = format!("services:\n  s0: {{image: x{first}}}\n");
        for i in 1..n {
            text.push_str(&format!("  s{i}: {{image: x, depends_on: [s{}]}}\n", i - 1));
        }
        text
    }

    #[test]
    fn a_long_dependency_chain_is_followed_to_its_end() {
        // Dependencies are looked up by name; the loader benchmark's generated files are
        // such chains, thousands of services long.
        let n = 3000;
        let (kept, errors) = select(&chain(n, ""), &[], &[&format!("s{}", n - 1)]);
        assert_eq!(kept.len(), n);
        assert_eq!(errors, vec![]);
        let (kept, errors) = select(&chain(n, ", profiles: [debug]"), &[], &[]);
        assert_eq!(kept.len(), n - 1);
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].path.to_string(), "services.s1.depends_on[0]");
    }

    #[test]
    fn a_document_without_services_is_left_alone() {
        assert_eq!(kept("name: x\n", &["a"], &[]), Vec::<String>::new());
    }
}
