//! The one error type of user-service and its one mapping to `tonic::Status`; the HTTP layer
//! maps that status onward (`grimos_proto::gateway::error`). Internal errors are logged here and leave as a
//! bare "internal error".

use grimos_common::db::{Failure, UNAVAILABLE_MESSAGE};
use tonic::{Code, Status};
use tonic_types::FieldViolation;

/// What can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more request fields break the input rules.
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    /// No valid bearer token.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// No such user.
    #[error("user not found")]
    NotFound,
    /// A user with that email exists.
    #[error("a user with this email already exists")]
    AlreadyExists,
    /// A dependency (auth-service, the database) cannot be reached or is busy, or a sign-up
    /// for the same email is in flight: the caller may retry.
    #[error("{0}")]
    Unavailable(String),
    /// An error auth-service returned, passed on as it is.
    #[error("{0}")]
    Upstream(Status),
    /// Anything the caller cannot fix.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// One violation of the input rules on `field` (its proto path).
    pub fn invalid(field: &str, description: &str) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<sqlx::Error> for Error {
    fn from(error: sqlx::Error) -> Self {
        match Failure::from(error) {
            Failure::Unavailable => Self::Unavailable(UNAVAILABLE_MESSAGE.to_owned()),
            Failure::Fault(error) => Self::Internal(error),
        }
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        // The auth client already turns auth-service's silence into UNAVAILABLE; a
        // DEADLINE_EXCEEDED from it is the caller's own deadline passing, and says so.
        match status.code() {
            Code::Unavailable => Self::Unavailable(status.message().to_owned()),
            _ => Self::Upstream(status),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                grimos_common::status::invalid_argument_status(violations)
            }
            Error::Unauthenticated(message) => Status::unauthenticated(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::NotFound => Status::not_found(error.to_string()),
            Error::AlreadyExists => Status::already_exists(error.to_string()),
            Error::Unavailable(message) => Status::unavailable(message),
            Error::Upstream(status) => {
                if status.code() == Code::Internal || status.code() == Code::Unknown {
                    tracing::error!(code = ?status.code(), message = status.message(), "auth-service failed");
                    Status::internal("internal error")
                } else {
                    status
                }
            }
            Error::Internal(source) => {
                tracing::error!(error = format!("{source:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
