//! `composure exec SERVICE COMMAND...`: a command in a running replica, as
//! `docker compose exec` runs it (replica 1 unless `--index N`; a TTY when stdin is one).
//!
//! The daemon names the replica's container; the command then runs through the engine of
//! this host. Seam: once each node runs its own agent (issue 8) and the API is
//! authenticated (issue 10), the session goes through the daemon of the replica's node.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use composure_docker::DockerRuntime;
use composure_docker::exec::ExecSpec;

use crate::cli::{ExecArgs, GlobalArgs};
use crate::commands::{client, project, replicas};

pub async fn run(global: &GlobalArgs, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let status = client::client(global)?.project(&name).await?;
    let replicas = replicas::running(&status, std::slice::from_ref(&args.service))?;
    let Some(task) = replicas.iter().find(|t| t.slot == args.index) else {
        let running: Vec<String> = replicas.iter().map(|t| t.slot.to_string()).collect();
        anyhow::bail!(
            "service `{}` has no running replica {} (running: {})",
            args.service,
            args.index,
            if running.is_empty() {
                "none".to_string()
            } else {
                running.join(", ")
            }
        );
    };
    let container = replicas::container(task).to_string();
    let interactive = std::io::stdin().is_terminal();
    let tty = interactive && !args.no_tty && !args.detach;
    let spec = ExecSpec {
        command: args.command.clone(),
        env: args.env.clone(),
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        privileged: args.privileged,
        tty,
        size: tty.then(|| crossterm::terminal::size().ok()).flatten(),
        detach: args.detach,
    };
    let engine = DockerRuntime::connect().await?;
    // A terminal passes every key through to the command, as `docker exec -it` does.
    let raw = tty.then(RawMode::enter).transpose()?;
    let code = engine
        .exec(
            &container,
            &spec,
            (!args.detach).then(tokio::io::stdin),
            tokio::io::stdout(),
            tokio::io::stderr(),
        )
        .await
        .map_err(|err| match err {
            composure_runtime::RuntimeError::NotFound(_) => anyhow::anyhow!(
                "replica {}-{} runs on node {}, whose engine is not this host's: run `composure exec` there",
                args.service,
                args.index,
                task.node
            ),
            err => err.into(),
        })?;
    drop(raw);
    // The thread reading stdin may be blocked in a read that never ends (a terminal): the
    // runtime would wait for it at shutdown, so the process ends here with the code.
    std::process::exit(i32::try_from(code.clamp(0, 255)).unwrap_or(1));
}

/// The terminal in raw mode while it lives.
struct RawMode;

impl RawMode {
    fn enter() -> anyhow::Result<RawMode> {
        crossterm::terminal::enable_raw_mode().context("cannot put the terminal in raw mode")?;
        Ok(RawMode)
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = crossterm::terminal::disable_raw_mode();
    }
}
