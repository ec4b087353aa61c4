//! The image phase, as pure decisions: what a service's `pull_policy`, its `build:` and
//! `up`'s `--build`/`--no-build`/`--pull` ask of its image, given what the engine holds.
//! The runtime carries the answer out (pull, build, or use what is there).
//!
//! | policy | image present locally | image missing |
//! |---|---|---|
//! | `missing` (default without `build:`), `if_not_present` | use it | pull (build when the service has `build:` and the pull fails) |
//! | `always` | pull | pull |
//! | `never` | use it | fail |
//! | `build` | build | build |
//! | unset with `build:` | build when the context changed (its content hash), else use it | build |
//! | `daily`, `weekly`, `every_<d>`, `refresh` + `pull_refresh_after` | pull when the last pull (or tag) is older than that, else use it | pull |
//!
//! `--build` builds every service that has `build:`; `--no-build` never builds (a missing
//! image of a service with `build:` fails); `--pull P` takes the place of each service's
//! policy (as `docker compose up --pull`).

use std::time::Duration;

use composure_compose::model::{Duration as ComposeDuration, Service};
use serde::{Deserialize, Serialize};

/// A service's `pull_policy` (with `pull_refresh_after`), read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PullPolicy {
    Missing,
    Always,
    Never,
    Build,
    /// Pull again once the local image is older than this (`daily`, `every_12h`, ...).
    Refresh(Duration),
}

impl PullPolicy {
    /// `None` when the file sets no policy: the default depends on `build:`.
    pub fn of(service: &Service) -> Result<Option<PullPolicy>, String> {
        PullPolicy::parse(
            service.pull_policy.as_deref(),
            service.pull_refresh_after.as_deref(),
        )
    }

    pub fn parse(
        policy: Option<&str>,
        refresh_after: Option<&str>,
    ) -> Result<Option<PullPolicy>, String> {
        const DAY: u64 = 86_400;
        let policy = match policy {
            None => return Ok(None),
            Some("missing" | "if_not_present") => PullPolicy::Missing,
            Some("always") => PullPolicy::Always,
            Some("never") => PullPolicy::Never,
            Some("build") => PullPolicy::Build,
            Some("daily") => PullPolicy::Refresh(Duration::from_secs(DAY)),
            Some("weekly") => PullPolicy::Refresh(Duration::from_secs(7 * DAY)),
            Some("refresh") => {
                let after = refresh_after.ok_or(
                    "`pull_policy: refresh` needs `pull_refresh_after` (a duration such as 12h)",
                )?;
                PullPolicy::Refresh(refresh_duration(after)?)
            }
            Some(every) if every.starts_with("every_") => {
                PullPolicy::Refresh(refresh_duration(&every["every_".len()..])?)
            }
            Some(other) => {
                return Err(format!(
                    "unknown pull_policy `{other}` (use always, never, missing, build, daily, \
                     weekly, every_<duration> or refresh)"
                ));
            }
        };
        Ok(Some(policy))
    }
}

fn refresh_duration(text: &str) -> Result<Duration, String> {
    match ComposeDuration::parse(text) {
        Ok(d) if !d.0.is_zero() => Ok(d.0),
        Ok(_) => Err(format!("a pull refresh interval of `{text}` is zero")),
        Err(err) => Err(format!("`{text}` is not a duration: {err}")),
    }
}

/// What `up` (or `composure build`/`pull`) asks of the image phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildMode {
    /// Build as the policy says.
    #[default]
    Auto,
    /// `--build`: build every service that has `build:`.
    Always,
    /// `--no-build`: never build.
    Never,
}

/// The local image, as far as the decision needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalImage {
    /// The build hash label (`io.composure.build-hash`) it carries, if it was built here.
    pub build_hash: Option<String>,
    /// When it was last pulled or tagged (else created), ms since the Unix epoch.
    pub refreshed_at_ms: Option<u64>,
}

/// What to do for one service's image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageStep {
    /// Run the image that is there.
    UseLocal,
    /// Pull it; on failure, build when `build_fallback` (a `build:` section and no policy
    /// that forbids it).
    Pull { build_fallback: bool },
    /// Build it (the build reuses an up-to-date image itself when `only_if_changed`).
    Build { only_if_changed: bool },
    /// Nothing may be done and nothing is there.
    Fail(String),
}

/// The facts one decision reads.
#[derive(Clone, Debug)]
pub struct ImageFacts<'a> {
    /// The service's own policy (`None`: unset).
    pub policy: Option<PullPolicy>,
    /// `--pull`, which takes the place of the policy.
    pub pull_override: Option<PullPolicy>,
    pub build_mode: BuildMode,
    pub has_build: bool,
    pub local: Option<&'a LocalImage>,
    pub now_ms: u64,
}

