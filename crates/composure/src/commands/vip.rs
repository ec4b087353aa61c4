//! `composure vip`: a service's VIP, run by the daemon in a container that holds the
//! service's name (see `composure_net::vip`). Not for people to run.

use std::process::ExitCode;

use composure_net::vip::{VipOptions, run as run_vip};
use tokio_util::sync::CancellationToken;

use crate::cli::VipArgs;
use crate::commands::daemon::{init_logging, spawn_signal_handler};

pub async fn run(args: &VipArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    run_vip(VipOptions::new(args.dir.clone()), shutdown).await?;
    Ok(ExitCode::SUCCESS)
}
