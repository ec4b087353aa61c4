//! The one error type of the core: a service the engine cannot run as written.

/// A compose service the engine cannot turn into a [`crate::ServiceSpec`]. Every variant
/// names the service and the field, so the daemon can answer `400` with it as is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error(
        "service `{service}`: `restart: {value}` is not a restart policy (expected `no`, `always`, `on-failure`, `on-failure:N` or `unless-stopped`)"
    )]
    InvalidRestart { service: String, value: String },
    #[error(
        "service `{service}`: `deploy.restart_policy.condition: {value}` is not a restart condition (expected `none`, `on-failure` or `any`)"
    )]
    InvalidCondition { service: String, value: String },
    #[error("service `{service}`: {replicas} replicas is more than this engine can run")]
    TooManyReplicas { service: String, replicas: u64 },
    #[error(
        "service `{service}`: `deploy.{key}.{field}: {value}` is invalid (expected {expected})"
    )]
    InvalidUpdateConfig {
        service: String,
        key: &'static str,
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("service `{service}`: `deploy.placement`: {reason}")]
    InvalidPlacement { service: String, reason: String },
    /// `reason` names the service.
    #[error("{path}: {reason} (hint: {hint})")]
    InvalidGpu {
        service: String,
        path: String,
        reason: String,
        hint: String,
    },
    #[error("service `{service}`: `{field}` is not supported yet")]
    Unsupported { service: String, field: String },
}
