//! Routes declared under a service's `x-composure:` key: several services behind one
//! HTTP or HTTPS listener, chosen by host and path.
//!
//! ```yaml
//! services:
//!   api:
//!     x-composure:
//!       routes:
//!         - listen: 443              # host port, or "127.0.0.1:443"; default 80, 443 with tls
//!           host: api.example.com    # optional: exact, or *.example.com
//!           path: /v1                # optional prefix, matched segment by segment
//!           port: 8080               # port in the container; optional if the service has one
//!           tls: {cert: ./certs/api.pem, key: ./certs/api.key}
//! ```
//!
//! Routes of every service of a project with the same `listen` address share one HTTP
//! listener. A listener terminates TLS for all its routes or for none; with several
//! certificates, the client's server name (SNI) picks one by the routes' hosts.
//!
//! [`Routing::parse`] is pure: it reads the declarations and checks them against each
//! other and against the project's published ports, and returns every problem at once,
//! each with its YAML path and a hint. [`Routing::check_certificates`] is the one step
//! that reads files.

mod check;
mod parse;

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use composure_compose::model::Project;
use composure_compose::{Diagnostic, Span, YamlPath};

use crate::config::{ListenerConfig, Protocol, RouteConfig};
use crate::tls::{HostCertificate, TlsFiles};
use crate::upstream::UpstreamConfig;

/// One route as declared, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeclaredRoute {
    pub service: String,
    /// Where it is declared: `services.api.x-composure.routes[0]`.
    pub at: YamlPath,
    pub listen: SocketAddr,
    /// Whether `listen` was written (or is the default).
    pub listen_given: bool,
    /// Lower case; `None` for every host.
    pub host: Option<String>,
    /// As written, starting with `/`; `None` for every path.
    pub path: Option<String>,
    /// The port in the container.
    pub port: u16,
    /// As written: relative paths are relative to the project directory.
    pub tls: Option<TlsFiles>,
}

impl DeclaredRoute {
    /// The path prefix as the router compares it: `/v1/` is `/v1`, `/` is every path.
    fn path_key(&self) -> &str {
        self.path.as_deref().unwrap_or("").trim_end_matches('/')
    }

    /// `api.example.com/v1`, `*/v1`, `api.example.com/`: for messages.
    fn describe(&self) -> String {
        format!(
            "{}{}",
            self.host.as_deref().unwrap_or("*"),
            self.path.as_deref().unwrap_or("/")
        )
    }
}

/// The valid routes of a project.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routing {
    routes: Vec<DeclaredRoute>,
}

impl Routing {
    /// Reads every service's `x-composure.routes` and checks them. Returns the routes that
    /// are valid (of two that clash, the first declared is kept) and every problem found.
    pub fn parse(project: &Project) -> (Routing, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let mut declared = Vec::new();
        for (name, service) in &project.services {
            declared.extend(parse::service_routes(name, service, &mut diags));
        }
        let routes = check::clashes(project, declared, &mut diags);
        (Routing { routes }, diags)
    }

    /// Every problem of the project's routes, certificate files included: what the daemon
    /// refuses a project for, and `composure config` reports.
    pub fn check(project: &Project, project_dir: &Path) -> Vec<Diagnostic> {
        let (routing, mut problems) = Routing::parse(project);
        problems.extend(routing.check_certificates(project_dir));
        problems
    }

    /// The proxy's settings for `service`'s replicas: the defaults, with its
    /// `x-composure.response_timeout` if set.
    pub fn upstream_config(project: &Project, service: &str) -> UpstreamConfig {
        let timeout = project
            .services
            .get(service)
            .and_then(|s| parse::response_timeout(service, s));
        UpstreamConfig::with_response_timeout(timeout)
    }

