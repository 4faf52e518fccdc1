//! The one error type of the handler: a kind, a message, its source and an optional retry-after;
//! the kind alone decides the reply (retryable or acknowledged).

use std::fmt;
use std::time::Duration;

use axum::http::StatusCode;

/// What kind of failure an [`Error`] is; the only input to the reply's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A dependency failed in a way a retry can fix by itself (broker down, timeout,
    /// throttling, a store that is busy).
    Transient,
    /// The deployment is wrong in a way an operator fixes without redeploying the code (a role
    /// assignment still propagating, a queue not created yet, a wrong password, a bad setting).
    /// Retried: once the fault is fixed, the redelivery succeeds.
    Configuration,
    /// A dependency refused this work for good (message too large for the queue, a task that
    /// cannot be serialised); retrying cannot succeed.
    Permanent,
    /// The input cannot be understood; retrying it would fail the same way.
    BadInput,
}

impl ErrorKind {
    /// Whether the platform should redeliver the message that caused an error of this kind.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorKind::Transient | ErrorKind::Configuration)
    }

    /// The HTTP status an invocation that failed with this kind answers with: 503 for the
    /// retryable kinds (the Functions host fails the invocation, Event Grid and Service Bus
    /// redeliver), 200 for the others (acknowledged with a logged reason: no poison loop).
    pub fn status_code(self) -> StatusCode {
        if self.is_retryable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        }
    }

    /// The kind's name in logs and replies.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Transient => "transient",
            ErrorKind::Configuration => "configuration",
            ErrorKind::Permanent => "permanent",
            ErrorKind::BadInput => "bad_input",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The source of an [`Error`]: any error that can cross threads.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while handling a delivery or reading the configuration.
///
/// The message says what failed in words a reader can act on (it never holds a secret); the
/// source keeps the underlying error for `{:#}`-style chains and typed inspection.
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Source>,
    retry_after: Option<Duration>,
}

impl Error {
    /// An error of `kind` saying `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            retry_after: None,
        }
    }

    /// A failure a retry can fix by itself.
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }

    /// A deployment fault an operator fixes (retried meanwhile).
    pub fn configuration(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Configuration, message)
    }

    /// A refusal no retry can change.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Permanent, message)
    }

    /// Input that cannot be understood.
    pub fn bad_input(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput, message)
    }

    /// The same error with `source` as its cause.
    pub fn with_source(mut self, source: impl Into<Source>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// The same error suggesting the caller retries after `delay`.
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The kind, which decides the reply.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// What failed, without the source.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// When a retry makes sense, if the failing side said so.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Whether the platform should redeliver the message that caused this error.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The HTTP status an invocation that failed with this error answers with.
    pub fn status_code(&self) -> StatusCode {
        self.kind.status_code()
    }

    /// Compatibility constructor for `Error::Transient(String)` call sites; same as
    /// [`Error::transient`].
    #[allow(non_snake_case)]
    pub fn Transient(message: String) -> Self {
        Self::transient(message)
    }

    /// Compatibility constructor for `Error::Permanent(String)` call sites; same as
    /// [`Error::permanent`].
    #[allow(non_snake_case)]
    pub fn Permanent(message: String) -> Self {
        Self::permanent(message)
    }

    /// Compatibility constructor for `Error::BadRequest(String)` call sites; same as
    /// [`Error::bad_input`].
    #[allow(non_snake_case)]
    pub fn BadRequest(message: String) -> Self {
        Self::bad_input(message)
    }

    /// Compatibility constructor for `Error::Config(String)` call sites; same as
    /// [`Error::configuration`].
    #[allow(non_snake_case)]
    pub fn Config(message: String) -> Self {
        Self::configuration(message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = match self.kind {
            ErrorKind::Transient => "transient failure (will be retried)",
            ErrorKind::Configuration => "configuration error",
            ErrorKind::Permanent => "permanent failure",
            ErrorKind::BadInput => "bad input",
        };
        write!(f, "{prefix}: {}", self.message)?;
        if f.alternate() {
            let mut source = self.source.as_deref().map(|s| s as &dyn std::error::Error);
            while let Some(cause) = source {
                write!(f, ": {cause}")?;
                source = cause.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source.as_ref().map(|s| s.to_string()))
            .field("retry_after", &self.retry_after)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        // SQLite errors here are busy/locked/IO: a retry is the right answer.
        Error::transient(format!("embedded store: {err}")).with_source(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kind_alone_decides_the_reply() {
        for (kind, retryable, status) in [
            (ErrorKind::Transient, true, StatusCode::SERVICE_UNAVAILABLE),
            (
                ErrorKind::Configuration,
                true,
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (ErrorKind::Permanent, false, StatusCode::OK),
            (ErrorKind::BadInput, false, StatusCode::OK),
        ] {
            let err = Error::new(kind, "x");
            assert_eq!(err.is_retryable(), retryable, "{kind}");
            assert_eq!(err.status_code(), status, "{kind}");
        }
    }

    #[test]
    fn compatibility_constructors_keep_their_meaning() {
        assert_eq!(Error::Transient("x".into()).kind(), ErrorKind::Transient);
        assert_eq!(Error::Permanent("x".into()).kind(), ErrorKind::Permanent);
        assert_eq!(Error::BadRequest("x".into()).kind(), ErrorKind::BadInput);
        assert_eq!(Error::Config("x".into()).kind(), ErrorKind::Configuration);
    }

    #[test]
    fn the_alternate_form_shows_the_source_chain_and_retry_after_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::transient("connecting to broker")
            .with_source(io)
            .with_retry_after(Duration::from_secs(5));
        assert_eq!(
            err.to_string(),
            "transient failure (will be retried): connecting to broker"
        );
        assert_eq!(
            format!("{err:#}"),
            "transient failure (will be retried): connecting to broker: refused"
        );
        assert_eq!(err.retry_after(), Some(Duration::from_secs(5)));
        assert!(std::error::Error::source(&err).is_some());
    }
}
