//! The engine's errors in the runtime's words.
//!
//! | bollard error | [`RuntimeError`] |
//! |---|---|
//! | HTTP 404 | `NotFound(what)` |
//! | HTTP 409 | `Conflict(engine message)` (transient: a name still in use, a removal in progress) |
//! | HTTP 400 | `InvalidSpec(engine message)` (the engine refused the request as written) |
//! | HTTP 503 | `Unavailable` |
//! | socket missing, connection refused or reset, timeout, broken stream | `Unavailable` |
//! | anything else (500, JSON the client cannot read, …) | `Other` |

use bollard::errors::Error;
use composure_runtime::RuntimeError;

/// Converts a bollard error; `what` names the object the call was about (`container
/// `web-1``), for messages that say what was not found.
pub(crate) fn from_bollard(err: Error, what: &str) -> RuntimeError {
    match err {
        Error::DockerResponseServerError {
            status_code,
            message,
        } => match status_code {
            404 => RuntimeError::NotFound(what.to_string()),
            409 => RuntimeError::Conflict(format!("{what}: {message}")),
            400 => RuntimeError::InvalidSpec(format!("{what}: {message}")),
            503 => RuntimeError::Unavailable(message),
            code => RuntimeError::Other(format!("{what}: the engine answered {code}: {message}")),
        },
        Error::SocketNotFoundError(path) => {
            RuntimeError::Unavailable(format!("no Docker socket at {path}"))
        }
        err @ (Error::IOError { .. }
        | Error::HyperResponseError { .. }
        | Error::HyperLegacyError { .. }
        | Error::RequestTimeoutError
        | Error::DockerStreamError { .. }) => RuntimeError::Unavailable(err.to_string()),
        err => RuntimeError::Other(format!("{what}: {err}")),
    }
}

/// What the engine says when a container asks for GPUs (a device request) and no device
/// driver takes them: no NVIDIA container toolkit on the host.
const NO_DEVICE_DRIVER: &str = "could not select device driver";

/// A failed start in the runtime's words: a start that needs GPUs the engine cannot give
/// says what to install (and is permanent: retrying does not help).
pub(crate) fn start_error(err: Error, what: &str) -> RuntimeError {
    if let Error::DockerResponseServerError { message, .. } = &err
        && message.contains(NO_DEVICE_DRIVER)
    {
        return RuntimeError::InvalidSpec(format!(
            "{what}: the engine has no nvidia runtime: install nvidia-container-toolkit ({message})"
        ));
    }
    from_bollard(err, what)
}

/// Whether the engine said "no such object": for calls where a missing object is fine.
pub(crate) fn is_not_found(err: &Error) -> bool {
    matches!(
        err,
        Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(status_code: u16, message: &str) -> Error {
        Error::DockerResponseServerError {
            status_code,
            message: message.to_string(),
        }
    }

    #[test]
    fn status_codes_map_to_runtime_errors() {
        assert!(matches!(
            from_bollard(server(404, "No such container: x"), "container `x`"),
            RuntimeError::NotFound(w) if w == "container `x`"
        ));
        let conflict = from_bollard(server(409, "name in use"), "container `x`");
        assert!(matches!(&conflict, RuntimeError::Conflict(m) if m.contains("name in use")));
        assert!(conflict.is_transient());
        assert!(matches!(
            from_bollard(server(400, "invalid mount"), "container `x`"),
            RuntimeError::InvalidSpec(m) if m.contains("invalid mount")
        ));
        assert!(matches!(
            from_bollard(server(503, "shutting down"), "x"),
            RuntimeError::Unavailable(_)
        ));
        assert!(matches!(
            from_bollard(server(500, "boom"), "x"),
            RuntimeError::Other(m) if m.contains("500") && m.contains("boom")
        ));
    }

    #[test]
    fn a_missing_engine_is_unavailable() {
        let refused = Error::IOError {
            err: std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused"),
        };
        assert!(matches!(
            from_bollard(refused, "x"),
            RuntimeError::Unavailable(_)
        ));
        assert!(matches!(
            from_bollard(Error::SocketNotFoundError("/nope.sock".into()), "x"),
            RuntimeError::Unavailable(m) if m.contains("/nope.sock")
        ));
        assert!(matches!(
            from_bollard(Error::RequestTimeoutError, "x"),
            RuntimeError::Unavailable(_)
        ));
    }

    #[test]
    fn a_start_without_the_nvidia_runtime_says_what_to_install() {
        let err = start_error(
            server(
                500,
                "could not select device driver \"nvidia\" with capabilities: [[gpu]]",
            ),
            "container `x`",
        );
        assert!(matches!(&err, RuntimeError::InvalidSpec(m)
            if m.contains("the engine has no nvidia runtime: install nvidia-container-toolkit")));
        assert!(!err.is_transient());
        assert!(matches!(
            start_error(server(500, "boom"), "x"),
            RuntimeError::Other(_)
        ));
    }

    #[test]
    fn not_found_is_recognised() {
        assert!(is_not_found(&server(404, "gone")));
        assert!(!is_not_found(&server(409, "busy")));
    }
}
