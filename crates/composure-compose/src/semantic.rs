//! Checks across the whole project that the schema cannot express: references to services,
//! networks, volumes, secrets and configs that are not defined, dependency cycles, published
//! ports claimed twice, and settings that contradict each other.

use std::collections::HashMap;

use crate::diag::{Diagnostic, YamlPath};
use crate::model::{MountType, Project, Service};
use crate::yaml::YamlNode;

pub fn check(project: &Project, doc: &YamlNode) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let at = |path: YamlPath| doc.span_at(&path);
    // The schema lets `..` and names of any length through; the daemon builds paths and
    // container names from these.
    for (path, rule) in crate::names::check_project_names(project) {
        diags.push(Diagnostic::error(at(path.clone()), path, rule));
    }
    for (name, service) in &project.services {
        let base = YamlPath::root().key("services").key(name.as_str());
        for (dep, dependency) in &service.depends_on {
            if project.services.contains_key(dep) {
                continue;
            }
            let path = base.key("depends_on").key(dep.as_str());
            let msg = format!("service `{name}` depends on undefined service `{dep}`");
            if dependency.required {
                diags.push(
                    Diagnostic::error(at(path.clone()), path, msg).with_hint(hint(
                        dep,
                        project.services.keys(),
                        "define it under `services:`",
                    )),
                );
            } else {
                diags.push(Diagnostic::warning(
                    at(path.clone()),
                    path,
                    format!("{msg}; ignored because it is not required"),
                ));
            }
        }
        for network in service.networks.keys() {
            if !project.networks.contains_key(network) {
                let path = base.key("networks").key(network.as_str());
                diags.push(
                    Diagnostic::error(
                        at(path.clone()),
                        path,
                        format!("service `{name}` refers to undefined network `{network}`"),
                    )
                    .with_hint(hint(
                        network,
                        project.networks.keys(),
                        "declare it under the top-level `networks:`",
                    )),
                );
            }
        }
        for (i, volume) in service.volumes.iter().enumerate() {
            let Some(source) = volume
                .source
                .as_deref()
                .filter(|_| volume.kind == MountType::Volume)
            else {
                continue;
            };
            if !project.volumes.contains_key(source) {
                let path = base.key("volumes").index(i);
                diags.push(
                    Diagnostic::error(at(path.clone()), path, format!("service `{name}` refers to undefined volume `{source}`"))
                        .with_hint(hint(source, project.volumes.keys(), "declare it under the top-level `volumes:`, or write a path starting with `./` for a bind mount")),
                );
            }
        }
        for (kind, refs, defined) in [
            ("secret", &service.secrets, &project.secrets),
            ("config", &service.configs, &project.configs),
        ] {
            for (i, r) in refs.iter().enumerate() {
                if !defined.contains_key(&r.source) {
                    let path = base.key(format!("{kind}s")).index(i);
                    diags.push(
                        Diagnostic::error(
                            at(path.clone()),
                            path,
                            format!("service `{name}` refers to undefined {kind} `{}`", r.source),
                        )
                        .with_hint(hint(
                            &r.source,
                            defined.keys(),
                            &format!("declare it under the top-level `{kind}s:`"),
                        )),
                    );
                }
            }
        }
        if service.image.is_none() && service.build.is_none() && service.provider.is_none() {
            diags.push(
                Diagnostic::error(
                    at(base.clone()),
                    base.clone(),
                    format!("service `{name}` has neither an image nor a build context"),
                )
                .with_hint("add `image:` or `build:`"),
            );
        }
        let replicas = replicas(service);
        if let (Some(container), true) = (&service.container_name, replicas > 1) {
            let path = base.key("container_name");
            diags.push(
                Diagnostic::error(at(path.clone()), path, format!("container_name `{container}` cannot be shared by {replicas} replicas"))
                    .with_hint("container names are unique on a host: remove `container_name` to scale this service"),
            );
        }
    }
    diags.extend(dependency_cycles(project, doc));
    diags.extend(port_clashes(project, doc));
    diags
}

/// The number of replicas the file asks for (`deploy.replicas`, else `scale`, else 1).
pub fn replicas(service: &Service) -> u64 {
    service
        .deploy
        .as_ref()
        .and_then(|d| d.replicas)
        .or(service.scale)
        .unwrap_or(1)
}

fn hint<'a>(name: &str, known: impl Iterator<Item = &'a String>, otherwise: &str) -> String {
    let known: Vec<&str> = known.map(String::as_str).collect();
    match crate::names::closest_name(name, known.iter().copied()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => otherwise.to_string(),
    }
}

/// Each cycle in `depends_on`, reported once at the edge that closes it.
fn dependency_cycles(project: &Project, doc: &YamlNode) -> Vec<Diagnostic> {
    find_cycles(project)
        .into_iter()
        .map(|cycle| {
            let from = cycle[cycle.len() - 2];
            let to = cycle[cycle.len() - 1];
            let path = YamlPath::root()
                .key("services")
                .key(from)
                .key("depends_on")
                .key(to);
            Diagnostic::error(
                doc.span_at(&path),
                path,
                format!("dependency cycle detected: {}", cycle.join(" -> ")),
            )
            .with_hint("services cannot wait for each other; remove one of these dependencies")
        })
        .collect()
}