/// The image step for one service. Pure.
pub fn image_step(facts: &ImageFacts<'_>) -> ImageStep {
    let can_build = facts.has_build && facts.build_mode != BuildMode::Never;
    if facts.has_build && facts.build_mode == BuildMode::Always {
        return ImageStep::Build {
            only_if_changed: false,
        };
    }
    let policy = facts.pull_override.or(facts.policy);
    let present = facts.local.is_some();
    match policy {
        None if facts.has_build => {
            if can_build {
                ImageStep::Build {
                    only_if_changed: true,
                }
            } else if present {
                ImageStep::UseLocal
            } else {
                ImageStep::Fail(
                    "it is not present locally and `--no-build` forbids building it".into(),
                )
            }
        }
        None | Some(PullPolicy::Missing) => {
            if present {
                ImageStep::UseLocal
            } else {
                ImageStep::Pull {
                    build_fallback: can_build,
                }
            }
        }
        Some(PullPolicy::Always) => ImageStep::Pull {
            build_fallback: false,
        },
        Some(PullPolicy::Never) => {
            if present {
                ImageStep::UseLocal
            } else {
                ImageStep::Fail(
                    "it is not present locally and `pull_policy: never` forbids pulling it".into(),
                )
            }
        }
        Some(PullPolicy::Build) => {
            if can_build {
                ImageStep::Build {
                    only_if_changed: false,
                }
            } else if !facts.has_build {
                ImageStep::Fail("`pull_policy: build` needs a `build:` section".into())
            } else if present {
                ImageStep::UseLocal
            } else {
                ImageStep::Fail(
                    "it is not present locally and `--no-build` forbids building it".into(),
                )
            }
        }
        Some(PullPolicy::Refresh(every)) => {
            let fresh = facts
                .local
                .and_then(|l| l.refreshed_at_ms)
                .is_some_and(|at| {
                    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
                    facts.now_ms.saturating_sub(at) < every_ms
                });
            if fresh {
                ImageStep::UseLocal
            } else {
                ImageStep::Pull {
                    build_fallback: can_build && !present,
                }
            }
        }
    }
}

/// What the image phase did for a service: the exact image its replicas run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedImage {
    /// What to run: `name:tag@sha256:…` when the image came from a registry (every node
    /// gets the same bytes), else the local image id `sha256:…`.
    pub reference: String,
    /// The local image id.
    pub id: String,
    pub action: ImageAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageAction {
    /// Already there; nothing was done.
    Present,
    Pulled,
    Built,
}

/// Registry credentials for one image phase, by registry host (`docker.io`,
/// `127.0.0.1:5000`). Held for the call only: never stored, never printed (`Debug` shows
/// the hosts alone).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegistryAuth(pub std::collections::BTreeMap<String, Credential>);

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

