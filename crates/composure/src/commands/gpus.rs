//! `composure gpus`: every node's GPUs, which replica holds each, and (where NVML answers)
//! their use now; with `--local`, this host's as a daemon started here would read them,
//! without one. A node without GPUs says why; that is not an error.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use composure_daemon::NodeConfig;
use composure_daemon::gpu::GpuSource;

use crate::cli::{GlobalArgs, GpusArgs, ListFormat};
use crate::commands::client;
use crate::output;

pub async fn run(global: &GlobalArgs, args: &GpusArgs) -> anyhow::Result<ExitCode> {
    let view = if args.local {
        composure_daemon::local::gpus(&local_node(args.gpu_inventory.as_ref()))
            .map_err(anyhow::Error::msg)?
    } else {
        client::client(global)?.gpus().await?
    };
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&view).context("cannot encode the GPUs")?
        ),
        ListFormat::Table => out!("{}", output::gpu_table(&view)),
    }
    Ok(ExitCode::SUCCESS)
}

/// This host as a daemon started here would describe it, its GPUs from `inventory` when
/// given (else NVML).
pub fn local_node(inventory: Option<&PathBuf>) -> NodeConfig {
    let mut node = NodeConfig::local();
    if let Some(file) = inventory {
        node.gpus = GpuSource::File(file.clone());
    }
    node
}
