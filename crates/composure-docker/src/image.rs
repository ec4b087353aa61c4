//! The image a service runs: pulled from its registry, built through the engine, or found
//! locally, as [`composure_runtime::images::image_step`] decides from `pull_policy`, `build:`
//! and `up`'s flags.
//!
//! The image phase ([`prepare`]) runs once per revision, before anything is scheduled, and
//! pins the result: `name:tag@sha256:…` for an image that came from a registry, else the
//! local image id. The daemon records the pin on the service (label `io.composure.image`), so
//! a tag that moves or a rebuilt context is a change of spec that rolls, and every replica
//! (and a rollback) runs the bytes its revision was put with. At launch ([`ensure`]) the pin
//! is run as is; a pinned digest that went away is pulled again.
//!
//! A built image is tagged `image:` or `<project>-<service>` (plus `build.tags`) and carries
//! the label `io.composure.build-hash`: the SHA-256 of the context tar (see the `context` module)
//! and of the build options. An image whose label matches is not rebuilt (unless `--build`
//! or `pull_policy: build`). The image a build replaces stays (untagged, as with `docker
//! build`): the previous revision still runs it, and a rollback needs it.
//!
//! Build options: `context`, `dockerfile`, `dockerfile_inline`, `args`, `target`, `labels`,
//! `no_cache`, `pull`, `network`, `shm_size`, `cache_from`, `tags`, one `extra_hosts` entry
//! and one platform go to the engine's (classic) builder, with the registry credentials of
//! the call for base images. The BuildKit-only options (`additional_contexts`, `secrets`,
//! `ssh`, `cache_to`, `entitlements`, `no_cache_filter`, `provenance`, `sbom`, `privileged`,
//! `ulimits`, `isolation`, several `platforms`) are rejected.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{BuildImageOptions, CreateImageOptions, TagImageOptions};
use composure_compose::model::{Build, Project, Service};
use composure_core::labels;
use composure_runtime::images::{
    Credential, ImageAction, ImageFacts, ImageStep, LocalImage, PreparedImage, PullPolicy,
    RegistryAuth, image_step, registry_of,
};
use composure_runtime::{ImageRequest, RuntimeError};
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::context;
use crate::error::{from_bollard, is_not_found};
use crate::inspect::epoch_ms;
use crate::project_name;

/// The label holding a built image's content hash.
pub const BUILD_HASH: &str = "io.composure.build-hash";

/// One lock per image tag, so that replicas asking for the same image build it once.
#[derive(Debug, Default)]
pub(crate) struct BuildLocks(std::sync::Mutex<HashMap<String, Arc<Mutex<()>>>>);

impl BuildLocks {
    fn get(&self, tag: &str) -> Arc<Mutex<()>> {
        let mut locks = match self.0.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        locks.entry(tag.to_string()).or_default().clone()
    }
}