/// The cycles of the dependency graph, each as the services along it with the first one
/// repeated at the end. A depth-first walk that keeps its path on the heap: a chain of
/// thousands of services must not overflow the call stack.
fn find_cycles(project: &Project) -> Vec<Vec<&str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    let mut marks: HashMap<&str, Mark> = HashMap::new();
    let mut cycles = Vec::new();
    for root in project.services.keys() {
        if marks.contains_key(root.as_str()) {
            continue;
        }
        marks.insert(root, Mark::Visiting);
        // The services on the current path, each with the index of its next dependency.
        let mut path: Vec<(&str, usize)> = vec![(root, 0)];
        while let Some(&(name, next)) = path.last() {
            let dependency = project
                .services
                .get(name)
                .and_then(|s| s.depends_on.get_index(next))
                .map(|(dep, _)| dep);
            let Some(dependency) = dependency else {
                marks.insert(name, Mark::Done);
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            let Some((dep, _)) = project.services.get_key_value(dependency) else {
                continue;
            };
            match marks.get(dep.as_str()) {
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|(s, _)| *s == dep).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].iter().map(|(s, _)| *s).collect();
                    cycle.push(dep);
                    cycles.push(cycle);
                }
                Some(Mark::Done) => {}
                None => {
                    marks.insert(dep, Mark::Visiting);
                    path.push((dep, 0));
                }
            }
        }
    }
    cycles
}

/// Two services cannot publish the same host port (replicas of one service can: Composure's
/// proxy shares the port between them).
fn port_clashes(project: &Project, doc: &YamlNode) -> Vec<Diagnostic> {
    let mut seen: HashMap<(String, String, String), &str> = HashMap::new();
    let mut diags = Vec::new();
    for (name, service) in &project.services {
        for (i, port) in service.ports.iter().enumerate() {
            let Some(published) = port.published.as_deref().filter(|p| !p.is_empty()) else {
                continue;
            };
            let host_ip = match port.host_ip.as_deref() {
                None | Some("") | Some("0.0.0.0") | Some("::") => "*".to_string(),
                Some(ip) => ip.to_string(),
            };
            let key = (
                host_ip.clone(),
                published.to_string(),
                port.protocol.clone(),
            );
            match seen.get(&key) {
                Some(other) if *other != name.as_str() => {
                    let path = YamlPath::root()
                        .key("services")
                        .key(name.as_str())
                        .key("ports")
                        .index(i);
                    let addr = if host_ip == "*" {
                        String::new()
                    } else {
                        format!("{host_ip}:")
                    };
                    diags.push(
                        Diagnostic::error(doc.span_at(&path), path, format!("port {addr}{published}/{} is already published by service `{other}`", port.protocol))
                            .with_hint("publish a different host port, or bind each to a different host IP"),
                    );
                }
                Some(_) => {}
                None => {
                    seen.insert(key, name.as_str());
                }
            }
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dependency, Service};

    /// A project whose services depend on each other as `edges` say, with an empty document
    /// (positions do not matter here).
    fn project(edges: &[(&str, &[&str])]) -> Project {
        let mut project = Project::default();
        for (name, deps) in edges {
            let service = Service {
                image: Some("x".into()),
                depends_on: deps
                    .iter()
                    .map(|d| (d.to_string(), Dependency::default()))
                    .collect(),
                ..Service::default()
            };
            project.services.insert(name.to_string(), service);
        }
        project
    }

    fn cycle_messages(project: &Project) -> Vec<String> {
        let doc = YamlNode::null(crate::diag::Span::none());
        dependency_cycles(project, &doc)
            .into_iter()
            .map(|d| d.message)
            .collect()
    }

    #[test]
    fn each_cycle_is_reported_once_from_where_the_walk_entered_it() {
        let p = project(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a", "d"]),
            ("d", &[]),
            ("e", &["e"]),
        ]);
        assert_eq!(
            cycle_messages(&p),
            [
                "dependency cycle detected: a -> b -> c -> a",
                "dependency cycle detected: e -> e"
            ]
        );
    }

    #[test]
    fn shared_dependencies_are_not_cycles() {
        let p = project(&[
            ("web", &["db", "cache"]),
            ("cache", &["db"]),
            ("db", &[]),
            ("worker", &["db", "missing"]),
        ]);
        assert_eq!(cycle_messages(&p), Vec::<String>::new());
    }

    #[test]
    fn a_dependency_chain_longer_than_the_call_stack_allows_is_walked() {
        // s0 -> s1 -> ... -> s{n-1}, and the last one back to s0: a walk that recursed once
        // per service would overflow a test thread's stack long before the end.
        let n = 100_000;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let mut p = Project::default();
        for i in 0..n {
            let next = &names[(i + 1) % n];
            let service = Service {
                image: Some("x".into()),
                depends_on: [(next.clone(), Dependency::default())]
                    .into_iter()
                    .collect(),
                ..Service::default()
            };
            p.services.insert(names[i].clone(), service);
        }
        let messages = cycle_messages(&p);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].ends_with(&format!("s{} -> s0", n - 1)));
    }
}
