//! The listeners a project asks the proxy for: one per single published port, TCP or UDP
//! (all its traffic to one service), and one per address its `x-composure` routes name
//! (several services, by host and path, over HTTP or HTTPS).

use std::path::Path;

use composure_compose::Diagnostic;
use composure_compose::model::Project;
use composure_net::routing::Routing;
use composure_net::{ListenerConfig, RouteConfig};

use crate::ingress::proxied_ports;

/// One listener a project wants.
#[derive(Debug)]
pub(crate) struct Wanted {
    pub config: ListenerConfig,
    /// Who asks for it, for messages: "service `web`", "routes of services `web`, `api`".
    pub owner: String,
}

/// The listeners of `project` (certificate paths relative to `working_dir`), and why some
/// of what it declares cannot be served.
pub(crate) fn wanted(project: &Project, working_dir: &Path) -> (Vec<Wanted>, Vec<String>) {
    let (ports, mut errors) = proxied_ports(project);
    let mut wanted: Vec<Wanted> = ports
        .into_iter()
        .map(|port| Wanted {
            config: ListenerConfig {
                addr: port.addr,
                protocol: port.protocol,
                routes: vec![RouteConfig::to_service(port.service.clone(), port.target)],
                tls: Vec::new(),
            },
            owner: format!("service `{}`", port.service),
        })
        .collect();
    // A project the API took has valid routes; these are for projects stored before, and
    // routes that clash with another service's rolled-back version.
    let (routing, problems) = Routing::parse(project);
    errors.extend(problems.iter().map(describe));
    wanted.extend(
        routing
            .listeners(working_dir)
            .into_iter()
            .map(|config| Wanted {
                owner: routes_owner(&config),
                config,
            }),
    );
    (wanted, errors)
}

/// `services.api.x-composure.routes[0].path: service `api`: ...`, and the hint.
pub(crate) fn describe(problem: &Diagnostic) -> String {
    let mut text = format!("{}: {}", problem.path, problem.message);
    if let Some(hint) = &problem.hint {
        text.push_str(&format!(" (hint: {hint})"));
    }
    text
}

fn routes_owner(config: &ListenerConfig) -> String {
    let mut services: Vec<&str> = Vec::new();
    for route in &config.routes {
        if !services.contains(&route.service.as_str()) {
            services.push(&route.service);
        }
    }
    let names: Vec<String> = services.iter().map(|s| format!("`{s}`")).collect();
    let plural = if names.len() == 1 { "" } else { "s" };
    format!("routes of service{plural} {}", names.join(", "))
}
