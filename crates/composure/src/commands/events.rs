//! `composure events`: what the daemon does and sees.

use std::process::ExitCode;

use anyhow::Context;
use composure_api::EventsQuery;
use futures_util::StreamExt;

use crate::cli::{EventsArgs, GlobalArgs, ListFormat};
use crate::commands::{client, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &EventsArgs) -> anyhow::Result<ExitCode> {
    let project = if args.all_projects {
        None
    } else {
        Some(project::project_name(global)?)
    };
    let query = EventsQuery {
        project,
        since: Some(0),
        follow: !args.no_follow,
    };
    let mut events = client::client(global)?.events(&query).await?;
    while let Some(event) = events.next().await {
        let event = event?;
        match args.format {
            ListFormat::Json => {
                out!("{}", event_json(&event).context("cannot encode event")?)
            }
            ListFormat::Table => out!("{}", output::event_line(&event)),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An event as `--format json` prints it: the API's fields, with `time` in RFC 3339 (as
/// `docker compose events --json` has it) and the milliseconds kept as `time_ms`.
fn event_json(event: &composure_api::Event) -> serde_json::Result<String> {
    let mut value = serde_json::to_value(event)?;
    if let Some(fields) = value.as_object_mut() {
        fields.insert("time".into(), output::rfc3339(event.time).into());
        fields.insert("time_ms".into(), event.time.into());
    }
    serde_json::to_string(&value)
}
