//! What an Azure call can fail with, classified so callers know whether a retry can help.

use std::fmt;
use std::time::Duration;

/// Which way an Azure call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AzureErrorKind {
    /// 429: the service (or the responder's own write budget) throttled the call.
    Throttled,
    /// 500/502/503: the service is unavailable for now.
    Unavailable,
    /// The call, or a long-running operation, did not finish in time.
    Timeout,
    /// The connection failed before an answer came.
    Transport,
    /// No token could be had for the API's scope.
    Credential,
    /// 401: the token was refused (expired or revoked mid-run).
    Unauthorized,
    /// 403: the responder's identity lacks the permission.
    Forbidden,
    /// 404: the resource does not exist.
    NotFound,
    /// 409 / 412: the resource is in a state that refuses the change.
    Conflict,
    /// 409 `AnotherOperationInProgress`: the resource is busy with another change.
    Busy,
    /// 400 and other 4xx: the request is wrong for the resource.
    BadRequest,
    /// A long-running operation ended `Failed` or `Canceled`.
    OperationFailed,
    /// The answer could not be understood.
    Decode,
}

impl AzureErrorKind {
    /// Whether trying again later can succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            AzureErrorKind::Throttled
                | AzureErrorKind::Unavailable
                | AzureErrorKind::Timeout
                | AzureErrorKind::Transport
                | AzureErrorKind::Credential
                | AzureErrorKind::Unauthorized
                | AzureErrorKind::Busy
        )
    }
}

/// A failed Azure call: what was called, the answer's status and error code, and how long the
/// service asked to wait. Holds no token and no request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AzureError {
    /// The classification.
    pub kind: AzureErrorKind,
    /// `GET`, `PUT`, ….
    pub method: String,
    /// The URL called (path and query; no credentials are ever in it).
    pub url: String,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// The service's error code (`ResourceNotFound`, `TooManyRequests`, …).
    pub code: Option<String>,
    /// The service's message, or what went wrong.
    pub message: String,
    /// How long the service asked to wait (`Retry-After`, `retry-after-ms`).
    pub retry_after: Option<Duration>,
}

impl AzureError {
    /// An error that came with no HTTP answer.
    pub fn local(
        kind: AzureErrorKind,
        method: &str,
        url: &str,
        message: impl Into<String>,
    ) -> Self {
        AzureError {
            kind,
            method: method.to_string(),
            url: url.to_string(),
            status: None,
            code: None,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Whether trying again later can succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// Whether the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.kind == AzureErrorKind::NotFound
    }

    /// Classifies an HTTP answer.
    pub fn kind_for(status: u16, code: Option<&str>) -> AzureErrorKind {
        match status {
            429 => AzureErrorKind::Throttled,
            500 | 502 | 503 => AzureErrorKind::Unavailable,
            408 | 504 => AzureErrorKind::Timeout,
            401 => AzureErrorKind::Unauthorized,
            403 => AzureErrorKind::Forbidden,
            404 => AzureErrorKind::NotFound,
            409 if code.is_some_and(|c| {
                c.eq_ignore_ascii_case("AnotherOperationInProgress")
                    || c.eq_ignore_ascii_case("RetryableError")
            }) =>
            {
                AzureErrorKind::Busy
            }
            409 | 412 => AzureErrorKind::Conflict,
            _ => AzureErrorKind::BadRequest,
        }
    }
}

impl fmt::Display for AzureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.url)?;
        if let Some(status) = self.status {
            write!(f, " answered {status}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " {code}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(wait) = self.retry_after {
            write!(f, " (retry after {} ms)", wait.as_millis())?;
        }
        Ok(())
    }
}

impl std::error::Error for AzureError {}
