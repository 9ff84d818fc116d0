use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use thiserror::Error;

/// Every failure of an API call; each answers its HTTP status with
/// `{"error": "..."}`.
#[derive(Debug, Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    /// No token, or not a Bearer token: the client is told how to send one.
    #[error("{0}")]
    MissingToken(String),
    #[error("{0}")]
    WrongToken(String),
    /// Admin actions are off until an admin token is configured.
    #[error("{0}")]
    AdminDisabled(String),
    #[error("{0}")]
    NotFound(String),
    /// The run store or a table cannot be read just now.
    #[error("{0}")]
    Unavailable(String),
    /// A `Host` this server does not answer to (DNS rebinding).
    #[error("{0}")]
    MisdirectedHost(String),
    /// Every SQL slot is taken; the client may retry after a second.
    #[error("{0}")]
    Busy(String),

    /// Boxed: Delta's errors are large.
    #[error(transparent)]
    Lake(Box<strata_lake::Error>),
    /// Boxed: the batch path's errors carry DataFusion's, which are large.
    #[error(transparent)]
    Batch(Box<strata_batch::Error>),
    #[error(transparent)]
    Orchestrator(Box<strata_orchestrator::Error>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<strata_lake::Error> for Error {
    fn from(e: strata_lake::Error) -> Self {
        Error::Lake(Box::new(e))
    }
}

impl From<strata_batch::Error> for Error {
    fn from(e: strata_batch::Error) -> Self {
        Error::Batch(Box::new(e))
    }
}

impl From<strata_orchestrator::Error> for Error {
    fn from(e: strata_orchestrator::Error) -> Self {
        match e {
            strata_orchestrator::Error::Invalid(message) => Error::BadRequest(message),
            strata_orchestrator::Error::Batch(batch) => Error::from(*batch),
            other => Error::Orchestrator(Box::new(other)),
        }
    }
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::MissingToken(_) | Error::WrongToken(_) => StatusCode::UNAUTHORIZED,
            Error::AdminDisabled(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::MisdirectedHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Error::Busy(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Batch(e) if matches!(**e, strata_batch::Error::UnknownModel(..)) => {
                StatusCode::BAD_REQUEST
            }
            Error::Unavailable(_) | Error::Orchestrator(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Lake(e)
                if matches!(
                    **e,
                    strata_lake::Error::NotReadOnly(_)
                        | strata_lake::Error::Query(_)
                        | strata_lake::Error::QueryTooLarge(_)
                        | strata_lake::Error::QueryTimeout(_)
                ) =>
            {
                StatusCode::BAD_REQUEST
            }
            Error::Lake(_) | Error::Batch(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self, "api call failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if matches!(self, Error::Busy(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Error::MissingToken(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"strata admin\""),
            );
        }
        response
    }
}
