//! `composure rollout status|history|undo SERVICE`: a service's rolling updates.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use composure_api::UndoRequest;

use crate::cli::{
    GlobalArgs, ListFormat, RolloutArgs, RolloutCommand, RolloutStatusArgs, RolloutUndoArgs,
};
use crate::commands::{client, project, up};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &RolloutArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        RolloutCommand::Status(args) => status(&global.then(&args.global), args).await,
        RolloutCommand::History(args) => history(&global.then(&args.global), args).await,
        RolloutCommand::Undo(args) => undo(&global.then(&args.global), args).await,
    }
}

async fn status(global: &GlobalArgs, args: &RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let view = client::client(global)?
        .rollout(&name, &args.service)
        .await?;
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&view).context("cannot encode the rollout")?
        ),
        ListFormat::Table => out_raw!("{}", output::rollout_status(&view)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn history(global: &GlobalArgs, args: &RolloutStatusArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let history = client::client(global)?
        .rollout_history(&name, &args.service)
        .await?;
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&history).context("cannot encode the history")?
        ),
        ListFormat::Table => out!("{}", output::rollout_history(&history)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks for the previous version back, then follows the rollout as `up` does.
async fn undo(global: &GlobalArgs, args: &RolloutUndoArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    let request = UndoRequest {
        to_revision: args.to_revision,
    };
    let response = client.rollout_undo(&name, &args.service, &request).await?;
    eprintln!(
        "Service {} goes back to its previous version (revision {}).",
        args.service, response.number
    );
    if args.detach {
        return Ok(ExitCode::SUCCESS);
    }
    up::wait_converged(
        &client,
        &name,
        response.revision,
        0,
        Duration::from_secs(args.wait_timeout),
    )
    .await
}
