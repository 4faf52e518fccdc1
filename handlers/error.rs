//! The one error type of the handler, and the only place that decides retryable versus permanent.

use axum::http::StatusCode;

/// Everything that can go wrong while handling a delivery.
///
/// The variant decides what the platform does next: `Transient` answers non-2xx so the
/// Functions host (or Event Grid) redelivers; every other variant is acknowledged with 2xx
/// and a logged reason, so a bad message never turns into a poison loop.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The input cannot be understood; retrying it would fail the same way.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A dependency failed in a way a retry can fix (broker down, timeout, throttling).
    #[error("transient failure (will be retried): {0}")]
    Transient(String),
    /// A dependency refused the work for good (entity missing, message too large, forbidden).
    #[error("permanent failure: {0}")]
    Permanent(String),
    /// The app settings are wrong; reported at start-up.
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// Whether the platform should redeliver the message that caused this error.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Transient(_))
    }

    /// The HTTP status an invocation that failed with this error answers with.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Error::Transient(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Config(_) => StatusCode::INTERNAL_SERVER_ERROR,
            // Acknowledged: the reason is logged and reported in the body instead.
            Error::BadRequest(_) | Error::Permanent(_) => StatusCode::OK,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        // SQLite errors here are busy/locked/IO: a retry is the right answer.
        Error::Transient(format!("embedded store: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_errors_are_retried() {
        assert!(Error::Transient("x".into()).is_retryable());
        assert!(!Error::Permanent("x".into()).is_retryable());
        assert!(!Error::BadRequest("x".into()).is_retryable());
        assert_eq!(
            Error::Transient("x".into()).status_code(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(Error::Permanent("x".into()).status_code(), StatusCode::OK);
    }
}
