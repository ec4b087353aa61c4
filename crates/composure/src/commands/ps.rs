//! `composure ps`: one line per task.

use std::process::ExitCode;

use anyhow::Context;
use composure_api::{DesiredState, Health, PortView, TaskState, TaskView};
use indexmap::IndexMap;

use crate::cli::{GlobalArgs, ListFormat, PortArgs, PsArgs};
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
    let ports: IndexMap<String, Vec<PortView>> = status
        .services
        .iter()
        .map(|s| (s.name.clone(), s.ports.clone()))
        .collect();
    match args.format {
        ListFormat::Json => {
            let rows = tasks
                .iter()
                .map(|task| {
                    json_row(
                        &name,
                        task,
                        ports.get(&task.service).map_or(&[], Vec::as_slice),
                    )
                })
                .collect::<serde_json::Result<Vec<_>>>()
                .context("cannot encode tasks")?;
            out!(
                "{}",
                serde_json::to_string_pretty(&rows).context("cannot encode tasks")?
            );
        }
        ListFormat::Table => {
            let text: IndexMap<String, String> = ports
                .iter()
                .map(|(service, ports)| {
                    let shown: Vec<String> = ports.iter().map(ToString::to_string).collect();
                    (service.clone(), shown.join(", "))
                })
                .collect();
            out!("{}", output::task_table(&tasks, &text));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One task as `ps --format json` prints it: Composure's fields, and the ones
/// `docker compose ps --format json` has, under compose's names (`Name`, `Service`, `State`,
/// `Health`, `ExitCode`, `ID`, `Project`, `Publishers`), so scripts written for it work.
fn json_row(
    project: &str,
    task: &TaskView,
    ports: &[PortView],
) -> serde_json::Result<serde_json::Value> {
    let mut row = serde_json::to_value(task)?;
    let compose_state = match task.state {
        TaskState::Running => "running",
        TaskState::Pending | TaskState::Creating | TaskState::Starting => "created",
        TaskState::Complete | TaskState::Failed | TaskState::Shutdown => "exited",
    };
    let health = match task.health {
        Health::None => "",
        Health::Starting => "starting",
        Health::Healthy => "healthy",
        Health::Unhealthy => "unhealthy",
    };
    let publishers: Vec<serde_json::Value> = ports
        .iter()
        .map(|port| {
            serde_json::json!({
                "URL": port.host_ip,
                "TargetPort": port.target,
                "PublishedPort": port.published.parse::<u16>().unwrap_or(0),
                "Protocol": port.protocol,
            })
        })
        .collect();
    if let Some(fields) = row.as_object_mut() {
        let compose = serde_json::json!({
            "ID": task.container_id.clone().unwrap_or_default(),
            "Name": task.container_name.clone().unwrap_or_default(),
            "Project": project,
            "Service": task.service,
            "State": compose_state,
            "Health": health,
            "ExitCode": task.exit_code.unwrap_or(0),
            "Publishers": publishers,
        });
        if let serde_json::Value::Object(compose) = compose {
            fields.extend(compose);
        }
    }
    Ok(row)
}

/// `composure port SERVICE PRIVATE_PORT`: where the service's port is published, as
/// `docker compose port` prints it (`0.0.0.0:8080`); exit 1 when it is not published.
pub async fn port(global: &GlobalArgs, args: &PortArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let status = client::client(global)?.project(&name).await?;
    let Some(service) = status.services.iter().find(|s| s.name == args.service) else {
        anyhow::bail!("project `{name}` has no service `{}`", args.service);
    };
    if let Some(index) = args.index
        && (index == 0 || index > service.desired.max(1))
    {
        anyhow::bail!("service `{}` has no replica {index}", args.service);
    }
    match service
        .ports
        .iter()
        .find(|p| p.target == args.private_port && p.protocol == args.protocol)
    {
        Some(port) => {
            out!("{}:{}", port.host_ip, port.published);
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!(
            "service `{}` publishes no port {}/{}",
            args.service,
            args.private_port,
            args.protocol
        ),
    }
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
