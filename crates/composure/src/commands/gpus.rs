//! `composure gpus`: every node's GPUs, which replica holds each, and (where NVML answers)
//! their use now. A node without GPUs says why; that is not an error.

use std::process::ExitCode;

use anyhow::Context;

use crate::cli::{GlobalArgs, GpusArgs, ListFormat};
use crate::commands::client;
use crate::output;

pub async fn run(global: &GlobalArgs, args: &GpusArgs) -> anyhow::Result<ExitCode> {
    let view = client::client(global)?.gpus().await?;
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&view).context("cannot encode the GPUs")?
        ),
        ListFormat::Table => out!("{}", output::gpu_table(&view)),
    }
    Ok(ExitCode::SUCCESS)
}
