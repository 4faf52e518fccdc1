//! The HTTP core the ARM, Graph and Defender for Endpoint clients share: bearer tokens per
//! scope, error classification, `Retry-After`, a short bounded retry, and LRO polling.

use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

use super::error::{AzureError, AzureErrorKind};

/// How a client waits: bounded in-process retries on throttling, and LRO polling limits.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpPolicy {
    /// Bound on one request.
    pub request_timeout: Duration,
    /// A 429/503 asking to wait at most this long is retried in-process; longer waits are
    /// returned to the caller as a retryable error with the delay (the worker abandons the
    /// message rather than sleeping under a lease).
    pub max_inline_wait: Duration,
    /// How many in-process retries at most.
    pub max_inline_retries: u32,
    /// Bound on polling one long-running operation.
    pub lro_deadline: Duration,
    /// Shortest wait between two polls (`Retry-After: 0` is raised to it).
    pub lro_min_poll: Duration,
    /// Longest wait between two polls.
    pub lro_max_poll: Duration,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        HttpPolicy {
            request_timeout: Duration::from_secs(30),
            max_inline_wait: Duration::from_secs(2),
            max_inline_retries: 2,
            lro_deadline: Duration::from_secs(120),
            lro_min_poll: Duration::from_millis(50),
            lro_max_poll: Duration::from_secs(10),
        }
    }
}

/// One answer: status, JSON body (`Null` when empty) and the headers callers need.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiResponse {
    /// The HTTP status.
    pub status: u16,
    /// The body as JSON (`Value::Null` when empty, a string when it is not JSON).
    pub body: Value,
    /// `Azure-AsyncOperation`.
    pub async_operation: Option<String>,
    /// `Location`.
    pub location: Option<String>,
    /// `Retry-After` / `retry-after-ms` / `x-ms-retry-after-ms`.
    pub retry_after: Option<Duration>,
    /// `ETag`.
    pub etag: Option<String>,
}

/// Reads the wait a service asks for: `retry-after-ms`, `x-ms-retry-after-ms`, then
/// `Retry-After` in seconds.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = text(name).and_then(|t| t.parse::<u64>().ok()) {
            return Some(Duration::from_millis(ms));
        }
    }
    text("retry-after").and_then(|t| {
        t.parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    })
}

/// A request body: JSON, or text (runbook content).
#[derive(Clone, Copy, Debug)]
pub enum Body<'a> {
    /// No body.
    Empty,
    /// A JSON body.
    Json(&'a Value),
    /// A text body with its content type.
    Text(&'a str, &'a str),
}

impl<'a> From<Option<&'a Value>> for Body<'a> {
    fn from(body: Option<&'a Value>) -> Self {
        body.map_or(Body::Empty, Body::Json)
    }
}

/// The shared HTTP core of one API family: base URL, token scope, credential, policy.
#[derive(Clone)]
pub struct ApiClient {
    base_url: String,
    scope: String,
    http: reqwest::Client,
    credential: Arc<dyn TokenCredential>,
    policy: HttpPolicy,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("base_url", &self.base_url)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client of the API at `base_url` whose tokens are for `scope`.
    pub fn new(
        base_url: &str,
        scope: &str,
        http: reqwest::Client,
        credential: Arc<dyn TokenCredential>,
        policy: HttpPolicy,
    ) -> Self {
        ApiClient {
            base_url: base_url.trim_end_matches('/').to_string(),
            scope: scope.to_string(),
            http,
            credential,
            policy,
        }
    }

    /// The base URL (no trailing `/`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The policy.
    pub fn policy(&self) -> &HttpPolicy {
        &self.policy
    }

    /// The absolute URL of `path_and_query` (kept when already absolute).
    pub fn url(&self, path_and_query: &str) -> String {
        if path_and_query.starts_with("https://") || path_and_query.starts_with("http://") {
            path_and_query.to_string()
        } else if path_and_query.starts_with('/') {
            format!("{}{path_and_query}", self.base_url)
        } else {
            format!("{}/{path_and_query}", self.base_url)
        }
    }

    async fn bearer(&self, method: &Method, url: &str) -> Result<String, AzureError> {
        let token = self
            .credential
            .get_token(&[self.scope.as_str()], None)
            .await
            .map_err(|err| {
                AzureError::local(
                    AzureErrorKind::Credential,
                    method.as_str(),
                    url,
                    format!("no token for {}: {err}", self.scope),
                )
            })?;
        Ok(token.token.secret().to_string())
    }

