//! `composure ps`: one line per task.

use std::process::ExitCode;

use anyhow::Context;
use composure_api::{DesiredState, TaskState, TaskView};

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
    let wanted = args
        .status
        .iter()
        .map(|word| states(word))
        .collect::<anyhow::Result<Vec<_>>>()?
        .concat();
    let mut tasks: Vec<&TaskView> = status
        .tasks
        .iter()
        .filter(|t| args.all || !wanted.is_empty() || t.desired == DesiredState::Running)
        .filter(|t| wanted.is_empty() || wanted.contains(&t.state))
        .filter(|t| args.services.is_empty() || args.services.contains(&t.service))
        .collect();
    tasks.sort_by(|a, b| {
        (&a.service, a.slot, a.started_at).cmp(&(&b.service, b.slot, b.started_at))
    });
    if args.service_names {
        let mut names: Vec<&str> = tasks.iter().map(|t| t.service.as_str()).collect();
        names.dedup();
        for name in names {
            out!("{name}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.quiet {
        for id in tasks.iter().filter_map(|t| t.container_id.as_deref()) {
            out!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
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

/// The task states a `--status` word names: compose's container states (`running`,
/// `created`, `exited`, `dead`), or a task state by its own name.
fn states(word: &str) -> anyhow::Result<Vec<TaskState>> {
    Ok(match word {
        "running" => vec![TaskState::Running],
        "created" => vec![TaskState::Pending, TaskState::Creating],
        "exited" | "dead" => vec![TaskState::Complete, TaskState::Failed, TaskState::Shutdown],
        "pending" => vec![TaskState::Pending],
        "creating" => vec![TaskState::Creating],
        "starting" => vec![TaskState::Starting],
        "complete" => vec![TaskState::Complete],
        "failed" => vec![TaskState::Failed],
        "shutdown" => vec![TaskState::Shutdown],
        other => anyhow::bail!(
            "--status {other}: expected running, created, exited, dead, or a task state (pending, creating, starting, complete, failed, shutdown)"
        ),
    })
}
