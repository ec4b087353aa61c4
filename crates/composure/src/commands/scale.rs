//! `composure scale SERVICE=N...`, `restart [SERVICE...]`, and `stop`/`start`, which are
//! scales: to 0, and back to the compose file's replicas.

use std::process::ExitCode;

use anyhow::{Context, bail};
use composure_api::{RestartRequest, ScaleRequest};
use indexmap::IndexMap;

use crate::cli::{GlobalArgs, RestartArgs, ScaleArgs, ServicesArgs};
use crate::commands::{client, project};

pub async fn scale(global: &GlobalArgs, args: &ScaleArgs) -> anyhow::Result<ExitCode> {
    let services = parse_targets(&args.targets)?;
    let name = project::project_name(global)?;
    let response = client::client(global)?
        .scale(&name, &ScaleRequest { services })
        .await?;
    out!("Scaled (revision {}).", response.number);
    Ok(ExitCode::SUCCESS)
}

/// `composure stop [SERVICE...]`: the services scaled to 0 (each replica drained and
/// stopped within its grace, then removed: an orchestrator keeps no stopped containers);
/// `start` brings them back.
pub async fn stop(global: &GlobalArgs, args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let client = client::client(global)?;
    let status = client.project(&name).await?;
    let services: IndexMap<String, u32> = status
        .services
        .iter()
        .filter(|s| args.services.is_empty() || args.services.contains(&s.name))
        .map(|s| (s.name.clone(), 0))
        .collect();
    if let Some(unknown) = args.services.iter().find(|s| !services.contains_key(*s)) {
        bail!("project `{name}` has no service `{unknown}`");
    }
    let response = client.scale(&name, &ScaleRequest { services }).await?;
    out!("Stopping (revision {}).", response.number);
    Ok(ExitCode::SUCCESS)
}

/// `composure start [SERVICE...]`: the services at the replicas their compose file asks for.
pub async fn start(global: &GlobalArgs, args: &ServicesArgs) -> anyhow::Result<ExitCode> {
    let loaded = project::load(&project::load_options(global, &[])?)?;
    let name = global
        .project_name
        .clone()
        .or(loaded.project.name.clone())
        .unwrap_or_default();
    let mut services = IndexMap::new();
    for (service_name, service) in &loaded.project.services {
        if args.services.is_empty() || args.services.contains(service_name) {
            let replicas = u32::try_from(composure_compose::semantic::replicas(service))
                .with_context(|| format!("service `{service_name}` asks for too many replicas"))?;
            services.insert(service_name.clone(), replicas);
        }
    }
    if let Some(unknown) = args.services.iter().find(|s| !services.contains_key(*s)) {
        bail!("the compose file has no service `{unknown}`");
    }
    let response = client::client(global)?
        .scale(&name, &ScaleRequest { services })
        .await?;
    out!("Starting (revision {}).", response.number);
    Ok(ExitCode::SUCCESS)
}

pub async fn restart(global: &GlobalArgs, args: &RestartArgs) -> anyhow::Result<ExitCode> {
    let name = project::project_name(global)?;
    let request = RestartRequest {
        services: args.services.clone(),
    };
    let response = client::client(global)?.restart(&name, &request).await?;
    out!(
        "Restarting slot by slot, as an update rolls (revision {}); follow it with \
         `composure rollout status SERVICE`.",
        response.number
    );
    Ok(ExitCode::SUCCESS)
}

/// `web=3` pairs; a service named twice is a mistake worth pointing out.
pub fn parse_targets(targets: &[String]) -> anyhow::Result<IndexMap<String, u32>> {
    let mut services = IndexMap::new();
    for target in targets {
        let Some((service, replicas)) = target.split_once('=') else {
            bail!("`{target}`: write SERVICE=REPLICAS, e.g. web=3");
        };
        let replicas: u32 = replicas.parse().with_context(|| {
            format!("`{target}`: the number of replicas must be a whole number")
        })?;
        if services.insert(service.to_string(), replicas).is_some() {
            bail!("service `{service}` is named twice");
        }
    }
    Ok(services)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_reject_mistakes() {
        let t = parse_targets(&["web=3".into(), "db=0".into()]).expect("valid");
        assert_eq!(t["web"], 3);
        assert_eq!(t["db"], 0);
        assert!(parse_targets(&["web".into()]).is_err());
        assert!(parse_targets(&["web=-1".into()]).is_err());
        assert!(parse_targets(&["web=1".into(), "web=2".into()]).is_err());
    }
}