    /// Sends one request (retrying short throttling waits in-process) and classifies the
    /// answer: `Ok` for 2xx, else an [`AzureError`].
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&Value>,
    ) -> Result<ApiResponse, AzureError> {
        self.send_body(method, url, body.into()).await
    }

    /// [`ApiClient::send`] with any body.
    pub async fn send_body(
        &self,
        method: Method,
        url: &str,
        body: Body<'_>,
    ) -> Result<ApiResponse, AzureError> {
        let mut attempt = 0;
        loop {
            match self.send_once(&method, url, body).await {
                Err(err)
                    if matches!(
                        err.kind,
                        AzureErrorKind::Throttled | AzureErrorKind::Unavailable
                    ) && attempt < self.policy.max_inline_retries
                        // A 503 on a write may have been half-done; only throttling (never
                        // processed) is retried in-process for writes.
                        && (method == Method::GET || err.kind == AzureErrorKind::Throttled) =>
                {
                    let wait = err.retry_after.unwrap_or(Duration::from_secs(1));
                    if wait > self.policy.max_inline_wait {
                        return Err(err);
                    }
                    attempt += 1;
                    tracing::debug!(method = %method, url, wait_ms = wait.as_millis() as u64, "throttled; retrying in-process");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &str,
        body: Body<'_>,
    ) -> Result<ApiResponse, AzureError> {
        let token = self.bearer(method, url).await?;
        let mut request = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token)
            .timeout(self.policy.request_timeout)
            .header("accept", "application/json");
        match body {
            Body::Empty => {}
            Body::Json(value) => request = request.json(value),
            Body::Text(text, content_type) => {
                request = request
                    .header("content-type", content_type)
                    .body(text.to_string())
            }
        }
        let response = request.send().await.map_err(|err| {
            let kind = if err.is_timeout() {
                AzureErrorKind::Timeout
            } else {
                AzureErrorKind::Transport
            };
            // reqwest's error text names the URL, never headers.
            AzureError::local(kind, method.as_str(), url, err.to_string())
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let bytes = response.bytes().await.map_err(|err| {
            AzureError::local(
                AzureErrorKind::Transport,
                method.as_str(),
                url,
                err.to_string(),
            )
        })?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        tracing::debug!(method = %method, url, status, "azure call");
        let answer = ApiResponse {
            status,
            async_operation: header("azure-asyncoperation"),
            location: header("location"),
            retry_after: retry_after(&headers),
            etag: header("etag"),
            body,
        };
        if (200..300).contains(&status) {
            return Ok(answer);
        }
        let (code, message) = error_of(&answer.body);
        let kind = AzureError::kind_for(status, code.as_deref());
        let retry_after = answer.retry_after.or(match kind {
            AzureErrorKind::Throttled | AzureErrorKind::Unavailable | AzureErrorKind::Busy => {
                Some(Duration::from_secs(1))
            }
            _ => None,
        });
        Err(AzureError {
            kind,
            method: method.to_string(),
            url: url.to_string(),
            status: Some(status),
            code,
            message,
            retry_after,
        })
    }

    /// Sends a request that may start a long-running operation and waits for it within the
    /// policy's deadline: `Azure-AsyncOperation` is polled until `Succeeded|Failed|Canceled`,
    /// `Location` until it stops answering 202. Answers the first response's body for
    /// `Azure-AsyncOperation` (the resource as written), the final one's for `Location`.
    pub async fn send_lro(
        &self,
        method: Method,
        url: &str,
        body: Body<'_>,
    ) -> Result<ApiResponse, AzureError> {
        let first = self.send_body(method.clone(), url, body).await?;
        if !(200..=202).contains(&first.status) {
            return Ok(first);
        }
        let started = Instant::now();
        let mut wait = first.retry_after;
        if let Some(operation) = first.async_operation.clone() {
            if first.status == 200 && method == Method::GET {
                return Ok(first);
            }
            loop {
                self.pause(&mut wait, started, &method, url).await?;
                let poll = self.send(Method::GET, &operation, None).await?;
                wait = poll.retry_after;
                let status = poll
                    .body
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                match status.to_ascii_lowercase().as_str() {
                    "succeeded" => return Ok(first),
                    "failed" | "canceled" | "cancelled" => {
                        let (code, message) = error_of(&poll.body);
                        return Err(AzureError {
                            kind: AzureErrorKind::OperationFailed,
                            method: method.to_string(),
                            url: url.to_string(),
                            status: Some(poll.status),
                            code,
                            message: format!("the operation ended {status}: {message}"),
                            retry_after: None,
                        });
                    }
                    _ => continue,
                }
            }
        }
        if first.status == 202 {
            if let Some(location) = first.location.clone() {
                loop {
                    self.pause(&mut wait, started, &method, url).await?;
                    let poll = self.send(Method::GET, &location, None).await?;
                    if poll.status != 202 {
                        return Ok(poll);
                    }
                    wait = poll.retry_after;
                }
            }
        }
        Ok(first)
    }

    async fn pause(
        &self,
        wait: &mut Option<Duration>,
        started: Instant,
        method: &Method,
        url: &str,
    ) -> Result<(), AzureError> {
        let delay = wait
            .take()
            .unwrap_or(self.policy.lro_min_poll)
            .clamp(self.policy.lro_min_poll, self.policy.lro_max_poll);
        if started.elapsed() + delay > self.policy.lro_deadline {
            return Err(AzureError {
                retry_after: Some(delay),
                ..AzureError::local(
                    AzureErrorKind::Timeout,
                    method.as_str(),
                    url,
                    format!(
                        "the long-running operation did not finish within {} s",
                        self.policy.lro_deadline.as_secs()
                    ),
                )
            });
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn encode_query(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The `{"error": {"code", "message"}}` of an ARM, Graph or MDE error body.
fn error_of(body: &Value) -> (Option<String>, String) {
    let error = body.get("error").unwrap_or(body);
    let code = error
        .get("code")
        .and_then(Value::as_str)
        .map(str::to_string);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| body.as_str().map(|s| s.chars().take(300).collect()))
        .unwrap_or_default();
    (code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retry_after_prefers_milliseconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn error_bodies_give_code_and_message() {
        let body =
            serde_json::json!({"error": {"code": "TooManyRequests", "message": "slow down"}});
        assert_eq!(
            error_of(&body),
            (Some("TooManyRequests".into()), "slow down".into())
        );
    }
}
