//! The one error type of auth-service and its one mapping to `tonic::Status`.
//!
//! Messages sent to callers never carry internals: database and key errors are logged here
//! and leave as a bare "internal error". Every authentication failure of one kind shares
//! one message, so callers cannot tell which check failed.

use std::time::Duration;

use grimos_common::db::Failure;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// What can go wrong while serving a request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// One or more request fields break the input rules.
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    /// The token is missing, malformed, tampered with, expired or revoked.
    #[error("invalid, expired or revoked token")]
    Unauthenticated,
    /// Login failed: no account with that email and password (the same for either wrong).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The call needs the service credential and the caller presented a user's token.
    #[error("{0}")]
    PermissionDenied(&'static str),
    /// A credential with that email or user id exists.
    #[error("a credential with this email or user id already exists")]
    AlreadyExists,
    /// Too many login attempts for one email: retry after the delay.
    #[error("too many login attempts; try again later")]
    Throttled {
        /// How long until the throttling window ends.
        retry_after: Duration,
    },
    /// Too many WatchRevocations streams open: the client retries later.
    #[error("too many revocation streams open; try again later")]
    TooManyWatchers,
    /// Too many password hashes waiting: the server sheds load instead of queueing forever.
    #[error("too many logins in progress; try again shortly")]
    Busy,
    /// The database cannot be reached or is busy: the caller may retry.
    #[error("{}", grimos_common::db::UNAVAILABLE_MESSAGE)]
    Unavailable,
    /// Anything the caller cannot fix: database, key or task failures.
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
            Failure::Unavailable => Self::Unavailable,
            Failure::Fault(error) => Self::Internal(error),
        }
    }
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        if !matches!(error, Error::Internal(_)) {
            // In the call's span, so with its path and the caller's request id.
            tracing::debug!(%error, "call refused");
        }
        match error {
            Error::InvalidArgument(violations) => {
                grimos_common::status::invalid_argument_status(violations)
            }
            Error::Unauthenticated | Error::InvalidCredentials => {
                Status::unauthenticated(error.to_string())
            }
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::AlreadyExists => Status::already_exists(error.to_string()),
            Error::Throttled { retry_after } => Status::with_error_details(
                Code::ResourceExhausted,
                error.to_string(),
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Error::Busy | Error::TooManyWatchers => Status::resource_exhausted(error.to_string()),
            Error::Unavailable => Status::unavailable(error.to_string()),
            Error::Internal(source) => {
                tracing::error!(error = format!("{source:#}"), "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
