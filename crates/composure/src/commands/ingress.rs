//! `composure ingress`: a project's proxy on its published ports, run by the daemon in a
//! container on the host's network so that it outlives the daemon (see
//! `composure_net::ingress`). Not for people to run.

use std::process::ExitCode;

use anyhow::Context;
use composure_net::ingress::{IngressOptions, run as run_ingress};
use tokio_util::sync::CancellationToken;

use crate::cli::IngressArgs;
use crate::commands::daemon::{init_logging, spawn_signal_handler};

pub async fn run(args: &IngressArgs) -> anyhow::Result<ExitCode> {
    if let Some(ready) = &args.is_ready {
        // The health check: exec'd in the container every few seconds, so it only looks.
        return Ok(if ready.exists() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    init_logging();
    let dir = args.dir.clone().context("--dir is required")?;
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let mut options = IngressOptions::new(dir);
    options.ready_file = args.ready_file.clone();
    run_ingress(options, shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