/// The image phase for one service: pull, build or take what is there, then pin it.
pub(crate) async fn prepare(
    docker: &Docker,
    locks: &BuildLocks,
    project: &Project,
    service_name: &str,
    request: &ImageRequest<'_>,
) -> Result<PreparedImage, RuntimeError> {
    let project_name = project_name(project)?;
    let service = service_of(project, service_name)?;
    let image = service.image_name(project_name, service_name);
    let policy = PullPolicy::of(service)
        .map_err(|e| RuntimeError::InvalidSpec(format!("service `{service_name}`: {e}")))?;
    // Replicas and services that share an image pull or build it once.
    let lock = locks.get(&image);
    let _guard = lock.lock().await;
    let current = local_image(docker, &image).await?;
    let step = image_step(&ImageFacts {
        policy,
        pull_override: request.pull,
        build_mode: request.build,
        has_build: service.build.is_some(),
        local: current.as_ref().map(|found| &found.facts),
        now_ms: request.now_ms,
    });
    let action = match step {
        ImageStep::UseLocal => ImageAction::Present,
        ImageStep::Pull { build_fallback } => {
            (request.progress)(&format!("pulling {image}"));
            match pull(docker, &image, request.auth, request.progress)
                .await
                .map_err(|err| for_service(service_name, err))
            {
                Ok(()) => ImageAction::Pulled,
                Err(err) => match &service.build {
                    Some(build) if build_fallback => {
                        (request.progress)(&format!("{err}; building it instead"));
                        let build = BuildRequest {
                            project: project_name,
                            service: service_name,
                            image: &image,
                            build,
                        };
                        build_if_changed(docker, &build, request, None).await?;
                        ImageAction::Built
                    }
                    _ => return Err(err),
                },
            }
        }
        ImageStep::Build { only_if_changed } => {
            let Some(build) = &service.build else {
                return Err(RuntimeError::InvalidSpec(format!(
                    "service `{service_name}` has no `build:` section"
                )));
            };
            let known = current
                .as_ref()
                .and_then(|found| found.facts.build_hash.as_deref())
                .filter(|_| only_if_changed);
            let build = BuildRequest {
                project: project_name,
                service: service_name,
                image: &image,
                build,
            };
            let built = build_if_changed(docker, &build, request, known).await?;
            if built {
                ImageAction::Built
            } else {
                ImageAction::Present
            }
        }
        ImageStep::Fail(reason) => {
            return Err(RuntimeError::ImageMissing {
                image,
                reason: format!("service `{service_name}` needs it, but {reason}"),
            });
        }
    };
    if let Some(build) = &service.build {
        for tag in &build.tags {
            tag_image(docker, &image, tag).await?;
        }
    }
    pin(docker, &image, action).await
}

/// The image a task of `service_name` runs. With the pin of the image phase: the pin (as
/// its tag when the tag still names the same image, for readable `docker ps`), pulled again
/// when it is a digest that went away. Without one (the daemon's own VIP project): the image
/// phase's default decision, carried out now.
pub(crate) async fn ensure(
    docker: &Docker,
    locks: &BuildLocks,
    project: &Project,
    service_name: &str,
) -> Result<String, RuntimeError> {
    let project_name = project_name(project)?;
    let service = service_of(project, service_name)?;
    let image = service.image_name(project_name, service_name);
    let Some(pinned) = service.labels.get(labels::IMAGE) else {
        let no_auth = RegistryAuth::default();
        let request = ImageRequest::new(&no_auth, now_ms());
        // The phase leaves the image under its own name.
        return prepare(docker, locks, project, service_name, &request)
            .await
            .map(|_| image);
    };
    let found = match local_image(docker, pinned).await? {
        Some(found) => found,
        None if pinned.contains('@') => {
            let lock = locks.get(pinned);
            let _guard = lock.lock().await;
            let no_auth = RegistryAuth::default();
            pull(docker, pinned, &no_auth, &|_| {}).await?;
            local_image(docker, pinned)
                .await?
                .ok_or_else(|| gone(service_name, pinned))?
        }
        None => return Err(gone(service_name, pinned)),
    };
    let tag_matches = local_image(docker, &image)
        .await?
        .is_some_and(|tagged| tagged.id == found.id);
    Ok(if tag_matches { image } else { pinned.clone() })
}

/// A pull failure, saying which service needed the image.
fn for_service(service: &str, err: RuntimeError) -> RuntimeError {
    match err {
        RuntimeError::ImageMissing { image, reason } => RuntimeError::ImageMissing {
            image,
            reason: format!("service `{service}` needs it: {reason}"),
        },
        err => err,
    }
}

pub(crate) fn gone(service: &str, pinned: &str) -> RuntimeError {
    RuntimeError::ImageMissing {
        image: pinned.to_string(),
        reason: format!(
            "service `{service}` runs this image and it is no longer on the engine (removed?): \
             `composure up` builds or pulls it again"
        ),
    }
}

