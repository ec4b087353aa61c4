//! The image phase from the client: `composure pull`, `composure build`, and the first step
//! of `up`. The daemon pulls and builds; the client sends the credentials of its own Docker
//! configuration (`DOCKER_CONFIG`, else `~/.docker/config.json`, with `credsStore` and
//! `credHelpers`), as `docker compose` does, for this call only.

use std::collections::BTreeMap;

use anyhow::bail;
use composure_api::{
    Client, ImageBuild, ImageProgress, ImageState, ImagesRequest, PutProject, RegistryCredential,
};
use composure_compose::model::Project;
use composure_runtime::images::registry_of;
use docker_credential::{CredentialRetrievalError, DockerCredential};
use futures_util::StreamExt;
use indexmap::IndexMap;

use std::process::ExitCode;

use crate::cli::{BuildArgs, GlobalArgs, PullArgs};
use crate::commands::up::put_body;
use crate::commands::{client, project};
use crate::output;

/// How the phase went: the pin of each service that got its image, and the failures.
pub struct PhaseOutcome {
    pub pins: IndexMap<String, String>,
    pub failures: Vec<String>,
}

/// Runs the image phase on the daemon, printing each image's progress on stderr (unless
/// `quiet`).
pub async fn run_phase(
    client: &Client,
    name: &str,
    request: &ImagesRequest,
    quiet: bool,
) -> anyhow::Result<PhaseOutcome> {
    let mut stream = client.prepare_images(name, request).await?;
    let mut outcome = PhaseOutcome {
        pins: IndexMap::new(),
        failures: Vec::new(),
    };
    while let Some(line) = stream.next().await {
        let line = line?;
        if let Some(text) = progress_line(&line).filter(|_| !quiet) {
            eprintln!("{text}");
        }
        match (line.state, line.reference) {
            (ImageState::Failed, _) => outcome.failures.push(line.message),
            (state, Some(reference)) if state.is_done() => {
                outcome.pins.insert(line.service, reference);
            }
            _ => {}
        }
    }
    Ok(outcome)
}

/// One progress line, as `docker compose` words them (`web  Pulled`). Pure.
pub fn progress_line(line: &ImageProgress) -> Option<String> {
    let service = &line.service;
    let reference = short(line.reference.as_deref());
    Some(match line.state {
        ImageState::Working => format!("  {service} {}", line.message),
        ImageState::Present => return None,
        ImageState::Pulled => output::success(&format!("{service} Pulled {reference}")),
        ImageState::Built => output::success(&format!("{service} Built {reference}")),
        ImageState::Failed => output::failure(&format!("{service} image failed")),
    })
}

/// `name:tag@sha256:0123456789ab…` → `name:tag@sha256:0123456789ab`; `sha256:…` alike.
fn short(reference: Option<&str>) -> String {
    let reference = reference.unwrap_or_default();
    match reference.find("sha256:") {
        Some(at) => reference.chars().take(at + "sha256:".len() + 12).collect(),
        None => reference.to_string(),
    }
}

/// The request for the image phase of `project`.
pub fn request(
    body: &PutProject,
    project: &Project,
    services: Vec<String>,
    build: ImageBuild,
    pull: Option<String>,
) -> ImagesRequest {
    ImagesRequest {
        project: body.clone(),
        services,
        build,
        pull,
        registry_auth: registry_auth(project),
    }
}

/// The credentials of every registry the project's images come from that the Docker client
/// configuration has. A registry without any is pulled from anonymously; a helper that fails
/// is said, not fatal (the registry may not need credentials).
pub fn registry_auth(project: &Project) -> BTreeMap<String, RegistryCredential> {
    let project_name = project.name.as_deref().unwrap_or_default();
    let mut auth = BTreeMap::new();
    if !docker_config_exists() {
        return auth;
    }
    for (name, service) in &project.services {
        let image = service.image_name(project_name, name);
        let registry = registry_of(&image);
        if auth.contains_key(registry) {
            continue;
        }
        // Docker keys Docker Hub's entry by its old index address.
        let key = if registry == "docker.io" {
            "https://index.docker.io/v1/"
        } else {
            registry
        };
        match docker_credential::get_credential(key) {
            Ok(credential) => {
                auth.insert(registry.to_string(), credential_of(credential));
            }
            Err(
                CredentialRetrievalError::NoCredentialConfigured
                | CredentialRetrievalError::ConfigNotFound,
            ) => {}
            Err(err) => eprintln!(
                "{}",
                output::warning(&format!("no credentials for registry {registry}: {err}"))
            ),
        }
    }
    auth
}

