//! The generic webhook channel: a task as a JSON event, signed per Standard Webhooks, POSTed
//! with retries (backoff, `Retry-After`), and delivered once per message id (the journal
//! records the delivery; a redelivered message is not sent again).

use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use url::Url;

use super::signature::WebhookSecret;
use crate::domain::Task;
use crate::error::Error;
use crate::journal::{Journal, JournalError, RunOutcome, TaskState, Verdict};

/// App setting: the receiver's URL (https; http only for loopback).
pub const URL: &str = "RESPONDER_WEBHOOK_URL";
/// App setting: the signing secret, `whsec_<base64>`.
pub const SECRET: &str = "RESPONDER_WEBHOOK_SECRET";
/// App setting: how many attempts one delivery makes before the message is redelivered.
pub const ATTEMPTS: &str = "RESPONDER_WEBHOOK_ATTEMPTS";
/// App setting: bound on one attempt, in seconds.
pub const TIMEOUT_SECONDS: &str = "RESPONDER_WEBHOOK_TIMEOUT_SECONDS";

/// The longest `Retry-After` honoured inside one delivery; a longer one ends the delivery with
/// a retryable failure, so the queue redelivers later instead of a worker sleeping.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Where and how to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The receiver.
    pub url: Url,
    /// The signing secret.
    pub secret: WebhookSecret,
    /// Attempts per delivery (at least 1).
    pub attempts: u32,
    /// Bound on one attempt.
    pub timeout: Duration,
    /// The first backoff; each retry doubles it (capped at [`MAX_RETRY_AFTER`]).
    pub initial_backoff: Duration,
}

impl WebhookSettings {
    /// Reads the settings; `None` when no URL is set (the channel is off). A URL without a
    /// secret, or a bad value, is an error naming the setting (never echoing the secret).
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<Self>, Error> {
        let Some(url_text) = get(URL) else {
            if get(SECRET).is_some() {
                return Err(Error::Config(format!("{SECRET} is set but {URL} is not")));
            }
            return Ok(None);
        };
        let url = Url::parse(&url_text)
            .map_err(|err| Error::Config(format!("{URL}={url_text:?} is not a URL: {err}")))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        if url.scheme() != "https" && !(url.scheme() == "http" && loopback) {
            return Err(Error::Config(format!(
                "{URL}={url_text:?} must be https (http is allowed for loopback only)"
            )));
        }
        let secret = get(SECRET)
            .ok_or_else(|| Error::Config(format!("{URL} is set, so {SECRET} must be too")))?;
        let secret = WebhookSecret::parse(&secret)
            .map_err(|problem| Error::Config(format!("{SECRET}: {problem}")))?;
        let number =
            |name: &str, default: u64, range: std::ops::RangeInclusive<u64>| match get(name) {
                None => Ok(default),
                Some(text) => text
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "{name}={text:?} is not a whole number from {} to {}",
                            range.start(),
                            range.end()
                        ))
                    }),
            };
        Ok(Some(WebhookSettings {
            url,
            secret,
            attempts: number(ATTEMPTS, 5, 1..=20)? as u32,
            timeout: Duration::from_secs(number(TIMEOUT_SECONDS, 10, 1..=120)?),
            initial_backoff: Duration::from_secs(1),
        }))
    }
}

/// What one delivery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Sent; the receiver answered 2xx.
    Sent {
        /// The receiver's status code.
        status: u16,
        /// Attempts it took.
        attempts: u32,
    },
    /// The journal records it as delivered already: nothing sent.
    AlreadyDelivered,
}

/// How long a delivery waits for another worker's run of the same task (a duplicate delivery,
/// or a redelivery after that worker's lock lapsed) before giving the message back to the
/// queue; below the Functions host's 5-minute invocation timeout.
pub const DEFAULT_WAIT_FOR_OTHER_RUN: Duration = Duration::from_secs(4 * 60);

/// Why sending failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// 429, 5xx, a timeout or a connection failure on the last attempt (or a `Retry-After`
    /// too long to wait for): a redelivery may succeed.
    #[error("webhook receiver unavailable after {attempts} attempt(s): {reason}")]
    Retryable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        reason: String,
    },
    /// Any other non-2xx answer: sending again would fail the same way.
    #[error("webhook receiver refused the event: HTTP {status}")]
    Refused {
        /// The receiver's status code.
        status: u16,
    },
}