fn service_of<'p>(project: &'p Project, name: &str) -> Result<&'p Service, RuntimeError> {
    project
        .services
        .get(name)
        .ok_or_else(|| RuntimeError::InvalidSpec(format!("service `{name}` is not in the project")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The pin of a local image: `image@sha256:…` when the engine knows the digest it was pulled
/// by (for `image`'s repository), else its local id.
async fn pin(
    docker: &Docker,
    image: &str,
    action: ImageAction,
) -> Result<PreparedImage, RuntimeError> {
    let found = docker
        .inspect_image(image)
        .await
        .map_err(|e| from_bollard(e, &format!("image `{image}`")))?;
    let id = found.id.unwrap_or_else(|| image.to_string());
    let digest = repo_digest(image, found.repo_digests.as_deref().unwrap_or_default());
    let reference = match digest {
        _ if image.contains('@') => image.to_string(),
        Some(digest) => format!("{image}@{digest}"),
        None => id.clone(),
    };
    Ok(PreparedImage {
        reference,
        id,
        action,
    })
}

/// The digest among the engine's `RepoDigests` (`repo@sha256:…`) that belongs to `image`'s
/// repository. Pure.
fn repo_digest(image: &str, repo_digests: &[String]) -> Option<String> {
    let repo = normal_repo(repository(image));
    repo_digests.iter().find_map(|entry| {
        let (name, digest) = entry.split_once('@')?;
        (normal_repo(name) == repo).then(|| digest.to_string())
    })
}

/// `host:5000/app:1` → `host:5000/app`; `app@sha256:…` → `app`.
fn repository(image: &str) -> &str {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => image,
    }
}

/// Docker Hub's short names and long names as one: `docker.io/library/pg` → `pg`.
fn normal_repo(repo: &str) -> &str {
    let repo = repo.strip_prefix("docker.io/").unwrap_or(repo);
    repo.strip_prefix("library/").unwrap_or(repo)
}

/// Pulls `image` through the engine, saying how it goes; each failure named by its cause.
async fn pull(
    docker: &Docker,
    image: &str,
    auth: &RegistryAuth,
    progress: &(dyn Fn(&str) + Send + Sync),
) -> Result<(), RuntimeError> {
    let registry = registry_of(image);
    let credentials = auth
        .0
        .get(registry)
        .map(|c| docker_credentials(registry, c));
    let options = CreateImageOptions {
        from_image: Some(image.to_string()),
        ..CreateImageOptions::default()
    };
    let mut stream = docker.create_image(Some(options), None, credentials);
    let mut layers = std::collections::BTreeSet::new();
    let mut done = std::collections::BTreeSet::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| pull_error(image, registry, e))?;
        let (Some(status), Some(id)) = (info.status.as_deref(), info.id.as_deref()) else {
            continue;
        };
        layers.insert(id.to_string());
        if matches!(status, "Pull complete" | "Already exists") && done.insert(id.to_string()) {
            progress(&format!(
                "{image}: {} of {} layers",
                done.len(),
                layers.len()
            ));
        }
    }
    Ok(())
}

fn docker_credentials(registry: &str, credential: &Credential) -> DockerCredentials {
    DockerCredentials {
        username: credential.username.clone(),
        password: credential.password.clone(),
        identitytoken: credential.identity_token.clone(),
        serveraddress: Some(registry.to_string()),
        ..DockerCredentials::default()
    }
}

/// A failed pull, by cause: the image is not there, the registry refused the credentials,
/// or it could not be reached.
fn pull_error(image: &str, registry: &str, err: bollard::errors::Error) -> RuntimeError {
    let text = match &err {
        bollard::errors::Error::DockerStreamError { error } => error.clone(),
        bollard::errors::Error::DockerResponseServerError { message, .. } => message.clone(),
        _ => return from_bollard(err, &format!("image `{image}`")),
    };
    RuntimeError::ImageMissing {
        image: image.to_string(),
        reason: pull_failure(registry, &text),
    }
}

