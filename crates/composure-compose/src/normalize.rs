//! Defaults that need the project's context, applied to the typed model: project-scoped
//! resource names, the default network, implicit dependencies, `env_file` and `label_file`
//! contents and values looked up in the environment. After this the model is what
//! `docker compose config` prints.

use std::path::Path;

use indexmap::IndexMap;

use crate::diag::{Diagnostic, YamlPath};
use crate::dotenv;
use crate::model::{Condition, Dependency, Network, Project, Service};
use crate::source::{Source, absolutize};
use crate::yaml::YamlNode;

/// What normalisation needs to know besides the model.
pub struct Context<'a> {
    pub project_directory: &'a Path,
    /// The variables interpolation saw; bare `environment` entries and build args take their
    /// values from here.
    pub environment: &'a IndexMap<String, String>,
    pub source: &'a dyn Source,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("project_directory", &self.project_directory)
            .finish()
    }
}

pub fn normalize(project: &mut Project, doc: &YamlNode, ctx: &Context<'_>) -> Vec<Diagnostic> {
    let name = project.name.clone().unwrap_or_default();
    let mut diags = Vec::new();
    for (service_name, service) in &mut project.services {
        let path = YamlPath::root().key("services").key(service_name.as_str());
        if service.network_mode.is_none() && service.networks.is_empty() {
            service.networks.insert("default".into(), None);
        }
        if let Some(build) = &mut service.build {
            if build.context.is_empty() {
                build.context = ctx.project_directory.display().to_string();
            }
            if build.dockerfile.is_none() && build.dockerfile_inline.is_none() {
                build.dockerfile = Some("Dockerfile".into());
            }
            build.args = resolve_bare(std::mem::take(&mut build.args), ctx.environment, true);
        }
        add_implicit_dependencies(service);
        diags.extend(read_env_files(service, doc, &path, ctx));
        diags.extend(read_label_files(service, doc, &path, ctx));
        service.environment = resolve_bare(
            std::mem::take(&mut service.environment),
            ctx.environment,
            false,
        );
    }
    let uses_default = project
        .services
        .values()
        .any(|s| s.networks.contains_key("default"));
    if uses_default && !project.networks.contains_key("default") {
        project
            .networks
            .insert("default".into(), Network::default());
    }
    for (key, network) in &mut project.networks {
        network.name = Some(scoped_name(
            &name,
            key,
            network.name.take(),
            network.external,
        ));
    }
    for (key, volume) in &mut project.volumes {
        volume.name = Some(scoped_name(&name, key, volume.name.take(), volume.external));
    }
    for (key, secret) in &mut project.secrets {
        secret.name = Some(scoped_name(&name, key, secret.name.take(), secret.external));
    }
    for (key, config) in &mut project.configs {
        config.name = Some(scoped_name(&name, key, config.name.take(), config.external));
    }
    diags
}

/// Resources belong to the project (`myapp_data`) unless they are external or named.
fn scoped_name(project: &str, key: &str, name: Option<String>, external: Option<bool>) -> String {
    match name {
        Some(n) => n,
        None if external == Some(true) => key.to_string(),
        None => format!("{project}_{key}"),
    }
}

/// `KEY` without a value takes the value from the environment; unset, it stays bare in
/// `environment` (the container gets nothing) and is dropped from build args.
fn resolve_bare(
    vars: IndexMap<String, Option<String>>,
    env: &IndexMap<String, String>,
    drop_unset: bool,
) -> IndexMap<String, Option<String>> {
    vars.into_iter()
        .filter_map(|(k, v)| match v {
            Some(v) => Some((k, Some(v))),
            None => match env.get(&k) {
                Some(found) => Some((k, Some(found.clone()))),
                None if drop_unset => None,
                None => Some((k, None)),
            },
        })
        .collect()
}

/// `network_mode`, `ipc`, `pid`, `cgroup`, `uts` set to `service:x`, `links` and
/// `volumes_from` all need `x` started first: they become `depends_on` entries, unless the
/// file already says how to depend on `x`.
fn add_implicit_dependencies(service: &mut Service) {
    let mut implicit: Vec<(String, bool)> = Vec::new();
    for mode in [
        &service.network_mode,
        &service.ipc,
        &service.pid,
        &service.cgroup,
        &service.uts,
    ]
    .into_iter()
    .flatten()
    {
        if let Some(target) = mode.strip_prefix("service:") {
            implicit.push((target.to_string(), true));
        }
    }
    for link in &service.links {
        let target = link.split(':').next().unwrap_or(link);
        implicit.push((target.to_string(), true));
    }
    for from in &service.volumes_from {
        if !from.starts_with("container:") {
            let target = from.split(':').next().unwrap_or(from);
            implicit.push((target.to_string(), false));
        }
    }
    for (target, restart) in implicit {
        service
            .depends_on
            .entry(target)
            .or_insert_with(|| Dependency {
                condition: Condition::ServiceStarted,
                restart,
                required: true,
                ..Dependency::default()
            });
    }
}