/// Whether the Docker client configuration file is there (`$DOCKER_CONFIG/config.json`,
/// else `~/.docker/config.json`): without one, every pull is anonymous, quietly.
fn docker_config_exists() -> bool {
    let dir = match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => match std::env::var_os("HOME") {
            Some(home) => std::path::Path::new(&home).join(".docker"),
            None => return false,
        },
    };
    dir.join("config.json").exists()
}

fn credential_of(credential: DockerCredential) -> RegistryCredential {
    match credential {
        DockerCredential::IdentityToken(token) => RegistryCredential {
            identity_token: Some(token),
            ..RegistryCredential::default()
        },
        DockerCredential::UsernamePassword(username, password) => RegistryCredential {
            username: Some(username),
            password: Some(password),
            identity_token: None,
        },
    }
}

/// The phase's failures as one error.
pub fn check(outcome: &PhaseOutcome) -> anyhow::Result<()> {
    match outcome.failures.as_slice() {
        [] => Ok(()),
        [one] => bail!("{one}"),
        many => bail!(
            "{} images could not be had:\n  {}",
            many.len(),
            many.join("\n  ")
        ),
    }
}

/// `composure pull [SERVICE...]`: pull the services' images (those with an `image:`), as
/// `docker compose pull` does; exit 1 when one could not be pulled.
pub async fn pull(global: &GlobalArgs, args: &PullArgs) -> anyhow::Result<ExitCode> {
    if !matches!(args.policy.as_str(), "always" | "missing") {
        bail!(
            "--policy must be `always` or `missing`, not `{}`",
            args.policy
        );
    }
    let loaded = project::load(&project::load_options(global, &args.services)?)?;
    let name = loaded.project.name.clone().unwrap_or_default();
    let services: Vec<String> = loaded
        .project
        .services
        .iter()
        .filter(|(_, s)| s.image.is_some() && !(args.ignore_buildable && s.build.is_some()))
        .map(|(n, _)| n.clone())
        .collect();
    if services.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let body = put_body(&loaded)?;
    let request = request(
        &body,
        &loaded.project,
        services,
        ImageBuild::Never,
        Some(args.policy.clone()),
    );
    let outcome = run_phase(&client::client(global)?, &name, &request, args.quiet).await?;
    if args.ignore_pull_failures {
        for failure in &outcome.failures {
            eprintln!("{}", output::warning(failure));
        }
        return Ok(ExitCode::SUCCESS);
    }
    check(&outcome)?;
    Ok(ExitCode::SUCCESS)
}

/// `composure build [SERVICE...]`: build the images of services with a `build:` section,
/// whether their context changed or not (the engine's cache keeps an unchanged build quick).
pub async fn build(global: &GlobalArgs, args: &BuildArgs) -> anyhow::Result<ExitCode> {
    let loaded = project::load(&project::load_options(global, &args.services)?)?;
    let name = loaded.project.name.clone().unwrap_or_default();
    if let Some(unbuildable) = args.services.iter().find(|s| {
        loaded
            .project
            .services
            .get(*s)
            .is_some_and(|s| s.build.is_none())
    }) {
        bail!("service `{unbuildable}` has no `build:` section");
    }
    let services: Vec<String> = loaded
        .project
        .services
        .iter()
        .filter(|(_, s)| s.build.is_some())
        .map(|(n, _)| n.clone())
        .collect();
    if services.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    let body = put_body(&loaded)?;
    let request = request(&body, &loaded.project, services, ImageBuild::Always, None);
    let outcome = run_phase(&client::client(global)?, &name, &request, false).await?;
    check(&outcome)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_compose_says_it() {
        let mut line = ImageProgress {
            service: "web".into(),
            image: "r:5000/app:1".into(),
            state: ImageState::Pulled,
            message: String::new(),
            reference: Some(format!("r:5000/app:1@sha256:{}", "a".repeat(64))),
        };
        assert_eq!(
            progress_line(&line).unwrap(),
            format!("✔ web Pulled r:5000/app:1@sha256:{}", "a".repeat(12))
        );
        line.state = ImageState::Present;
        assert_eq!(progress_line(&line), None);
    }
}
