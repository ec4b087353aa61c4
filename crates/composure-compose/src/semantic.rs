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
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        project: &'a Project,
        marks: &mut HashMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
        cycles: &mut Vec<Vec<&'a str>>,
    ) {
        marks.insert(name, Mark::Visiting);
        stack.push(name);
        if let Some(service) = project.services.get(name) {
            for dep in service.depends_on.keys() {
                let Some((dep, _)) = project.services.get_key_value(dep) else {
                    continue;
                };
                match marks.get(dep.as_str()) {
                    Some(Mark::Visiting) => {
                        let start = stack.iter().position(|s| *s == dep).unwrap_or(0);
                        let mut cycle = stack[start..].to_vec();
                        cycle.push(dep);
                        cycles.push(cycle);
                    }
                    Some(Mark::Done) => {}
                    None => visit(dep, project, marks, stack, cycles),
                }
            }
        }
        stack.pop();
        marks.insert(name, Mark::Done);
    }

    let mut marks = HashMap::new();
    let mut cycles = Vec::new();
    for name in project.services.keys() {
        if !marks.contains_key(name.as_str()) {
            visit(name, project, &mut marks, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
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
