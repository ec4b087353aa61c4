//! The image phase on the daemon's side: before a revision is stored, each service's image
//! is pulled, built or found (as its `pull_policy` and `build:` say) and pinned on the
//! service (label `io.composure.image`), so that nothing of a revision whose image cannot be
//! had is stored, and every replica runs the same bytes. `POST .../images` runs the phase
//! with progress (`composure up`, `pull`, `build`); a put pins what the phase gave it, or
//! runs the phase itself for a service it was given no pin for.

use composure_api::{ImageBuild, ImageProgress, ImageState, ImagesRequest, RegistryCredential};
use composure_compose::model::Project;
use composure_core::labels;
use composure_runtime::images::{
    BuildMode, Credential, ImageAction, PreparedImage, PullPolicy, RegistryAuth,
};
use composure_runtime::{ImageRequest, Runtime, RuntimeError};
use indexmap::IndexMap;

/// `up`'s flags and credentials, read from the request.
pub struct PhaseOptions {
    pub build: BuildMode,
    pub pull: Option<PullPolicy>,
    pub auth: RegistryAuth,
}

impl PhaseOptions {
    /// As each service's file says, with no credentials.
    pub fn from_file() -> PhaseOptions {
        PhaseOptions {
            build: BuildMode::Auto,
            pull: None,
            auth: RegistryAuth::default(),
        }
    }

    pub fn from_request(request: &ImagesRequest) -> Result<PhaseOptions, String> {
        let pull = match request.pull.as_deref() {
            None => None,
            Some(text) => {
                PullPolicy::parse(Some(text), None).map_err(|e| format!("--pull: {e}"))?
            }
        };
        Ok(PhaseOptions {
            build: match request.build {
                ImageBuild::Auto => BuildMode::Auto,
                ImageBuild::Always => BuildMode::Always,
                ImageBuild::Never => BuildMode::Never,
            },
            pull,
            auth: RegistryAuth(
                request
                    .registry_auth
                    .iter()
                    .map(|(registry, c)| (registry.clone(), credential(c)))
                    .collect(),
            ),
        })
    }
}

fn credential(c: &RegistryCredential) -> Credential {
    Credential {
        username: c.username.clone(),
        password: c.password.clone(),
        identity_token: c.identity_token.clone(),
    }
}

/// The image phase of one service, saying how it goes through `report`.
pub async fn prepare_service(
    runtime: &dyn Runtime,
    project: &Project,
    service: &str,
    options: &PhaseOptions,
    now_ms: u64,
    report: &(dyn Fn(ImageProgress) + Send + Sync),
) -> Result<PreparedImage, RuntimeError> {
    let image = image_name(project, service);
    let progress = |message: &str| {
        report(ImageProgress {
            service: service.to_string(),
            image: image.clone(),
            state: ImageState::Working,
            message: message.to_string(),
            reference: None,
        });
    };
    let request = ImageRequest {
        build: options.build,
        pull: options.pull,
        auth: &options.auth,
        now_ms,
        progress: &progress,
    };
    let done = runtime.prepare_image(project, service, &request).await;
    report(match &done {
        Ok(prepared) => ImageProgress {
            service: service.to_string(),
            image: image.clone(),
            state: match prepared.action {
                ImageAction::Present => ImageState::Present,
                ImageAction::Pulled => ImageState::Pulled,
                ImageAction::Built => ImageState::Built,
            },
            message: String::new(),
            reference: Some(prepared.reference.clone()),
        },
        Err(err) => ImageProgress {
            service: service.to_string(),
            image: image.clone(),
            state: ImageState::Failed,
            message: err.to_string(),
            reference: None,
        },
    });
    done
}

/// `services` in the order the phase takes them: those that build first, so that a service
/// that runs another's built image (the demo's `kv` runs `web`'s) finds it instead of trying
/// to pull it.
pub fn in_build_order(project: &Project, services: Vec<String>) -> (Vec<String>, Vec<String>) {
    services.into_iter().partition(|name| {
        project
            .services
            .get(name)
            .is_some_and(|s| s.build.is_some())
    })
}

/// The image as the file names it: `image:`, else `<project>-<service>`.
pub fn image_name(project: &Project, service: &str) -> String {
    let project_name = project.name.as_deref().unwrap_or_default();
    project
        .services
        .get(service)
        .map_or_else(String::new, |s| s.image_name(project_name, service))
}

/// The pins for a put, and what to warn of: each service's given pin when the engine has
/// it, the pin it already carries (a service `up SERVICE...` kept as stored), or the image
/// phase run now as its file says. The first failure is the put's error, with the service
/// it is of. An engine that is away is no failure: desired state is accepted while it is
/// gone, and the services left unpinned get their images at launch, as their files say.
pub async fn pins_for_put(
    runtime: &dyn Runtime,
    project: &Project,
    given: &IndexMap<String, String>,
    now_ms: u64,
) -> Result<(IndexMap<String, String>, Vec<String>), (String, RuntimeError)> {
    let mut pins = IndexMap::new();
    let mut unpinned = Vec::new();
    let (building, others) = in_build_order(project, project.services.keys().cloned().collect());
    for name in building.iter().chain(&others) {
        let Some(service) = project.services.get(name) else {
            continue;
        };
        let offered = given
            .get(name)
            .or_else(|| service.labels.get(labels::IMAGE));
        let found = match offered {
            Some(reference) => runtime
                .image_id(reference)
                .await
                .map(|id| id.map(|_| reference)),
            None => Ok(None),
        };
        let reference = match found {
            Ok(Some(reference)) => reference.clone(),
            // Not offered, or gone since: the phase finds, pulls or builds it now.
            Ok(None) => {
                let options = PhaseOptions::from_file();
                match prepare_service(runtime, project, name, &options, now_ms, &|_| {}).await {
                    Ok(prepared) => prepared.reference,
                    Err(RuntimeError::Unavailable(_)) => {
                        unpinned.push(name.clone());
                        continue;
                    }
                    Err(err) => return Err((name.clone(), err)),
                }
            }
            Err(RuntimeError::Unavailable(_)) => {
                unpinned.push(name.clone());
                continue;
            }
            Err(err) => return Err((name.clone(), err)),
        };
        pins.insert(name.clone(), reference);
    }
    let warnings = if unpinned.is_empty() {
        Vec::new()
    } else {
        vec![format!(
            "the container engine is unavailable: the images of {} are pulled or built when \
             it is back",
            unpinned.join(", ")
        )]
    };
    Ok((pins, warnings))
}

/// The pin of each service of a stored project's spec.
pub fn stored_pins(spec: &serde_json::Value) -> IndexMap<String, String> {
    let Some(services) = spec.get("services").and_then(|s| s.as_object()) else {
        return IndexMap::new();
    };
    services
        .iter()
        .filter_map(|(name, service)| {
            let pin = service.get("labels")?.get(labels::IMAGE)?.as_str()?;
            Some((name.clone(), pin.to_string()))
        })
        .collect()
}
