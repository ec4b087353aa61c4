//! `composure config`: the project as Composure understands it, in canonical long syntax.

use std::process::ExitCode;

use anyhow::Context;
use composure_compose::LoadError;
use composure_net::routing::Routing;

use crate::cli::{ConfigArgs, Format, GlobalArgs};
use crate::commands::project;

pub fn run(global: &GlobalArgs, args: &ConfigArgs) -> anyhow::Result<ExitCode> {
    let mut options = project::load_options(global, &args.service_names)?;
    options.interpolate = !args.no_interpolate;
    let loaded = project::load(&options)?;
    let project = &loaded.project;
    if options.interpolate {
        // What the daemon would refuse the project for; `${VAR}` left as written cannot
        // be checked.
        let mut problems = Routing::check(project, &loaded.project_directory);
        problems.extend(composure_core::placement::gpu::check_project(project));
        if !problems.is_empty() {
            return Err(LoadError::new(problems).into());
        }
    }
    if args.quiet {
        return Ok(ExitCode::SUCCESS);
    }
    let text = if args.services {
        lines(sorted(project.services.keys()))
    } else if args.volumes {
        lines(sorted(project.volumes.keys()))
    } else if args.list_profiles {
        let mut profiles: Vec<&String> = project
            .services
            .values()
            .flat_map(|s| s.profiles.iter())
            .collect();
        profiles.sort();
        profiles.dedup();
        lines(profiles)
    } else if args.images {
        lines(
            project
                .services
                .iter()
                .map(|(name, s)| s.image_name(project.name.as_deref().unwrap_or_default(), name)),
        )
    } else {
        render(project, args.format)?
    };
    out_raw!("{text}");
    Ok(ExitCode::SUCCESS)
}

fn sorted<'a>(names: impl Iterator<Item = &'a String>) -> Vec<&'a String> {
    let mut names: Vec<&String> = names.collect();
    names.sort();
    names
}

fn lines<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    items.into_iter().map(|i| format!("{i}\n")).collect()
}

/// The canonical document: JSON for tools, YAML for people. Names are sorted, as
/// `docker compose config` sorts them, so the output is stable whatever the file order.
pub fn render(
    project: &composure_compose::model::Project,
    format: Format,
) -> anyhow::Result<String> {
    let mut project = project.clone();
    project.services.sort_keys();
    project.networks.sort_keys();
    project.volumes.sort_keys();
    project.secrets.sort_keys();
    project.configs.sort_keys();
    project.models.sort_keys();
    let project = &project;
    Ok(match format {
        Format::Json => {
            let mut s = serde_json::to_string_pretty(project).context("cannot render JSON")?;
            s.push('\n');
            s
        }
        Format::Yaml => serde_saphyr::to_string(project).context("cannot render YAML")?,
    })
}
