//! `composure node ls|inspect|update|drain|activate|rm`, as `docker node` does them.

use std::process::ExitCode;

use anyhow::Context;
use composure_api::{Client, NodeAvailability, NodeUpdate};

use crate::cli::{
    Availability, GlobalArgs, ListFormat, NodeArgs, NodeCommand, NodeLsArgs, NodeNamesArgs,
    NodeUpdateArgs,
};
use crate::commands::client;
use crate::output;

pub async fn run(global: &GlobalArgs, args: &NodeArgs) -> anyhow::Result<ExitCode> {
    match &args.command {
        NodeCommand::Ls(args) => ls(&global.then(&args.global), args).await,
        NodeCommand::Inspect(args) => inspect(&global.then(&args.global), args).await,
        NodeCommand::Update(args) => update(&global.then(&args.global), args).await,
        NodeCommand::Drain(args) => {
            set_availability(&global.then(&args.global), args, NodeAvailability::Drain).await
        }
        NodeCommand::Activate(args) => {
            set_availability(&global.then(&args.global), args, NodeAvailability::Active).await
        }
        NodeCommand::Rm(args) => rm(&global.then(&args.global), args).await,
    }
}

async fn ls(global: &GlobalArgs, args: &NodeLsArgs) -> anyhow::Result<ExitCode> {
    let nodes = client::client(global)?.nodes().await?;
    match args.format {
        ListFormat::Json => out!(
            "{}",
            serde_json::to_string_pretty(&nodes).context("cannot encode the nodes")?
        ),
        ListFormat::Table => out!("{}", output::node_table(&nodes)),
    }
    Ok(ExitCode::SUCCESS)
}

async fn inspect(global: &GlobalArgs, args: &NodeNamesArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global)?;
    let mut views = Vec::new();
    let mut failed = false;
    for name in &args.nodes {
        match client.node(name).await {
            Ok(view) => views.push(view),
            Err(err) => {
                eprintln!("{}", output::failure(&format!("{name}: {err}")));
                failed = true;
            }
        }
    }
    out!(
        "{}",
        serde_json::to_string_pretty(&views).context("cannot encode the nodes")?
    );
    Ok(exit(failed))
}

async fn update(global: &GlobalArgs, args: &NodeUpdateArgs) -> anyhow::Result<ExitCode> {
    let mut update = NodeUpdate {
        remove_labels: args.remove_labels.clone(),
        availability: args.availability.map(|a| match a {
            Availability::Active => NodeAvailability::Active,
            Availability::Drain => NodeAvailability::Drain,
        }),
        ..NodeUpdate::default()
    };
    for label in &args.labels {
        let (key, value) = label.split_once('=').unwrap_or((label.as_str(), ""));
        update.labels.insert(key.to_string(), value.to_string());
    }
    if update == NodeUpdate::default() {
        anyhow::bail!(
            "nothing to update: give --label KEY=VALUE, --label-rm KEY or --availability"
        );
    }
    client::client(global)?
        .update_node(&args.node, &update)
        .await?;
    out!("{}", args.node);
    Ok(ExitCode::SUCCESS)
}

async fn set_availability(
    global: &GlobalArgs,
    args: &NodeNamesArgs,
    availability: NodeAvailability,
) -> anyhow::Result<ExitCode> {
    let client = client::client(global)?;
    let update = NodeUpdate {
        availability: Some(availability),
        ..NodeUpdate::default()
    };
    each(&client, &args.nodes, |client, name| {
        let update = update.clone();
        async move { client.update_node(&name, &update).await.map(drop) }
    })
    .await
}

async fn rm(global: &GlobalArgs, args: &NodeNamesArgs) -> anyhow::Result<ExitCode> {
    let client = client::client(global)?;
    each(&client, &args.nodes, |client, name| async move {
        client.remove_node(&name).await
    })
    .await
}

/// Runs `call` for each node, printing the name of each that succeeded and the error of
/// each that did not; fails if any did, after trying them all (as `docker node` does).
async fn each<F, Fut>(client: &Client, nodes: &[String], call: F) -> anyhow::Result<ExitCode>
where
    F: Fn(Client, String) -> Fut,
    Fut: Future<Output = Result<(), composure_api::ClientError>>,
{
    let mut failed = false;
    for name in nodes {
        match call(client.clone(), name.clone()).await {
            Ok(()) => out!("{name}"),
            Err(err) => {
                eprintln!("{}", output::failure(&format!("{name}: {err}")));
                failed = true;
            }
        }
    }
    Ok(exit(failed))
}

fn exit(failed: bool) -> ExitCode {
    if failed {
        ExitCode::from(output::EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    }
}