/// The engine's pull error in words, by cause. Pure.
fn pull_failure(registry: &str, text: &str) -> String {
    let lower = text.to_lowercase();
    let cause = if lower.contains("unauthorized")
        || lower.contains("no basic auth credentials")
        || lower.contains("authentication required")
        || lower.contains("denied")
    {
        format!(
            "registry {registry} refused access (unauthorised): log in with `docker login \
             {registry}` (the credentials of the Docker client configuration are sent)"
        )
    } else if lower.contains("manifest unknown")
        || lower.contains("not found")
        || lower.contains("does not exist")
    {
        format!("registry {registry} has no such image or tag")
    } else if lower.contains("connection refused")
        || lower.contains("no such host")
        || lower.contains("timeout")
        || lower.contains("network is unreachable")
        || lower.contains("dial tcp")
        || lower.contains("server gave http response to https client")
    {
        format!("registry {registry} cannot be reached")
    } else {
        format!("pulling it from {registry} failed")
    };
    format!("{cause} ({})", text.trim())
}

/// Builds the service's image unless `known_hash` matches its context; `true` when it built.
async fn build_if_changed(
    docker: &Docker,
    build: &BuildRequest<'_>,
    request: &ImageRequest<'_>,
    known_hash: Option<&str>,
) -> Result<bool, RuntimeError> {
    check_build_options(build.service, build.build)?;
    let prepared = prepare_context(build.service, build.build).await?;
    if known_hash == Some(prepared.hash.as_str()) {
        return Ok(false);
    }
    (request.progress)(&format!("building {}", build.image));
    run_build(docker, build, prepared, request).await?;
    Ok(true)
}

async fn prepare_context(
    service_name: &str,
    build: &Build,
) -> Result<context::BuildContext, RuntimeError> {
    let options_text = serde_json::to_string(build).unwrap_or_default();
    let build = build.clone();
    tokio::task::spawn_blocking(move || {
        context::prepare(
            Path::new(&build.context),
            build.dockerfile.as_deref(),
            build.dockerfile_inline.as_deref(),
            &options_text,
        )
    })
    .await
    .map_err(|e| RuntimeError::Other(format!("the build context task failed: {e}")))?
    .map_err(|reason| RuntimeError::Build {
        service: service_name.to_string(),
        reason,
    })
}

/// A local image: its id and what the image phase decides by.
struct FoundImage {
    id: String,
    facts: LocalImage,
}

/// The local image `image`; `None` when there is no such image.
async fn local_image(docker: &Docker, image: &str) -> Result<Option<FoundImage>, RuntimeError> {
    match docker.inspect_image(image).await {
        Ok(found) => {
            let refreshed_at_ms = found
                .metadata
                .as_ref()
                .and_then(|m| m.last_tag_time.as_deref())
                .and_then(epoch_ms)
                .or_else(|| found.created.as_deref().and_then(epoch_ms));
            Ok(Some(FoundImage {
                id: found.id.unwrap_or_else(|| image.to_string()),
                facts: LocalImage {
                    build_hash: found
                        .config
                        .and_then(|c| c.labels)
                        .and_then(|mut labels| labels.remove(BUILD_HASH)),
                    refreshed_at_ms,
                },
            }))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(from_bollard(e, &format!("image `{image}`"))),
    }
}

fn check_build_options(service: &str, build: &Build) -> Result<(), RuntimeError> {
    let buildkit_only = [
        ("additional_contexts", !build.additional_contexts.is_empty()),
        ("secrets", !build.secrets.is_empty()),
        ("ssh", !build.ssh.is_empty()),
        ("cache_to", !build.cache_to.is_empty()),
        ("entitlements", !build.entitlements.is_empty()),
        ("no_cache_filter", !build.no_cache_filter.is_empty()),
        ("provenance", build.provenance.is_some()),
        ("sbom", build.sbom.is_some()),
        ("privileged", build.privileged == Some(true)),
        ("ulimits", !build.ulimits.is_empty()),
        ("isolation", build.isolation.is_some()),
        ("platforms", build.platforms.len() > 1),
        (
            "extra_hosts",
            build.extra_hosts.values().map(Vec::len).sum::<usize>() > 1,
        ),
    ];
    if let Some((field, _)) = buildkit_only.iter().find(|(_, set)| *set) {
        return Err(RuntimeError::InvalidSpec(format!(
            "service `{service}`: `build.{field}` is not supported yet"
        )));
    }
    if build.context.contains("://") {
        return Err(RuntimeError::InvalidSpec(format!(
            "service `{service}`: remote build contexts (`{}`) are not supported yet",
            build.context
        )));
    }
    Ok(())
}

/// What to build, and for whom.
pub(crate) struct BuildRequest<'a> {
    pub project: &'a str,
    pub service: &'a str,
    /// The tag to give the image.
    pub image: &'a str,
    pub build: &'a Build,
}

