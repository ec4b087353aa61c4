//! `composure ls`: the projects the daemon runs, as `docker compose ls` lists them.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{GlobalArgs, ListFormat, LsArgs};
use crate::commands::client;
use crate::output;

pub async fn run(global: &GlobalArgs, args: &LsArgs) -> anyhow::Result<ExitCode> {
    let mut projects = client::client(global)?.projects().await?;
    projects.sort_by(|a, b| a.name.cmp(&b.name));
    if args.quiet {
        for project in &projects {
            out!("{}", project.name);
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&projects).context("cannot encode the projects")?
        ),
        ListFormat::Table => out!("{}", output::project_table(&projects)),
    }
    Ok(ExitCode::SUCCESS)
}
