//! `composure down`: remove the project, and wait until it is gone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::cli::{DownArgs, GlobalArgs};
use crate::commands::{client, project};
use crate::output;

pub async fn run(global: &GlobalArgs, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    client.delete_project(&name, args.volumes).await?;
    eprintln!("Removing project {name}…");
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        match client.project(&name).await {
            Err(e) if e.is_not_found() => break,
            Err(e) => return Err(e.into()),
            Ok(_) if Instant::now() >= deadline => {
                anyhow::bail!(
                    "project {name} is still being removed after 300s; see `composure ps`"
                )
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    eprintln!("{}", output::success(&format!("Project {name} removed.")));
    Ok(ExitCode::SUCCESS)
}