/// The engine's build options: tagged with the image name, labelled with the content hash
/// and the project and service it was built for. Pure.
pub(crate) fn build_options(
    request: &BuildRequest<'_>,
    dockerfile: &str,
    hash: &str,
) -> Result<BuildImageOptions, RuntimeError> {
    let BuildRequest {
        project,
        service,
        image,
        build,
    } = *request;
    let mut labels: HashMap<String, String> = build.labels.clone().into_iter().collect();
    labels.insert(BUILD_HASH.to_string(), hash.to_string());
    labels.insert(labels::COMPOSE_PROJECT.to_string(), project.to_string());
    labels.insert(labels::COMPOSE_SERVICE.to_string(), service.to_string());
    let args: HashMap<String, String> = build
        .args
        .iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.clone(), v)))
        .collect();
    let shm_size = build
        .shm_size
        .map(|b| {
            i32::try_from(b.0).map_err(|_| {
                RuntimeError::InvalidSpec(format!(
                    "service `{service}`: `build.shm_size` is too large for the engine's build API"
                ))
            })
        })
        .transpose()?;
    Ok(BuildImageOptions {
        dockerfile: dockerfile.to_string(),
        t: Some(image.to_string()),
        extrahosts: build
            .extra_hosts
            .iter()
            .flat_map(|(host, ips)| ips.iter().map(move |ip| format!("{host}:{ip}")))
            .next(),
        nocache: build.no_cache == Some(true),
        pull: (build.pull == Some(true)).then(|| "1".to_string()),
        cachefrom: (!build.cache_from.is_empty()).then(|| build.cache_from.clone()),
        rm: true,
        forcerm: true,
        buildargs: (!args.is_empty()).then_some(args),
        shmsize: shm_size,
        labels: Some(labels),
        networkmode: build.network.clone(),
        platform: build.platforms.first().cloned().unwrap_or_default(),
        target: build.target.clone().unwrap_or_default(),
        ..BuildImageOptions::default()
    })
}

async fn run_build(
    docker: &Docker,
    request: &BuildRequest<'_>,
    prepared: context::BuildContext,
    image_request: &ImageRequest<'_>,
) -> Result<(), RuntimeError> {
    let (service, image) = (request.service, request.image);
    let options = build_options(request, &prepared.dockerfile, &prepared.hash)?;
    let body = bollard::body_full(prepared.tar.into());
    // Base images from private registries: every registry's credentials (X-Registry-Config).
    let credentials: HashMap<String, DockerCredentials> = image_request
        .auth
        .0
        .iter()
        .map(|(registry, c)| (registry.clone(), docker_credentials(registry, c)))
        .collect();
    let mut stream = docker.build_image(
        options,
        (!credentials.is_empty()).then_some(credentials),
        Some(body),
    );
    // The last lines of output say what went wrong when a step fails.
    let mut tail: Vec<String> = Vec::new();
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| match e {
            // A failed step arrives as an error line of the stream.
            bollard::errors::Error::DockerStreamError { error } => RuntimeError::Build {
                service: service.to_string(),
                reason: format!("{error}\n{}", tail.join("\n")),
            },
            e => match from_bollard(e, &format!("image `{image}`")) {
                RuntimeError::Unavailable(m) => RuntimeError::Unavailable(m),
                other => RuntimeError::Build {
                    service: service.to_string(),
                    reason: other.to_string(),
                },
            },
        })?;
        if let Some(text) = info.stream {
            if let Some(step) = text.lines().find(|l| l.starts_with("Step ")) {
                (image_request.progress)(&format!("{image}: {}", step.trim()));
            }
            tail.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string),
            );
            let excess = tail.len().saturating_sub(10);
            tail.drain(..excess);
        }
        if let Some(detail) = info.error_detail {
            let message = detail
                .message
                .unwrap_or_else(|| "unknown error".to_string());
            return Err(RuntimeError::Build {
                service: service.to_string(),
                reason: format!("{message}\n{}", tail.join("\n")),
            });
        }
    }
    Ok(())
}

