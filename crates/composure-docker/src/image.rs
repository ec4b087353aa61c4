//! `ensure_image`: the image a service runs, built through the engine when the file says how.
//!
//! There is no registry: nothing is ever pulled. What each `pull_policy` means here:
//!
//! | `pull_policy` | with `build:` | without `build:` |
//! |---|---|---|
//! | unset, `build` | build when the context changed (content hash), else reuse | the image must exist locally |
//! | `missing`, `if_not_present`, `daily`, `weekly`, `every_<d>` | build only when the image is missing | the image must exist locally |
//! | `never` | the image must exist locally | the image must exist locally |
//! | `always` | fails: pulling needs a registry | fails: pulling needs a registry |
//!
//! A built image is tagged `image:` or `<project>-<service>` (plus `build.tags`) and carries
//! the label `io.composure.build-hash`: the SHA-256 of the context tar (see the `context` module)
//! and of the build options. An image whose label matches is not rebuilt.
//!
//! Build options: `context`, `dockerfile`, `dockerfile_inline`, `args`, `target`, `labels`,
//! `no_cache`, `network`, `shm_size`, `cache_from`, `tags`, one `extra_hosts` entry and one
//! platform go to the engine's (classic) builder. `pull: true` fails (no registry); the
//! BuildKit-only options (`additional_contexts`, `secrets`, `ssh`, `cache_to`,
//! `entitlements`, `no_cache_filter`, `provenance`, `sbom`, `privileged`, `ulimits`,
//! `isolation`, several `platforms`) are rejected.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bollard::Docker;
use bollard::query_parameters::{BuildImageOptions, RemoveImageOptions, TagImageOptions};
use composure_compose::model::{Build, Project, Service};
use composure_core::labels;
use composure_runtime::RuntimeError;
use futures_util::StreamExt;
use tokio::sync::Mutex;

use crate::context;
use crate::error::{from_bollard, is_not_found};
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    /// Unset or `build`: build when the context changed.
    Rebuild,
    /// Build only when the image is missing.
    Missing,
    Never,
    Always,
}

fn policy(service: &str, text: Option<&str>) -> Result<Policy, RuntimeError> {
    match text {
        None | Some("build") => Ok(Policy::Rebuild),
        Some("missing" | "if_not_present" | "daily" | "weekly") => Ok(Policy::Missing),
        Some(p) if p.starts_with("every_") => Ok(Policy::Missing),
        Some("never") => Ok(Policy::Never),
        Some("always") => Ok(Policy::Always),
        Some(other) => Err(RuntimeError::InvalidSpec(format!(
            "service `{service}`: unknown pull_policy `{other}`"
        ))),
    }
}

pub(crate) async fn ensure(
    docker: &Docker,
    locks: &BuildLocks,
    project: &Project,
    service_name: &str,
) -> Result<String, RuntimeError> {
    let project_name = project_name(project)?;
    let service = project.services.get(service_name).ok_or_else(|| {
        RuntimeError::InvalidSpec(format!("service `{service_name}` is not in the project"))
    })?;
    let image = service.image_name(project_name, service_name);
    let policy = policy(service_name, service.pull_policy.as_deref())?;
    if policy == Policy::Always {
        return Err(RuntimeError::ImageMissing {
            image,
            reason: format!(
                "service `{service_name}` has `pull_policy: always`, which needs a registry to \
                 pull from, and there is none"
            ),
        });
    }
    let build = match (&service.build, policy) {
        (Some(build), Policy::Rebuild | Policy::Missing) => build,
        _ => {
            return match local_image(docker, &image).await? {
                Some(_) => Ok(image),
                None => Err(missing(service_name, service, &image)),
            };
        }
    };
    let lock = locks.get(&image);
    let _guard = lock.lock().await;
    let current = local_image(docker, &image).await?;
    if policy == Policy::Missing && current.is_some() {
        return Ok(image);
    }
    check_build_options(service_name, build)?;
    let options_text = serde_json::to_string(build).unwrap_or_default();
    let prepared = {
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
        })?
    };
    let up_to_date = current
        .as_ref()
        .and_then(|found| found.labels.get(BUILD_HASH))
        .is_some_and(|h| *h == prepared.hash);
    if !up_to_date {
        let request = BuildRequest {
            project: project_name,
            service: service_name,
            image: &image,
            build,
        };
        run_build(docker, &request, prepared).await?;
        if let Some(old) = current {
            // The image this build replaced: gone unless a container still uses it (then it
            // stays, untagged, as with `docker build`).
            let _ = docker
                .remove_image(&old.id, None::<RemoveImageOptions>, None)
                .await;
        }
    }
    for tag in &build.tags {
        tag_image(docker, &image, tag).await?;
    }
    Ok(image)
}

fn missing(service_name: &str, service: &Service, image: &str) -> RuntimeError {
    let hint = if service.build.is_some() {
        "`pull_policy: never` forbids building it"
    } else {
        "add a `build:` section or build it with `docker build`"
    };
    RuntimeError::ImageMissing {
        image: image.to_string(),
        reason: format!(
            "service `{service_name}` needs it, it is not present locally, and there is no \
             registry to pull it from ({hint})"
        ),
    }
}

/// A local image: its id and labels.
struct LocalImage {
    id: String,
    labels: HashMap<String, String>,
}

/// The local image `image`; `None` when there is no such image.
async fn local_image(docker: &Docker, image: &str) -> Result<Option<LocalImage>, RuntimeError> {
    match docker.inspect_image(image).await {
        Ok(found) => Ok(Some(LocalImage {
            id: found.id.unwrap_or_else(|| image.to_string()),
            labels: found.config.and_then(|c| c.labels).unwrap_or_default(),
        })),
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
    if build.pull == Some(true) {
        return Err(RuntimeError::Build {
            service: service.to_string(),
            reason: "`build.pull: true` needs a registry to pull base images from, and there \
                     is none"
                .to_string(),
        });
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
) -> Result<(), RuntimeError> {
    let (service, image) = (request.service, request.image);
    let options = build_options(request, &prepared.dockerfile, &prepared.hash)?;
    let body = bollard::body_full(prepared.tar.into());
    let mut stream = docker.build_image(options, None, Some(body));
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
    fn pull_policies() {
        assert_eq!(policy("s", None).unwrap(), Policy::Rebuild);
        assert_eq!(policy("s", Some("build")).unwrap(), Policy::Rebuild);
        assert_eq!(policy("s", Some("missing")).unwrap(), Policy::Missing);
        assert_eq!(policy("s", Some("every_12h")).unwrap(), Policy::Missing);
        assert_eq!(policy("s", Some("never")).unwrap(), Policy::Never);
        assert_eq!(policy("s", Some("always")).unwrap(), Policy::Always);
        assert!(policy("s", Some("sometimes")).is_err());
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
        let mut build = Build::from_context("/ctx");
        build.pull = Some(true);
        let err = check_build_options("web", &build).unwrap_err().to_string();
        assert!(err.contains("registry"), "{err}");
    }
}
