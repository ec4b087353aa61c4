//! `composure logs`: the containers' output, merged, each line prefixed by its replica.

use std::process::ExitCode;

use composure_api::LogsQuery;
use futures_util::StreamExt;

use crate::cli::{GlobalArgs, LogsArgs};
use crate::commands::{client, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    // One service can be asked of the daemon; several are filtered here.
    let service = match args.services.as_slice() {
        [one] => Some(one.clone()),
        _ => None,
    };
    let query = LogsQuery {
        service,
        follow: args.follow,
        tail: args.tail,
        task: None,
    };
    let mut lines = client.logs(&name, &query).await?;
    let mut prefixes = output::Prefixes::default();
    while let Some(entry) = lines.next().await {
        let entry = entry?;
        if !args.services.is_empty() && !args.services.contains(&entry.service) {
            continue;
        }
        out!(
            "{} {}",
            prefixes.get(&entry.service, entry.slot),
            entry.line
        );
    }
    Ok(ExitCode::SUCCESS)
}