async fn tag_image(docker: &Docker, image: &str, tag: &str) -> Result<(), RuntimeError> {
    // `repo:tag`, where the repo may hold a registry port (`host:5000/app:1`).
    let (repo, version) = match tag.rsplit_once(':') {
        Some((repo, version)) if !version.contains('/') => (repo, version),
        _ => (tag, "latest"),
    };
    let options = TagImageOptions {
        repo: Some(repo.to_string()),
        tag: Some(version.to_string()),
    };
    docker
        .tag_image(image, Some(options))
        .await
        .map_err(|e| from_bollard(e, &format!("image `{image}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_of_the_images_own_repository_is_its_pin() {
        let digests = [
            "other/app@sha256:1".to_string(),
            "127.0.0.1:5000/app@sha256:2".to_string(),
        ];
        assert_eq!(
            repo_digest("127.0.0.1:5000/app:1", &digests).as_deref(),
            Some("sha256:2")
        );
        assert_eq!(repo_digest("app:1", &digests), None);
        let hub = ["postgres@sha256:3".to_string()];
        assert_eq!(
            repo_digest("docker.io/library/postgres:16", &hub).as_deref(),
            Some("sha256:3")
        );
        assert_eq!(repository("host:5000/a/b"), "host:5000/a/b");
        assert_eq!(repository("a@sha256:9"), "a");
    }

    #[test]
    fn pull_failures_are_named_by_cause() {
        let f = |t| pull_failure("r:5000", t);
        assert!(f("unauthorized: authentication required").contains("unauthorised"));
        assert!(
            f("Head \"https://r/v2/a/manifests/1\": no basic auth credentials")
                .contains("unauthorised")
        );
        assert!(f("manifest for r:5000/a:2 not found: manifest unknown").contains("no such image"));
        assert!(
            f("Get \"http://r:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused")
                .contains("cannot be reached")
        );
        assert!(f("something else").contains("pulling it from r:5000 failed (something else)"));
    }

    #[test]
    fn build_options_carry_args_target_labels_and_hash() {
        let mut build = Build::from_context("/ctx");
        build.args.insert("A".into(), Some("1".into()));
        build.args.insert("UNSET".into(), None);
        build.target = Some("prod".into());
        build.labels.insert("team".into(), "x".into());
        build
            .extra_hosts
            .insert("h".into(), vec!["10.0.0.1".into()]);
        let request = BuildRequest {
            project: "p",
            service: "web",
            image: "p-web",
            build: &build,
        };
        let opts = build_options(&request, "Dockerfile.dev", "abc").unwrap();
        assert_eq!(opts.t.as_deref(), Some("p-web"));
        assert_eq!(opts.dockerfile, "Dockerfile.dev");
        assert_eq!(opts.target, "prod");
        assert_eq!(opts.extrahosts.as_deref(), Some("h:10.0.0.1"));
        let args = opts.buildargs.unwrap();
        assert_eq!(args.len(), 1);
        assert_eq!(args["A"], "1");
        let labels = opts.labels.unwrap();
        assert_eq!(labels[BUILD_HASH], "abc");
        assert_eq!(labels["team"], "x");
        assert_eq!(labels[labels::COMPOSE_PROJECT], "p");
        assert_eq!(labels[labels::COMPOSE_SERVICE], "web");
    }

    #[test]
    fn buildkit_only_options_are_rejected() {
        let mut build = Build::from_context("/ctx");
        build.ssh.insert("default".into(), None);
        let err = check_build_options("web", &build).unwrap_err().to_string();
        assert!(err.contains("build.ssh") && err.contains("`web`"), "{err}");
    }
}