/// The webhook channel.
#[derive(Clone, Debug)]
pub struct WebhookChannel {
    settings: WebhookSettings,
    client: reqwest::Client,
    wait_for_other_run: Duration,
    poll: Duration,
}

impl WebhookChannel {
    /// A channel for `settings`.
    pub fn new(settings: WebhookSettings) -> Result<Self, Error> {
        let client = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("defender-responder/", env!("CARGO_PKG_VERSION")))
            // A redirect would resend a signed event somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| Error::Config(format!("webhook HTTP client: {err}")))?;
        Ok(WebhookChannel {
            settings,
            client,
            wait_for_other_run: DEFAULT_WAIT_FOR_OTHER_RUN,
            poll: Duration::from_secs(2),
        })
    }

    /// Changes how long a delivery waits for another worker's run of the same task, and how
    /// often it looks.
    pub fn with_wait_for_other_run(mut self, wait: Duration, poll: Duration) -> Self {
        self.wait_for_other_run = wait;
        self.poll = poll;
        self
    }

    /// The settings in use.
    pub fn settings(&self) -> &WebhookSettings {
        &self.settings
    }

    /// The event for a task: `{"id","type","timestamp","data"}`; `data.task` is the task as
    /// published, `data.decisions` the decision links of pending tasks
    /// ([`crate::approval::DecisionDesk::links`]; may be empty).
    pub fn event(task: &Task, decisions: &[(Verdict, Url)], now: OffsetDateTime) -> Value {
        let links: Vec<Value> = decisions
            .iter()
            .map(|(verdict, url)| json!({"decision": verdict.as_str(), "url": url.as_str()}))
            .collect();
        json!({
            "id": task.message_id.as_str(),
            "type": format!("defender-responder.task.{}", task.action.as_str()),
            "timestamp": now.format(&Rfc3339).unwrap_or_default(),
            "data": {
                "task": task,
                "decisions": links,
            },
        })
    }

    /// Sends one event with retries: 429, 5xx, timeouts and connection failures are retried
    /// with doubling backoff, or after the receiver's `Retry-After`; each attempt is signed
    /// afresh (the timestamp is part of the signature). `id` goes in `webhook-id`.
    pub async fn send(&self, id: &str, body: &[u8]) -> Result<(u16, u32), SendError> {
        let mut backoff = self.settings.initial_backoff;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let timestamp = OffsetDateTime::now_utc().unix_timestamp();
            let signature = self.settings.secret.sign(id, timestamp, body);
            let result = self
                .client
                .post(self.settings.url.clone())
                .header("content-type", "application/json")
                .header("webhook-id", id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
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
                Err(err) => (format!("request failed: {}", without_url(&err)), None),
            };
            if attempt >= self.settings.attempts {
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
            tracing::info!(webhook_id = id, attempt, %reason, delay_ms = delay.as_millis() as u64, "webhook: retrying");
            tokio::time::sleep(delay).await;
            backoff = (backoff * 2).min(MAX_RETRY_AFTER);
        }
    }

    /// Delivers a task once: the journal says whether it was sent already (`done`); otherwise
    /// this worker claims the run, sends, and records the result. While another worker holds
    /// the run, this one waits (bounded) for it to finish or to go stale (a crashed worker),
    /// then takes it over; if the wait runs out the message goes back to the queue
    /// ([`Error::Transient`]), never completed unsent. A retryable send failure is recorded
    /// as `failed` and returned as [`Error::Transient`]; a refusal is recorded and permanent.
    pub async fn deliver(
        &self,
        task: &Task,
        decisions: &[(Verdict, Url)],
        journal: &Journal,
        actor: &str,
    ) -> Result<Delivery, Error> {
        let received = journal.receive(task, actor).await?;
        if received.entry.state == TaskState::Done {
            return Ok(Delivery::AlreadyDelivered);
        }
        let started = tokio::time::Instant::now();
        loop {
            match journal.begin_run(&task.message_id, actor).await {
                Ok(_) => break,
                Err(JournalError::IllegalTransition {
                    from: TaskState::Running,
                    ..
                }) => {
                    if started.elapsed() >= self.wait_for_other_run {
                        return Err(Error::Transient(format!(
                            "task {} is being delivered by another worker; the queue will redeliver it",
                            task.message_id
                        )));
                    }
                    tokio::time::sleep(self.poll).await;
                }
                Err(JournalError::IllegalTransition {
                    from: TaskState::Done,
                    ..
                }) => return Ok(Delivery::AlreadyDelivered),
                Err(JournalError::IllegalTransition { from, .. }) => {
                    return Err(Error::Permanent(format!(
                        "task {} is {from}; a notification is not sent for it",
                        task.message_id
                    )))
                }
                Err(err) => return Err(err.into()),
            }
        }
        let body = Self::event(task, decisions, OffsetDateTime::now_utc()).to_string();
        match self.send(task.message_id.as_str(), body.as_bytes()).await {
            Ok((status, attempts)) => {
                journal
                    .finish(
                        &task.message_id,
                        RunOutcome::Done {
                            result: json!({"channel": "webhook", "status": status, "attempts": attempts}),
                            verification: Value::Null,
                        },
                        actor,
                    )
                    .await?;
                Ok(Delivery::Sent { status, attempts })
            }
            Err(err) => {
                let retryable = matches!(err, SendError::Retryable { .. });
                journal
                    .finish(
                        &task.message_id,
                        RunOutcome::Failed {
                            error: err.to_string(),
                            retryable,
                        },
                        actor,
                    )
                    .await?;
                Err(if retryable {
                    Error::Transient(err.to_string())
                } else {
                    Error::Permanent(err.to_string())
                })
            }
        }
    }
}