    pub fn routes(&self) -> &[DeclaredRoute] {
        &self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// The HTTP listeners the routes need, one per `listen` address in the order first
    /// declared, with certificate paths resolved against `project_dir`.
    pub fn listeners(&self, project_dir: &Path) -> Vec<ListenerConfig> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for route in &self.routes {
            if !addrs.contains(&route.listen) {
                addrs.push(route.listen);
            }
        }
        addrs
            .into_iter()
            .map(|addr| {
                let group: Vec<&DeclaredRoute> =
                    self.routes.iter().filter(|r| r.listen == addr).collect();
                ListenerConfig {
                    addr,
                    protocol: Protocol::Http,
                    routes: group
                        .iter()
                        .map(|r| RouteConfig {
                            host: r.host.clone(),
                            path_prefix: r.path.clone(),
                            service: r.service.clone(),
                            port: r.port,
                        })
                        .collect(),
                    tls: certificates(&group, project_dir),
                }
            })
            .collect()
    }

    /// Reads each certificate and key named by a route (once per pair) and reports those
    /// that are missing, do not parse, or do not belong together. The only step that does
    /// IO.
    pub fn check_certificates(&self, project_dir: &Path) -> Vec<Diagnostic> {
        let mut checked: Vec<TlsFiles> = Vec::new();
        let mut diags = Vec::new();
        for route in &self.routes {
            let Some(files) = &route.tls else { continue };
            let resolved = resolve(files, project_dir);
            if checked.contains(&resolved) {
                continue;
            }
            checked.push(resolved.clone());
            if let Some(problem) = certificate_problem(files, &resolved) {
                diags.push(
                    error(
                        route.at.key("tls"),
                        format!("service `{}`: {problem}", route.service),
                    )
                    .with_hint(format!(
                        "the daemon reads the files, relative to the project directory {}: \
                         `cert` a PEM certificate chain, leaf first; `key` its PEM private key \
                         (PKCS#8, PKCS#1 or SEC1)",
                        project_dir.display()
                    )),
                );
            }
        }
        diags
    }
}

/// The certificates of one listener: none without TLS; one for every name when its routes
/// share one; otherwise one per host (the routes without a host give the default).
fn certificates(group: &[&DeclaredRoute], project_dir: &Path) -> Vec<HostCertificate> {
    let mut distinct: Vec<&TlsFiles> = Vec::new();
    for files in group.iter().filter_map(|r| r.tls.as_ref()) {
        if !distinct.contains(&files) {
            distinct.push(files);
        }
    }
    match distinct.as_slice() {
        [] => Vec::new(),
        [files] => vec![HostCertificate {
            host: None,
            files: resolve(files, project_dir),
        }],
        _ => {
            let mut certs: Vec<HostCertificate> = Vec::new();
            for route in group {
                let Some(files) = &route.tls else { continue };
                if !certs.iter().any(|c| c.host == route.host) {
                    certs.push(HostCertificate {
                        host: route.host.clone(),
                        files: resolve(files, project_dir),
                    });
                }
            }
            certs
        }
    }
}

/// `files` made absolute against `project_dir` (an absolute path stays as it is), without
/// `.` components.
fn resolve(files: &TlsFiles, project_dir: &Path) -> TlsFiles {
    let absolute = |path: &Path| -> PathBuf {
        project_dir
            .join(path)
            .components()
            .filter(|c| *c != Component::CurDir)
            .collect()
    };
    TlsFiles {
        cert: absolute(&files.cert),
        key: absolute(&files.key),
    }
}

/// What is wrong with a certificate and key pair, in words; `None` if they serve.
fn certificate_problem(written: &TlsFiles, resolved: &TlsFiles) -> Option<String> {
    for (what, path, full) in [
        ("certificate", &written.cert, &resolved.cert),
        ("key", &written.key, &resolved.key),
    ] {
        if let Err(e) = std::fs::metadata(full) {
            return Some(format!(
                "{what} file `{}` cannot be read ({}): {e}",
                path.display(),
                full.display()
            ));
        }
    }
    resolved.check().err().map(|e| {
        format!(
            "certificate `{}` and key `{}` do not serve: {e}",
            written.cert.display(),
            written.key.display()
        )
    })
}

fn error(at: YamlPath, message: String) -> Diagnostic {
    Diagnostic::error(Span::none(), at, message)
}

#[cfg(test)]
mod tests;
