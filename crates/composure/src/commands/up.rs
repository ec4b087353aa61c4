//! `composure up`: submit the project, then show progress until it runs as declared.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use composure_api::{
    Client, DesiredState, ImageBuild, LogsQuery, ProjectState, ProjectStatus, PutProject,
    RolloutFailureView, RolloutKind, RolloutState, RolloutView, ServiceState, ServiceStatusView,
};
use futures_util::StreamExt;

use crate::cli::{GlobalArgs, UpArgs};
use crate::commands::{client, daemon, images, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mut loaded = project::load(&project::load_options(global, &args.services)?)?;
    if args.no_deps && !args.services.is_empty() {
        loaded
            .project
            .services
            .retain(|name, _| args.services.contains(name));
        // Their dependencies left out become optional: waited for when the project runs
        // them, ignored when it does not (a later `up` with them puts them back as written).
        for service in loaded.project.services.values_mut() {
            for (target, dependency) in &mut service.depends_on {
                if !args.services.contains(target) {
                    dependency.required = false;
                }
            }
        }
    }
    for (service, replicas) in crate::commands::scale::parse_targets(&args.scale)? {
        let definition =
            loaded.project.services.get_mut(&service).ok_or_else(|| {
                anyhow::anyhow!("--scale {service}: the project has no such service")
            })?;
        definition.scale = None;
        definition
            .deploy
            .get_or_insert_with(Default::default)
            .replicas = Some(u64::from(replicas));
    }
    let name = loaded.project.name.clone().unwrap_or_default();
    let client = client::client(global)?;
    if args.dry_run && args.local {
        let node = crate::commands::gpus::local_node(args.gpu_inventory.as_ref());
        let preview = composure_daemon::local::preview(&name, &put_body(&loaded)?, &node)
            .map_err(anyhow::Error::msg)?;
        return Ok(show_preview(&preview));
    }
    if args.dry_run {
        return dry_run(&client, &name, &put_body(&loaded)?).await;
    }

    let mut foreground = None;
    if !client::daemon_answers(&client).await? {
        let data_dir = client::default_data_dir();
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

    let mut body = put_body(&loaded)?;
    // The image phase first: every image pulled or built before anything is scheduled, so
    // that a missing image fails `up` now and leaves the running revision alone.
    let build = match (args.images.build, args.images.no_build) {
        (true, _) => ImageBuild::Always,
        (_, true) => ImageBuild::Never,
        _ => ImageBuild::Auto,
    };
    let phase = images::request(
        &body,
        &loaded.project,
        Vec::new(),
        build,
        args.images.pull.clone(),
    );
    let outcome = images::run_phase(&client, &name, &phase, false).await?;
    images::check(&outcome)?;
    body.images = outcome.pins;
    // `up SERVICE...` changes those services (and their dependencies) only, as compose does.
    let response = if args.services.is_empty() {
        client.put_project(&name, &body).await?
    } else {
        client.put_services(&name, &body).await?
    };
    for warning in &response.warnings {
        eprintln!("{}", output::warning(warning));
    }
    if args.force_recreate {
        let request = composure_api::RestartRequest {
            services: args.services.clone(),
        };
        client.restart(&name, &request).await?;
        eprintln!("Replacing every replica, slot by slot (--force-recreate).");
    }
    if args.detach {
        out!("Project {name} submitted (revision {}).", response.number);
        return Ok(ExitCode::SUCCESS);
    }
    let code = wait_converged(
        &client,
        &name,
        response.revision,
        response.accepted_at,
        Duration::from_secs(args.wait_timeout),
    )
    .await?;
    if let Some(daemon) = foreground {
        eprintln!("Project {name} is up. The daemon keeps it running until Ctrl-C.");
        daemon.wait_for_ctrl_c().await?;
    }
    Ok(code)
}

/// The body of the `PUT` that submits the loaded project.
pub fn put_body(loaded: &composure_compose::loader::Loaded) -> anyhow::Result<PutProject> {
    Ok(PutProject::new(
        serde_json::to_value(&loaded.project).context("cannot encode the project")?,
        loaded.project_directory.display().to_string(),
        loaded
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
    ))
}

/// `up --dry-run`: asks the daemon where the replicas would run and prints it; exit 1 when
/// some replica cannot be placed. Starts no daemon and stores nothing.
async fn dry_run(client: &Client, name: &str, body: &PutProject) -> anyhow::Result<ExitCode> {
    if !client::daemon_answers(client).await? {
        anyhow::bail!(
            "no daemon answers at {}: placement needs the cluster's nodes (start one with `composure daemon`)",
            client.socket().display()
        );
    }
    let preview = client.placement_preview(name, body).await?;
    Ok(show_preview(&preview))
}

/// The dry run's table and each GPU replica's devices; exit 1 when a replica cannot be
/// placed.
fn show_preview(preview: &composure_api::PlacementPreview) -> ExitCode {
    out!("{}", output::placement_table(preview));
    let mut code = ExitCode::SUCCESS;
    for service in &preview.services {
        for replica in &service.gpus {
            out!(
                "{}-{}: node {}, GPU {}",
                service.service,
                replica.slot,
                replica.node,
                replica.gpus.join(",")
            );
        }
        if let Some(why) = &service.stop_first {
            eprintln!("{}: {why}", service.service);
        }
        if let Some(pinned) = &service.pinned {
            eprintln!("{}: stays on one node: {pinned}", service.service);
        }
        if service.unplaced > 0 {
            eprintln!(
                "{}",
                output::failure(&format!(
                    "{}: {} of {} replica(s) cannot be placed: {}",
                    service.service,
                    service.unplaced,
                    service.replicas,
                    service.reason.as_deref().unwrap_or("no reason given")
                ))
            );
            code = ExitCode::from(output::EXIT_FAILURE);
        }
    }
    code
}

/// Prints each service's progress as it changes (rolling updates: slots updated, waiting
/// for health) until the project runs as of `revision` (exit 0), or fails: a task that
/// cannot run, or an update of this revision that was rolled back or paused (exit 1, with
/// the failed check and the last log lines of the failing task).
pub async fn wait_converged(
    client: &Client,
    name: &str,
    revision: u64,
    accepted_at: u64,
    timeout: Duration,
) -> anyhow::Result<ExitCode> {
    let deadline = Instant::now() + timeout;
    let mut shown: HashMap<String, String> = HashMap::new();
    loop {
        let status = client.project(name).await?;
        if let Some(problem) = &status.store_problem {
            eprintln!(
                "{}",
                output::failure(&format!(
                    "{problem}. The daemon cannot record the tasks of this revision; it carries on once the store can be written."
                ))
            );
            return Ok(ExitCode::from(output::EXIT_FAILURE));
        }
        // Statuses from before the daemon worked on this revision say nothing about it.
        // An unchanged project keeps its revision: then only a pass that began after the
        // request (a label set since, a port freed) says what the daemon made of it.
        let seen = status.observed_revision >= revision && status.observed_at > accepted_at;
        if seen && !status.problems.is_empty() {
            for problem in &status.problems {
                eprintln!("{}", output::failure(problem));
            }
            eprintln!(
                "{}",
                output::failure(&format!(
                    "Project {name} cannot be served as asked; the daemon keeps trying (see `composure events`)."
                ))
            );
            return Ok(ExitCode::from(output::EXIT_FAILURE));
        }
        if seen {
            for service in &status.services {
                let line = output::service_progress(service);
                if shown.get(&service.name) != Some(&line) {
                    eprintln!("{line}");
                    shown.insert(service.name.clone(), line);
                }
            }
            let failed: Vec<&ServiceStatusView> = status
                .services
                .iter()
                .filter(|s| {
                    s.rollout
                        .as_ref()
                        .is_some_and(|r| failed_update(r, revision))
                })
                .collect();
            if !failed.is_empty() {
                for service in failed {
                    report_failed_update(client, &status, service).await;
                }
                return Ok(ExitCode::from(output::EXIT_FAILURE));
            }
            // A service that fails the same way again and again (its image is missing, its
            // command exits at once) will not converge by waiting: say so now, not at the
            // timeout.
            if status.services.iter().any(|s| keeps_failing(&status, s)) {
                report_failure(client, &status).await;
                eprintln!(
                    "{}",
                    output::failure(&format!(
                        "Project {name} has services that fail {CRASH_LOOP_RESTARTS} times in a row; the daemon keeps trying (see `composure logs`)."
                    ))
                );
                return Ok(ExitCode::from(output::EXIT_FAILURE));
            }
        }
        match status.status {
            ProjectState::Running if seen => {
                for rollout in status
                    .services
                    .iter()
                    .filter_map(|s| s.rollout.as_ref())
                    .filter(|r| r.revision >= revision && r.state == RolloutState::Completed)
                {
                    eprintln!("{}", output::success(&output::rollout_outcome(rollout)));
                }
                eprintln!(
                    "{}",
                    output::success(&format!("Project {name} is running."))
                );
                return Ok(ExitCode::SUCCESS);
            }
            ProjectState::Failed if seen => {
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

/// Restarts in a row of a slot, with no replica of its service running, after which `up`
/// stops waiting for the service.
const CRASH_LOOP_RESTARTS: u32 = 3;

/// Whether `service` runs none of its replicas and a slot of it has failed
/// [`CRASH_LOOP_RESTARTS`] times in a row.
fn keeps_failing(status: &ProjectStatus, service: &ServiceStatusView) -> bool {
    service.desired > 0
        && service.running == 0
        && status.tasks.iter().any(|t| {
            t.service == service.name
                && t.desired == DesiredState::Running
                && t.restarts >= CRASH_LOOP_RESTARTS
        })
}

/// Whether `rollout` says the update to `revision` (or a later one) failed: it paused, or
/// it was rolled back and the rollback is over.
fn failed_update(rollout: &RolloutView, revision: u64) -> bool {
    match rollout.kind {
        RolloutKind::Rollback => {
            rollout
                .cause
                .as_ref()
                .is_some_and(|c| c.revision >= revision)
                && rollout.state != RolloutState::Updating
        }
        RolloutKind::Update | RolloutKind::Undo | RolloutKind::Restart => {
            rollout.revision >= revision && rollout.state == RolloutState::Paused
        }
    }
}

/// Names the service whose update failed, the check that failed, and the last lines the
/// failing task wrote.
async fn report_failed_update(
    client: &Client,
    status: &ProjectStatus,
    service: &ServiceStatusView,
) {
    let Some(rollout) = &service.rollout else {
        return;
    };
    let (what, failures): (String, &[RolloutFailureView]) = match (&rollout.kind, &rollout.cause) {
        (RolloutKind::Rollback, Some(cause)) => (
            format!("the update failed and was rolled back: {}", cause.reason),
            &cause.failures,
        ),
        _ => (
            format!(
                "the {} is paused: {}",
                word(rollout.kind),
                rollout
                    .message
                    .as_deref()
                    .unwrap_or("too many new tasks failed")
            ),
            &rollout.failures,
        ),
    };
    eprintln!(
        "{}",
        output::failure(&format!("service {}: {what}", service.name))
    );
    if rollout.outage_ms > 0 {
        eprintln!(
            "  {}{}",
            output::outage(rollout.outage_ms),
            if rollout.outage_ongoing {
                " so far"
            } else {
                ""
            }
        );
    }
    if let Some(failure) = failures.last() {
        let short: String = failure.task.chars().take(8).collect();
        eprintln!(
            "  failed task ({}-{}, {short}): {}",
            service.name, failure.slot, failure.reason
        );
        print_task_logs(client, &status.name, &service.name, &failure.task).await;
    }
}

fn word(kind: RolloutKind) -> &'static str {
    match kind {
        RolloutKind::Update => "update",
        RolloutKind::Rollback => "rollback",
        RolloutKind::Undo => "undo",
        RolloutKind::Restart => "restart",
    }
}

/// The last lines `task` wrote, indented under a heading.
async fn print_task_logs(client: &Client, project: &str, service: &str, task: &str) {
    let query = LogsQuery {
        service: Some(service.to_string()),
        follow: false,
        tail: Some(10),
        task: Some(task.to_string()),
        since: None,
    };
    if let Ok(mut lines) = client.logs(project, &query).await {
        let mut printed = false;
        while let Some(Ok(entry)) = lines.next().await {
            if entry.task == task {
                if !printed {
                    eprintln!("  its last log lines:");
                    printed = true;
                }
                eprintln!("    {}", entry.line);
            }
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
            print_task_logs(client, &status.name, &service.name, &task.id).await;
        }
    }
}