/// `Retry-After` as seconds or an HTTP date, relative to `now`.
pub fn retry_after(headers: &HeaderMap, now: OffsetDateTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(text).ok()?;
    let now: std::time::SystemTime = now.into();
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A reqwest error's text without its URL (a receiver URL may carry a token in its query).
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "<webhook url>");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(pairs: &[(&str, &str)]) -> Result<Option<WebhookSettings>, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        WebhookSettings::from_lookup(&|name| map.get(name).cloned())
    }

    const SECRET_VALUE: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn settings_are_validated_and_name_the_setting() {
        assert!(settings(&[]).unwrap().is_none());
        let ok = settings(&[
            (URL, "https://soar.contoso.com/hook"),
            (SECRET, SECRET_VALUE),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(ok.attempts, 5);
        let err = settings(&[(URL, "https://soar.contoso.com/hook")]).unwrap_err();
        assert!(err.to_string().contains(SECRET), "{err}");
        let err = settings(&[
            (URL, "http://soar.contoso.com/hook"),
            (SECRET, SECRET_VALUE),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
        let err = settings(&[(URL, "https://x/"), (SECRET, "whsec_nope!")]).unwrap_err();
        assert!(
            err.to_string().contains("RESPONDER_WEBHOOK_SECRET"),
            "{err}"
        );
        let err =
            settings(&[(URL, "https://x/"), (SECRET, SECRET_VALUE), (ATTEMPTS, "0")]).unwrap_err();
        assert!(
            err.to_string().contains("RESPONDER_WEBHOOK_ATTEMPTS"),
            "{err}"
        );
        let err = settings(&[(SECRET, SECRET_VALUE)]).unwrap_err();
        assert!(!err.to_string().contains("MfKQ"), "{err}");
        assert!(settings(&[(URL, "http://127.0.0.1:9/hook"), (SECRET, SECRET_VALUE)]).is_ok());
    }

    #[test]
    fn the_event_names_the_task_its_action_and_its_decision_links() {
        let task = Task::example(
            &crate::domain::AlertRef::sample("sys-e"),
            crate::domain::Action::RequestDecision,
            &["KV-2a"],
            "secops@contoso.com",
            "approve closing the vault's firewall",
        );
        let approve = Url::parse("https://app.example/api/decide?m=x&d=approve").unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_764_579_600).unwrap();
        let event = WebhookChannel::event(&task, &[(Verdict::Approve, approve)], now);
        assert_eq!(event["id"], task.message_id.as_str());
        assert_eq!(event["type"], "defender-responder.task.request_decision");
        assert_eq!(event["timestamp"], "2025-12-01T09:00:00Z");
        assert_eq!(
            event["data"]["task"]["message_id"],
            task.message_id.as_str()
        );
        assert_eq!(
            event["data"]["task"]["reason"],
            "approve closing the vault's firewall"
        );
        assert_eq!(
            event["data"]["decisions"],
            serde_json::json!([{"decision": "approve", "url": "https://app.example/api/decide?m=x&d=approve"}])
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(7)));
        let later =
            httpdate::fmt_http_date(std::time::SystemTime::from(now) + Duration::from_secs(30));
        headers.insert(RETRY_AFTER, later.parse().unwrap());
        assert_eq!(retry_after(&headers, now), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&headers, now), None);
    }
}
