//! `composure up`: submit the project, then show progress until it runs as declared.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use composure_api::{Client, LogsQuery, ProjectState, ProjectStatus, PutProject, ServiceState};
use futures_util::StreamExt;

use crate::cli::{GlobalArgs, UpArgs};
use crate::commands::{client, daemon, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let loaded = project::load(&project::load_options(global, &args.services)?)?;
    let name = loaded.project.name.clone().unwrap_or_default();
    let client = client::client(global)?;

    let mut foreground = None;
    if !client::daemon_answers(&client).await {
        let data_dir = std::path::PathBuf::from(client::DEFAULT_DATA_DIR);
        if args.detach {
            let pid = client::spawn_background_daemon(&client, &data_dir).await?;
            eprintln!(
                "No daemon was running: started one in the background (pid {pid}, log {}).",
                data_dir.join("daemon.log").display()
            );
        } else {
            eprintln!(
                "No daemon was running: running one in the foreground. Ctrl-C stops the daemon; containers keep running."
            );
            foreground = Some(daemon::spawn_in_process(
                data_dir,
                client.socket().to_path_buf(),
            )?);
            client::wait_until_up(&client, Duration::from_secs(15)).await?;
        }
    }

    let body = PutProject {
        project: serde_json::to_value(&loaded.project).context("cannot encode the project")?,
        working_dir: loaded.project_directory.display().to_string(),
        files: loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
    };
    let response = client.put_project(&name, &body).await?;
    if args.detach {
        println!("Project {name} submitted (revision {}).", response.revision);
        return Ok(ExitCode::SUCCESS);
    }
    let code = wait_converged(&client, &name, Duration::from_secs(args.wait_timeout)).await?;
    if let Some(daemon) = foreground {
        eprintln!("Project {name} is up. The daemon keeps it running until Ctrl-C.");
        daemon.wait_for_ctrl_c().await?;
    }
    Ok(code)
}

/// Prints each service's progress as it changes until the project runs (exit 0) or fails
/// (exit 1, with the failing tasks' errors and last log lines).
pub async fn wait_converged(
    client: &Client,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let mut shown: HashMap<String, String> = HashMap::new();
    loop {
        let status = client.project(name).await?;
        for service in &status.services {
            let line = output::service_progress(service);
            if shown.get(&service.name) != Some(&line) {
                eprintln!("{line}");
                shown.insert(service.name.clone(), line);
            }
        }
        match status.status {
            ProjectState::Running => {
                eprintln!(
                    "{}",
                    output::success(&format!("Project {name} is running."))
                );
                return Ok(ExitCode::SUCCESS);
            }
            ProjectState::Failed => {
                report_failure(client, &status).await;
                return Ok(ExitCode::from(output::EXIT_FAILURE));
            }
            _ if Instant::now() >= deadline => {
                eprintln!(
                    "{}",
                    output::failure(&format!(
                        "Project {name} did not converge within {}s; the daemon keeps trying (see `composure ps`).",
                        timeout.as_secs()
                    ))
                );
                report_failure(client, &status).await;
                return Ok(ExitCode::from(output::EXIT_FAILURE));
            }
            _ => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    }
}

/// Names each service that is not running as declared, why, and the last lines its
/// failing task wrote.
async fn report_failure(client: &Client, status: &ProjectStatus) {
    for service in status
        .services
        .iter()
        .filter(|s| s.status != ServiceState::Running)
    {
        let reason = service
            .message
            .as_deref()
            .unwrap_or("not running as declared");
        eprintln!(
            "{}",
            output::failure(&format!("service {}: {reason}", service.name))
        );
        let failed = status
            .tasks
            .iter()
            .filter(|t| t.service == service.name && t.error.is_some())
            .max_by_key(|t| t.started_at);
        if let Some(task) = failed {
            if let Some(error) = &task.error {
                eprintln!("  last task ({}-{}): {error}", task.service, task.slot);
            }
            let query = LogsQuery {
                service: Some(service.name.clone()),
                follow: false,
                tail: Some(10),
            };
            if let Ok(mut lines) = client.logs(&status.name, &query).await {
                let mut printed = false;
                while let Some(Ok(entry)) = lines.next().await {
                    if entry.task == task.id {
                        if !printed {
                            eprintln!("  its last log lines:");
                            printed = true;
                        }
                        eprintln!("    {}", entry.line);
                    }
                }
            }
        }
    }
}
