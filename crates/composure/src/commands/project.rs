//! Turning the global flags into a loaded project.

use anyhow::Context;
use composure_compose::loader::{LoadOptions, Loaded};

use crate::cli::GlobalArgs;

/// Load options from the command line and the process environment.
pub fn load_options(global: &GlobalArgs, services: &[String]) -> anyhow::Result<LoadOptions> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut options = LoadOptions::new(cwd);
    options.files.clone_from(&global.files);
    options.project_name.clone_from(&global.project_name);
    options
        .project_directory
        .clone_from(&global.project_directory);
    options.profiles.clone_from(&global.profiles);
    options.env_files.clone_from(&global.env_files);
    options.services = services.to_vec();
    options.environment = std::env::vars().collect();
    Ok(options)
}

pub fn load(options: &LoadOptions) -> anyhow::Result<Loaded> {
    let loaded = composure_compose::loader::load(options)?;
    crate::output::print_warnings(&loaded.warnings);
    Ok(loaded)
}

/// The project a verb acts on: `-p`, else the name the compose file gives.
pub fn project_name(global: &GlobalArgs) -> anyhow::Result<String> {
    if let Some(name) = &global.project_name {
        return Ok(name.clone());
    }
    let loaded = load(&load_options(global, &[])?).context(
        "cannot tell which project: name it with -p, or run this where its compose file is",
    )?;
    Ok(loaded.project.name.unwrap_or_default())
}