/// Reads each `env_file` (in order, later files win) under the service's own `environment`,
/// which wins over all of them.
fn read_env_files(
    service: &mut Service,
    doc: &YamlNode,
    path: &YamlPath,
    ctx: &Context<'_>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut from_files: IndexMap<String, Option<String>> = IndexMap::new();
    for (i, env_file) in service.env_file.iter().enumerate() {
        let file = absolutize(ctx.project_directory, Path::new(&env_file.path));
        let at = path.key("env_file").index(i);
        let span = doc.span_at(&at);
        if !ctx.source.exists(&file) {
            if env_file.required {
                diags.push(
                    Diagnostic::error(span, at, format!("env file {} not found", file.display()))
                        .with_hint("create it, or mark it `required: false`"),
                );
            }
            continue;
        }
        match read_variables(&file, env_file.format.as_deref(), ctx) {
            Ok(vars) => from_files.extend(vars.into_iter().map(|(k, v)| (k, Some(v)))),
            Err(e) => diags.push(Diagnostic::error(
                span,
                at,
                format!("{}: {e}", file.display()),
            )),
        }
    }
    if !from_files.is_empty() {
        from_files.extend(std::mem::take(&mut service.environment));
        service.environment = from_files;
    }
    diags
}

/// Reads each `label_file` (in order, later files win) under the service's own `labels`,
/// which win over all of them. The files use the `env_file` format and must exist.
fn read_label_files(
    service: &mut Service,
    doc: &YamlNode,
    path: &YamlPath,
    ctx: &Context<'_>,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut from_files = IndexMap::new();
    for (i, label_file) in service.label_file.iter().enumerate() {
        let file = absolutize(ctx.project_directory, Path::new(label_file));
        let at = path.key("label_file").index(i);
        let span = doc.span_at(&at);
        if !ctx.source.exists(&file) {
            diags.push(Diagnostic::error(
                span,
                at,
                format!("label file {} not found", file.display()),
            ));
            continue;
        }
        match read_variables(&file, None, ctx) {
            Ok(labels) => from_files.extend(labels),
            Err(e) => diags.push(Diagnostic::error(
                span,
                at,
                format!("{}: {e}", file.display()),
            )),
        }
    }
    if !from_files.is_empty() {
        from_files.extend(std::mem::take(&mut service.labels));
        service.labels = from_files;
    }
    diags
}

/// A `KEY=VALUE` file in the `.env` format (or `raw`, taken literally), its `${VAR}`
/// references resolved against the interpolation variables.
fn read_variables(
    file: &Path,
    format: Option<&str>,
    ctx: &Context<'_>,
) -> Result<IndexMap<String, String>, String> {
    let text = ctx.source.read(file).map_err(|e| e.to_string())?;
    let lookup = |k: &str| ctx.environment.get(k).cloned();
    match format {
        Some("raw") => dotenv::parse_raw_env_with_lookup(&text, &lookup),
        _ => dotenv::parse_dotenv(&text, &lookup),
    }
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_scoped_to_the_project_unless_external_or_named() {
        assert_eq!(scoped_name("p", "data", None, None), "p_data");
        assert_eq!(scoped_name("p", "data", None, Some(true)), "data");
        assert_eq!(scoped_name("p", "data", Some("mine".into()), None), "mine");
    }

    #[test]
    fn bare_variables_take_the_environment() {
        let env: IndexMap<String, String> = [("FOO".to_string(), "bar".to_string())].into();
        let vars: IndexMap<String, Option<String>> = [
            ("FOO".into(), None),
            ("ZOT".into(), None),
            ("A".into(), Some("1".into())),
        ]
        .into();
        let env_out = resolve_bare(vars.clone(), &env, false);
        assert_eq!(env_out["FOO"].as_deref(), Some("bar"));
        assert_eq!(env_out["ZOT"], None);
        let args_out = resolve_bare(vars, &env, true);
        assert!(!args_out.contains_key("ZOT"));
    }

    #[test]
    fn label_files_are_read_in_order_under_the_labels() {
        // Spec, label_file: later files win over earlier ones, `labels` over all of them.
        let source = crate::source::MemorySource::new()
            .with(
                "/p/app.labels",
                "a=from-app\nb=from-app\n# a comment\nc=from-app\n",
            )
            .with("/p/extra.labels", "b=from-extra\n");
        let env = IndexMap::new();
        let ctx = Context {
            project_directory: Path::new("/p"),
            environment: &env,
            source: &source,
        };
        let mut project = Project::default();
        let service = Service {
            image: Some("x".into()),
            label_file: vec!["/p/app.labels".into(), "/p/extra.labels".into()],
            labels: [("c".to_string(), "from-labels".to_string())].into(),
            ..Service::default()
        };
        project.services.insert("web".into(), service);
        let doc = YamlNode::null(crate::diag::Span::none());
        let diags = normalize(&mut project, &doc, &ctx);
        assert!(diags.is_empty(), "{diags:?}");
        let labels = &project.services["web"].labels;
        assert_eq!(labels["a"], "from-app");
        assert_eq!(labels["b"], "from-extra");
        assert_eq!(labels["c"], "from-labels");

        project.services["web"].label_file = vec!["/p/missing.labels".into()];
        let diags = normalize(&mut project, &doc, &ctx);
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.contains("/p/missing.labels"), "{diags:?}");
        assert_eq!(diags[0].path.to_string(), "services.web.label_file[0]");
    }

    #[test]
    fn implicit_dependencies_do_not_override_explicit_ones() {
        let mut s = Service {
            network_mode: Some("service:net".into()),
            volumes_from: vec!["data:ro".into(), "container:abc".into()],
            links: vec!["db:database".into()],
            ..Service::default()
        };
        s.depends_on.insert(
            "db".into(),
            Dependency {
                condition: Condition::ServiceHealthy,
                ..Dependency::default()
            },
        );
        add_implicit_dependencies(&mut s);
        assert!(s.depends_on["net"].restart);
        assert!(!s.depends_on["data"].restart);
        assert_eq!(s.depends_on["db"].condition, Condition::ServiceHealthy);
        assert!(!s.depends_on.contains_key("container:abc") && s.depends_on.len() == 3);
    }
}
