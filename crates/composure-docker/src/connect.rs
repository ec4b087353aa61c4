//! Reaching the engine: `DOCKER_HOST` or the local socket, then the API version negotiated.
//!
//! bollard speaks the newest API it knows (1.53) by default; an older engine (20.10 speaks
//! 1.41) refuses requests marked with a version above its own. `negotiate_version` asks the
//! engine for its version first and lowers the client's to match, so every later request is
//! one the engine understands.

use bollard::Docker;
use composure_runtime::{RuntimeError, RuntimeInfo};

use crate::error::from_bollard;

const ENGINE: &str = "the Docker Engine";

/// Connects to `DOCKER_HOST` (unix, tcp or http) or, when unset, the local socket
/// (`/var/run/docker.sock`), and negotiates the API version. A missing or silent engine is
/// [`RuntimeError::Unavailable`].
pub(crate) async fn connect() -> Result<Docker, RuntimeError> {
    negotiate(Docker::connect_with_defaults().map_err(|e| from_bollard(e, ENGINE))?).await
}

/// Connects to `host` (`unix:///path`, `tcp://host:port`, `http://…`) and negotiates.
pub(crate) async fn connect_to(host: &str) -> Result<Docker, RuntimeError> {
    negotiate(Docker::connect_with_host(host).map_err(|e| from_bollard(e, ENGINE))?).await
}

async fn negotiate(docker: Docker) -> Result<Docker, RuntimeError> {
    docker
        .negotiate_version()
        .await
        .map_err(|e| unavailable(from_bollard(e, ENGINE)))
}

/// Pings the engine and reads its version.
pub(crate) async fn engine_info(docker: &Docker) -> Result<RuntimeInfo, RuntimeError> {
    docker
        .ping()
        .await
        .map_err(|e| unavailable(from_bollard(e, ENGINE)))?;
    let version = docker
        .version()
        .await
        .map_err(|e| unavailable(from_bollard(e, ENGINE)))?;
    Ok(RuntimeInfo {
        name: "Docker Engine".to_string(),
        version: format!(
            "{} (API {})",
            version.version.as_deref().unwrap_or("unknown"),
            docker.client_version()
        ),
    })
}

/// An engine that cannot answer a ping is unavailable, whatever the transport said.
fn unavailable(err: RuntimeError) -> RuntimeError {
    match err {
        RuntimeError::Unavailable(_) => err,
        other => RuntimeError::Unavailable(other.to_string()),
    }
}
