//! Getting one rendered message to a chat webhook: a per-channel pace (Teams throttles above
//! 4 requests a second, Slack above about 1), and retries with doubling backoff or the
//! receiver's `Retry-After`, with the signed webhook channel's rules ([`super::webhook`]).

use std::time::Duration;

use reqwest::StatusCode;
use time::OffsetDateTime;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::webhook::{retry_after, SendError, MAX_RETRY_AFTER};

/// Spaces the requests of one channel at least `interval` apart, across every task that
/// sends through it.
#[derive(Debug)]
pub struct Pace {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pace {
    /// At most one request per `interval`.
    pub fn new(interval: Duration) -> Self {
        Pace {
            interval,
            next: Mutex::new(None),
        }
    }

    /// The spacing.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Waits for this request's turn. Turns are handed out in call order: the lock is held
    /// only while the next slot is booked, so waiting callers sleep concurrently.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let slot = match *next {
                Some(at) if at > now => at,
                _ => now,
            };
            *next = Some(slot + self.interval);
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

/// How one chat webhook is retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery (at least 1).
    pub attempts: u32,
    /// The first backoff; each retry doubles it (capped at [`MAX_RETRY_AFTER`]).
    pub initial_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_secs(1),
        }
    }
}

/// POSTs `body` (JSON) to `url`, paced and retried: 429, 5xx, timeouts and connection
/// failures are retried after the receiver's `Retry-After` (when it gives one, up to
/// [`MAX_RETRY_AFTER`]) or a doubling backoff; any other non-2xx is a refusal. Returns the
/// status and the attempts it took. Errors never contain the URL (it is the secret).
pub async fn post_json(
    client: &reqwest::Client,
    url: &Url,
    body: &[u8],
    pace: &Pace,
    retry: &RetryPolicy,
    label: &str,
) -> Result<(u16, u32), SendError> {
    let mut backoff = retry.initial_backoff;
    let mut attempt = 0;
    loop {
        attempt += 1;
        pace.wait().await;
        let result = client
            .post(url.clone())
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await;
        let (reason, wait) = match result {
            Ok(response) if response.status().is_success() => {
                return Ok((response.status().as_u16(), attempt));
            }
            Ok(response) => {
                let status = response.status();
                if status != StatusCode::TOO_MANY_REQUESTS && !status.is_server_error() {
                    return Err(SendError::Refused {
                        status: status.as_u16(),
                    });
                }
                let wait = retry_after(response.headers(), OffsetDateTime::now_utc());
                (format!("HTTP {}", status.as_u16()), wait)
            }
            Err(err) if err.is_timeout() => ("timed out".to_string(), None),
            Err(err) => (format!("request failed: {}", err.without_url()), None),
        };
        if attempt >= retry.attempts {
            return Err(SendError::Retryable {
                attempts: attempt,
                reason,
            });
        }
        let delay = match wait {
            Some(wait) if wait > MAX_RETRY_AFTER => {
                return Err(SendError::Retryable {
                    attempts: attempt,
                    reason: format!(
                        "{reason}; Retry-After {}s is too long to wait",
                        wait.as_secs()
                    ),
                });
            }
            Some(wait) => wait,
            None => backoff,
        };
        tracing::info!(channel = label, attempt, %reason, delay_ms = delay.as_millis() as u64, "notification: retrying");
        tokio::time::sleep(delay).await;
        backoff = (backoff * 2).min(MAX_RETRY_AFTER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pace_spaces_concurrent_callers() {
        let pace = std::sync::Arc::new(Pace::new(Duration::from_millis(40)));
        let start = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..4 {
            let pace = pace.clone();
            handles.push(tokio::spawn(async move {
                pace.wait().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for handle in handles {
            times.push(handle.await.unwrap());
        }
        times.sort();
        // The n-th turn is booked n intervals after the first, which is no earlier than
        // `start`. A busy machine only wakes a caller later than its turn, never earlier, so
        // this holds under load, where gaps between wake-ups can shrink.
        for (turn, woke) in times.iter().enumerate() {
            let earliest = Duration::from_millis(40) * turn as u32;
            assert!(*woke - start >= earliest, "turn {turn}: {times:?}");
        }
    }
}
