//! `composure ps`: one line per task.

use std::process::ExitCode;

use anyhow::Context;
use composure_api::{DesiredState, TaskView};

use crate::cli::{GlobalArgs, ListFormat, PsArgs};
use crate::commands::{client, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &PsArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let status = client::client(global)?.project(&name).await?;
    for problem in &status.problems {
        eprintln!("{}", output::failure(&format!("warning: {problem}")));
    }
    if let Some(problem) = &status.store_problem {
        eprintln!(
            "{}",
            output::failure(&format!(
                "warning: {problem}. What follows is as of the daemon's last write: containers that stopped since may still show as running."
            ))
        );
    }
    let mut tasks: Vec<&TaskView> = status
        .tasks
        .iter()
        .filter(|t| args.all || t.desired == DesiredState::Running)
        .filter(|t| args.services.is_empty() || args.services.contains(&t.service))
        .collect();
    tasks.sort_by(|a, b| {
        (&a.service, a.slot, a.started_at).cmp(&(&b.service, b.slot, b.started_at))
    });
    match args.format {
        ListFormat::Json => {
            out!(
                "{}",
                serde_json::to_string_pretty(&tasks).context("cannot encode tasks")?
            );
        }
        ListFormat::Table => out!("{}", output::task_table(&tasks)),
    }
    Ok(ExitCode::SUCCESS)
}
