//! `composure scale SERVICE=N...` and `composure restart [SERVICE...]`.

use std::process::ExitCode;

use anyhow::{Context, bail};
use composure_api::{RestartRequest, ScaleRequest};
use indexmap::IndexMap;

use crate::cli::{GlobalArgs, RestartArgs, ScaleArgs};
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
