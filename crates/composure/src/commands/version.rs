//! `composure version`: this client's version, and the daemon's when one answers (a daemon
//! that does not answer is not an error: the client's version is still known).

use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;

use crate::cli::{GlobalArgs, ListFormat, VersionArgs};
use crate::commands::client;

#[derive(Serialize)]
struct Versions {
    client: &'static str,
    /// `None` when no daemon answers.
    daemon: Option<String>,
}

pub async fn run(global: &GlobalArgs, args: &VersionArgs) -> anyhow::Result<ExitCode> {
    let client_version = env!("CARGO_PKG_VERSION");
    if args.short {
        out!("{client_version}");
        return Ok(ExitCode::SUCCESS);
    }
    let daemon = match client::client(global) {
        Ok(client) => client.info().await.ok().map(|info| info.version),
        Err(_) => None,
    };
    match args.format {
        ListFormat::Json => {
            let versions = Versions {
                client: client_version,
                daemon,
            };
            out!(
                "{}",
                serde_json::to_string_pretty(&versions).context("cannot encode the versions")?
            );
        }
        ListFormat::Table => {
            out!("Composure version {client_version}");
            match daemon {
                Some(version) => out!("Daemon version {version}"),
                None => out!("Daemon: none answers"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
