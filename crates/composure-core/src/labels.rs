//! Labels on every managed container. They are how the daemon finds its containers again
//! after a restart (the runtime is the truth), and the `com.docker.compose.*` ones keep
//! `docker compose ps` and `docker ps --filter` working on a Composure project.

/// Marks a container as Composure's; containers without it are never touched.
pub const MANAGED: &str = "io.composure.managed";
pub const PROJECT: &str = "io.composure.project";
pub const SERVICE: &str = "io.composure.service";
pub const SLOT: &str = "io.composure.slot";
pub const TASK: &str = "io.composure.task";
pub const SPEC_HASH: &str = "io.composure.spec-hash";
/// On a service whose name is held by a VIP (the daemon's `<service>.vip` service): the
/// VIP's service name. Its replicas get no network alias of the service's name.
pub const FRONTED_BY: &str = "io.composure.fronted-by";
/// On a service, set by the daemon's image phase: the exact image its replicas run
/// (`name:tag@sha256:…` or a local image id). Part of the spec hash: a moved tag or a
/// rebuilt context rolls the service, and a rollback runs its revision's image again.
pub const IMAGE: &str = "io.composure.image";

pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";
pub const COMPOSE_NUMBER: &str = "com.docker.compose.container-number";
pub const COMPOSE_ONEOFF: &str = "com.docker.compose.oneoff";
pub const COMPOSE_CONFIG_HASH: &str = "com.docker.compose.config-hash";
pub const COMPOSE_WORKING_DIR: &str = "com.docker.compose.project.working_dir";
pub const COMPOSE_VERSION: &str = "com.docker.compose.version";
