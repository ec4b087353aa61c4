//! The verbs that act on a project's running replicas: `top`, `images`, `kill`, `wait`.
//!
//! The daemon names the replicas; `top`, `images` and `kill` then ask the engine of this
//! host about their containers (the seam `exec` also has: through the replica's node once
//! each node runs an agent).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use composure_api::{DesiredState, ProjectStatus, TaskState, TaskView};
use composure_docker::DockerRuntime;

use crate::cli::{GlobalArgs, ImagesArgs, KillArgs, ListFormat, ServicesArgs, WaitArgs};
use crate::commands::{client, project};
use crate::output;

/// The running replicas of `services` (all when empty), by service and slot; an unknown
/// service is an error.
pub fn running<'s>(
    status: &'s ProjectStatus,
    services: &[String],
) -> anyhow::Result<Vec<&'s TaskView>> {
    if let Some(unknown) = services
        .iter()
        .find(|s| !status.services.iter().any(|known| &known.name == *s))
    {
        anyhow::bail!("project `{}` has no service `{unknown}`", status.name);
    }
    let mut tasks: Vec<&TaskView> = status
        .tasks
        .iter()
        .filter(|t| {
            t.desired == DesiredState::Running
                && t.state == TaskState::Running
                && t.container_id.is_some()
                && (services.is_empty() || services.contains(&t.service))
        })
        .collect();
    tasks.sort_by(|a, b| (&a.service, a.slot).cmp(&(&b.service, b.slot)));
    Ok(tasks)
}

async fn status(global: &GlobalArgs) -> anyhow::Result<ProjectStatus> {
    let name = project::project_name(global)?;
    Ok(client::client(global)?.project(&name).await?)
}

pub fn container(task: &TaskView) -> &str {
    task.container_id.as_deref().unwrap_or_default()
}

fn label(task: &TaskView) -> String {
    task.container_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", task.service, task.slot))
}

/// `composure top [SERVICE...]`: each replica's processes, under its name.
pub async fn top(global: &GlobalArgs, args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let status = status(global).await?;
    let engine = DockerRuntime::connect().await?;
    for task in running(&status, &args.services)? {
        let processes = engine.processes(container(task)).await?;
        let mut table = comfy_table::Table::new();
        table.load_preset(comfy_table::presets::NOTHING);
        table.set_header(processes.titles.clone());
        for row in processes.rows {
            table.add_row(row);
        }
        out!("{}\n{table}\n", label(task));
    }
    Ok(ExitCode::SUCCESS)
}

/// `composure images [SERVICE...]`: the image each running replica runs.
pub async fn images(global: &GlobalArgs, args: &ImagesArgs) -> anyhow::Result<ExitCode> {
    let status = status(global).await?;
    let engine = DockerRuntime::connect().await?;
    let mut rows = Vec::new();
    for task in running(&status, &args.services)? {
        let image = engine.container_image(container(task)).await?;
        let (repository, tag) = repository_and_tag(&image.reference);
        rows.push(serde_json::json!({
            "ContainerName": label(task),
            "Service": task.service,
            "Repository": repository,
            "Tag": tag,
            "ID": image.id,
            "Size": image.size,
            "Reference": image.reference,
        }));
    }
    if args.quiet {
        let mut ids: Vec<&str> = rows.iter().filter_map(|r| r["ID"].as_str()).collect();
        ids.dedup();
        for id in ids {
            out!("{id}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&rows).context("cannot encode the images")?
        ),
        ListFormat::Table => {
            let mut table = comfy_table::Table::new();
            table.load_preset(comfy_table::presets::NOTHING);
            table.set_header(["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]);
            for row in &rows {
                let id = row["ID"].as_str().unwrap_or_default();
                table.add_row([
                    row["ContainerName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    row["Repository"].as_str().unwrap_or_default().to_string(),
                    row["Tag"].as_str().unwrap_or_default().to_string(),
                    id.trim_start_matches("sha256:").chars().take(12).collect(),
                    output::bytes(row["Size"].as_i64().unwrap_or(0)),
                ]);
            }
            out!("{table}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `app:1@sha256:…` → (`app`, `1`); `host:5000/app` → (`host:5000/app`, `latest`); an image
/// id → (`<none>`, `<none>`). Pure.
fn repository_and_tag(reference: &str) -> (String, String) {
    if reference.starts_with("sha256:") {
        return ("<none>".into(), "<none>".into());
    }
    let name = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo.to_string(), tag.to_string()),
        _ => (name.to_string(), "latest".to_string()),
    }
}

/// `composure kill [-s SIGNAL] [SERVICE...]`: the signal to each running replica. Unlike
/// compose's, a killed replica does not stay down: the daemon replaces it as its restart
/// policy says (`composure scale web=0` or `down` take replicas away).
pub async fn kill(global: &GlobalArgs, args: &KillArgs) -> anyhow::Result<ExitCode> {
    let status = status(global).await?;
    let engine = DockerRuntime::connect().await?;
    let tasks = running(&status, &args.services)?;
    if tasks.is_empty() {
        eprintln!("No running replica to signal.");
    }
    for task in tasks {
        engine.signal(container(task), &args.signal).await?;
        eprintln!(
            "{}",
            output::success(&format!("{} {}", label(task), "signalled"))
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `composure wait SERVICE...`: until every replica of the services has ended and none is
/// about to start again (a job that completed, a service scaled to 0, one that failed for
/// good), then exits with the exit code of the first service's last replica.
pub async fn wait(global: &GlobalArgs, args: &WaitArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    loop {
        let status = client.project(&name).await?;
        running(&status, &args.services)?;
        if let Some(code) = ended(&status, &args.services) {
            if args.down_project {
                client.delete_project(&name, false).await?;
            }
            return Ok(ExitCode::from(
                u8::try_from(code.clamp(0, 255)).unwrap_or(1),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The exit code of the first service's last replica once every task of `services` meant
/// to run has ended for good; `None` while one runs or is to start. Pure.
fn ended(status: &ProjectStatus, services: &[String]) -> Option<i64> {
    let tasks: Vec<&TaskView> = status
        .tasks
        .iter()
        .filter(|t| services.contains(&t.service))
        .collect();
    let live = tasks.iter().any(|t| {
        t.desired == DesiredState::Running
            && !matches!(t.state, TaskState::Complete | TaskState::Failed)
    });
    // A service that asks for replicas and has no task yet has not started, let alone ended.
    let unstarted = status.services.iter().any(|s| {
        services.contains(&s.name) && s.desired > 0 && !tasks.iter().any(|t| t.service == s.name)
    });
    if live || unstarted {
        return None;
    }
    let first = services.first()?;
    let code = tasks
        .iter()
        .filter(|t| &t.service == first)
        .max_by_key(|t| t.started_at)
        .and_then(|t| t.exit_code)
        .unwrap_or(0);
    Some(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_as_docker_images_shows_them() {
        let split = |r| repository_and_tag(r);
        assert_eq!(split("app:1@sha256:ab"), ("app".into(), "1".into()));
        assert_eq!(
            split("127.0.0.1:5000/app"),
            ("127.0.0.1:5000/app".into(), "latest".into())
        );
        assert_eq!(split("sha256:abc"), ("<none>".into(), "<none>".into()));
    }
}
