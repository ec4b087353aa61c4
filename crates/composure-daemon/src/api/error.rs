//! API errors: a status and an `{error}` body with a message a person can act on.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use composure_api::ErrorBody;
use composure_runtime::RuntimeError;
use composure_store::StoreError;

use crate::error::chain;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Well formed, but it cannot be carried out (an image that cannot be pulled or built).
    #[error("{0}")]
    Unprocessable(String),
    /// The container engine cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// The request's body did not arrive in time.
    #[error("{0}")]
    TooSlow(String),
    #[error("{0}")]
    TooLarge(String),
    /// The store has no room for the write (a full disk).
    #[error("{0}")]
    NoRoom(String),
}

impl ApiError {
    pub fn no_project(name: &str) -> ApiError {
        ApiError::NotFound(format!("no project `{name}`"))
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::TooSlow(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NoRoom(_) => StatusCode::INSUFFICIENT_STORAGE,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "{self}");
        }
        let body = ErrorBody {
            error: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(_) => ApiError::Unavailable(chain(&err)),
            StoreError::Full(_) => ApiError::NoRoom(format!(
                "{}; nothing was changed, and the running containers keep running",
                chain(&err)
            )),
            StoreError::Conflict(_) => {
                ApiError::Conflict(format!("{}; send the request again", chain(&err)))
            }
            err => ApiError::Internal(format!("the store failed: {}", chain(&err))),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(err: RuntimeError) -> Self {
        match err {
            RuntimeError::Unavailable(_) => ApiError::Unavailable(err.to_string()),
            err => ApiError::Internal(err.to_string()),
        }
    }
}