/// One registry's credentials, as the Docker client configuration gives them.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// An OAuth identity token (`docker login` with some registries) in place of a password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_token: Option<String>,
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The registry host an image reference names, as Docker reads it: the first path part
/// when it has a `.` or a `:` or is `localhost`, else Docker Hub (`docker.io`).
pub fn registry_of(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => "docker.io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(hash: Option<&str>, at: Option<u64>) -> LocalImage {
        LocalImage {
            build_hash: hash.map(str::to_string),
            refreshed_at_ms: at,
        }
    }

    fn step(
        policy: Option<&str>,
        has_build: bool,
        local: Option<&LocalImage>,
        mode: BuildMode,
    ) -> ImageStep {
        image_step(&ImageFacts {
            policy: PullPolicy::parse(policy, None).unwrap(),
            pull_override: None,
            build_mode: mode,
            has_build,
            local,
            now_ms: 100 * 3_600_000,
        })
    }

    #[test]
    fn policies_read_as_compose_writes_them() {
        let p = |t| PullPolicy::parse(Some(t), None).unwrap().unwrap();
        assert_eq!(p("if_not_present"), PullPolicy::Missing);
        assert_eq!(p("daily"), PullPolicy::Refresh(Duration::from_secs(86_400)));
        assert_eq!(
            p("every_12h"),
            PullPolicy::Refresh(Duration::from_secs(43_200))
        );
        assert_eq!(
            p("every_1w2d"),
            PullPolicy::Refresh(Duration::from_secs(9 * 86_400))
        );
        assert_eq!(
            PullPolicy::parse(Some("refresh"), Some("30m")).unwrap(),
            Some(PullPolicy::Refresh(Duration::from_secs(1800)))
        );
        assert_eq!(PullPolicy::parse(None, None).unwrap(), None);
        for bad in ["sometimes", "every_", "every_x", "every_0s", "refresh"] {
            let err = PullPolicy::parse(Some(bad), None).unwrap_err();
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn missing_pulls_only_what_is_not_there() {
        let here = local(None, None);
        assert_eq!(
            step(None, false, Some(&here), BuildMode::Auto),
            ImageStep::UseLocal
        );
        assert_eq!(
            step(None, false, None, BuildMode::Auto),
            ImageStep::Pull {
                build_fallback: false
            }
        );
        assert_eq!(
            step(Some("missing"), true, None, BuildMode::Auto),
            ImageStep::Pull {
                build_fallback: true
            }
        );
        assert_eq!(
            step(Some("missing"), true, None, BuildMode::Never),
            ImageStep::Pull {
                build_fallback: false
            }
        );
    }

    #[test]
    fn always_never_and_build() {
        let here = local(None, None);
        let pull = ImageStep::Pull {
            build_fallback: false,
        };
        assert_eq!(
            step(Some("always"), false, Some(&here), BuildMode::Auto),
            pull
        );
        assert_eq!(
            step(Some("never"), false, Some(&here), BuildMode::Auto),
            ImageStep::UseLocal
        );
        assert!(
            matches!(step(Some("never"), false, None, BuildMode::Auto), ImageStep::Fail(r) if r.contains("never"))
        );
        assert_eq!(
            step(Some("build"), true, Some(&here), BuildMode::Auto),
            ImageStep::Build {
                only_if_changed: false
            }
        );
        assert!(matches!(
            step(Some("build"), false, None, BuildMode::Auto),
            ImageStep::Fail(_)
        ));
    }

    #[test]
    fn an_unset_policy_with_build_rebuilds_a_changed_context_and_flags_win() {
        let here = local(Some("h"), None);
        assert_eq!(
            step(None, true, Some(&here), BuildMode::Auto),
            ImageStep::Build {
                only_if_changed: true
            }
        );
        assert_eq!(
            step(None, true, Some(&here), BuildMode::Never),
            ImageStep::UseLocal
        );
        assert!(
            matches!(step(None, true, None, BuildMode::Never), ImageStep::Fail(r) if r.contains("--no-build"))
        );
        assert_eq!(
            step(Some("never"), true, Some(&here), BuildMode::Always),
            ImageStep::Build {
                only_if_changed: false
            }
        );
        // `--pull always` takes the place of the file's policy.
        let facts = ImageFacts {
            policy: Some(PullPolicy::Never),
            pull_override: Some(PullPolicy::Always),
            build_mode: BuildMode::Auto,
            has_build: false,
            local: Some(&here),
            now_ms: 0,
        };
        assert_eq!(
            image_step(&facts),
            ImageStep::Pull {
                build_fallback: false
            }
        );
    }

    #[test]
    fn refresh_pulls_an_image_older_than_its_interval() {
        let hour = 3_600_000;
        let recent = local(None, Some(99 * hour));
        let old = local(None, Some(50 * hour));
        let unknown = local(None, None);
        assert_eq!(
            step(Some("daily"), false, Some(&recent), BuildMode::Auto),
            ImageStep::UseLocal
        );
        for stale in [&old, &unknown] {
            assert_eq!(
                step(Some("daily"), false, Some(stale), BuildMode::Auto),
                ImageStep::Pull {
                    build_fallback: false
                }
            );
        }
        assert_eq!(
            step(Some("every_30m"), false, Some(&recent), BuildMode::Auto),
            ImageStep::Pull {
                build_fallback: false
            }
        );
    }

    #[test]
    fn registries_are_read_as_docker_reads_them() {
        assert_eq!(registry_of("postgres:16"), "docker.io");
        assert_eq!(registry_of("library/postgres"), "docker.io");
        assert_eq!(registry_of("ghcr.io/org/app:1"), "ghcr.io");
        assert_eq!(registry_of("127.0.0.1:5000/app"), "127.0.0.1:5000");
        assert_eq!(registry_of("localhost/app"), "localhost");
    }

    #[test]
    fn credentials_never_show_in_debug() {
        let mut auth = RegistryAuth::default();
        auth.0.insert(
            "r.example".into(),
            Credential {
                username: Some("u".into()),
                password: Some("hunter2".into()),
                identity_token: None,
            },
        );
        let shown = format!("{auth:?}");
        assert!(
            shown.contains("r.example") && !shown.contains("hunter2"),
            "{shown}"
        );
    }
}
