//! The Functions host's custom-handler protocol, shared by every function: the invocation
//! extractor (bindings by name, trigger metadata decoded from the host's double encoding) and
//! the one mapping from a result to the reply the host expects.
//!
//! What the host sends (functions-host notes §1.3): `{"Data": {<binding>: …}, "Metadata": {…}}`.
//! Scalars are JSON text inside a JSON string (`"\"abc\""`, `"4"`); a Service Bus body arrives
//! as a JSON string holding JSON, sometimes holding it twice. Metadata is parsed only for the
//! triggers that need it: Event Grid's holds a second copy of the event, so
//! [`InvokeRequest`]'s default metadata type skips it without building it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::decode::JsonTree;
use crate::error::{Error, ErrorKind};

/// Largest invocation payload read (Service Bus Premium allows 100 MB messages; Event Grid
/// 1 MiB events arrive with the host's envelope around them).
pub const MAX_INVOCATION_BYTES: usize = crate::decode::MAX_INVOCATION_BYTES;
/// Header the host sets to the invocation's id.
pub const INVOCATION_ID_HEADER: &str = "x-azure-functions-invocationid";
/// Name of the `http` output binding of HTTP-triggered functions.
pub const HTTP_OUTPUT: &str = "res";

/// `{"Data": {<binding>: …}, "Metadata": {…}}` as the host posts it to `/<FunctionName>`.
///
/// `M` is the trigger's metadata: [`IgnoredAny`] (skipped unparsed) by default,
/// [`ServiceBusMetadata`] or [`HttpMetadata`] for the triggers that need theirs.
#[derive(Clone, Debug, Deserialize)]
#[serde(bound(deserialize = "M: Deserialize<'de> + Default"))]
pub struct InvokeRequest<M = IgnoredAny> {
    /// One entry per input binding, keyed by binding name.
    #[serde(rename = "Data", alias = "data", default)]
    pub data: Map<String, Value>,
    /// Trigger metadata.
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: M,
}

impl<M> InvokeRequest<M> {
    /// The value of an input binding, case-insensitively. When the payload holds exactly one
    /// binding under another name, that one (function.json may name it differently).
    pub fn binding(&self, name: &str) -> Option<&Value> {
        find_binding(&self.data, name)
    }

    /// The JSON value of an input binding: an object or array as it is, a JSON string holding
    /// JSON decoded (once or twice, as the host double-encodes string triggers). A string that
    /// holds no JSON is a bad-input error naming the binding.
    pub fn binding_json(&self, name: &str) -> Result<Value, Error> {
        let value = self.binding(name).ok_or_else(|| {
            Error::bad_input(format!("invocation payload has no Data.{name} binding"))
        })?;
        decode_body(value)
            .ok_or_else(|| Error::bad_input(format!("Data.{name} is a string that holds no JSON")))
    }

    /// An input binding decoded (see [`InvokeRequest::binding_json`]) into `T`.
    pub fn binding_as<T: DeserializeOwned>(&self, name: &str) -> Result<T, Error> {
        serde_json::from_value(self.binding_json(name)?)
            .map_err(|err| Error::bad_input(format!("Data.{name}: {err}")))
    }
}

/// An [`InvokeRequest`] read in place: the bindings' strings borrow from the payload and the
/// metadata is skipped unparsed. `DefenderAlert` reads its event this way: building the
/// payload as `Value`s (and dropping them) cost more than decoding the event itself.
#[derive(Clone, Debug, Deserialize)]
pub struct BorrowedInvokeRequest<'a> {
    /// One entry per input binding, keyed by binding name.
    #[serde(rename = "Data", alias = "data", default, borrow)]
    pub data: BTreeMap<String, JsonTree<'a>>,
    /// Trigger metadata, skipped.
    #[serde(rename = "Metadata", alias = "metadata", default)]
    pub metadata: IgnoredAny,
}

impl<'a> BorrowedInvokeRequest<'a> {
    /// Parses a payload; the error is the reason [`Invocation`]'s extractor gives for one
    /// that is not the host's shape.
    pub fn parse(payload: &'a [u8]) -> Result<Self, String> {
        serde_json::from_slice(payload)
            .map_err(|err| format!("invocation payload is not the host's JSON shape: {err}"))
    }

    /// The value of an input binding, found as [`InvokeRequest::binding`] finds it.
    pub fn binding(&self, name: &str) -> Option<&JsonTree<'a>> {
        find_binding(&self.data, name)
    }
}

/// The binding named `name`, case-insensitively; when the payload holds exactly one binding
/// under another name, that one (function.json may name it differently).
fn find_binding<'m, V: 'm>(
    bindings: impl IntoIterator<Item = (&'m String, &'m V)>,
    name: &str,
) -> Option<&'m V> {
    let mut seen = 0;
    let mut only = None;
    for (key, value) in bindings {
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        seen += 1;
        only = Some(value);
    }
    only.filter(|_| seen == 1)
}

/// A body as the host delivers it: JSON as is, or JSON text inside one or two JSON strings.
/// `None` when a string holds no JSON.
pub fn decode_body(value: &Value) -> Option<Value> {
    let mut current = value.clone();
    // The host encodes a string trigger once; some hosts (and hand-written tests) send the
    // JSON itself, others JSON text of a JSON string: unwrap at most three layers.
    for _ in 0..3 {
        match current {
            Value::String(text) => match serde_json::from_str::<Value>(&text) {
                Ok(inner) => current = inner,
                Err(_) => return None,
            },
            other => return Some(other),
        }
    }
    match current {
        Value::String(_) => None,
        other => Some(other),
    }
}

/// A metadata scalar as the host writes it: a JSON string holding JSON text (`"\"abc\""` for
/// a string, `"4"` for a number), or, from other senders, the plain value.
pub fn host_scalar(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(text) => match serde_json::from_str::<Value>(text) {
            Ok(Value::String(inner)) => Some(inner),
            Ok(Value::Number(n)) => Some(n.to_string()),
            Ok(Value::Bool(b)) => Some(b.to_string()),
            _ => Some(text.clone()),
        },
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn de_host_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(host_scalar(&Value::deserialize(d)?))
}

fn de_host_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    let value = Value::deserialize(d)?;
    match host_scalar(&value) {
        None => Ok(None),
        Some(text) => text
            .trim()
            .parse::<u64>()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{value} is not a count"))),
    }
}

fn de_host_time<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<azure_core::time::OffsetDateTime>, D::Error> {
    let value = Value::deserialize(d)?;
    let Some(text) = host_scalar(&value) else {
        return Ok(None);
    };
    parse_host_time(&text)
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a UTC timestamp")))
}

/// A timestamp as the host writes it: ISO 8601, `EnqueuedTimeUtc` without a zone (UTC).
pub fn parse_host_time(text: &str) -> Option<azure_core::time::OffsetDateTime> {
    let text = text.trim();
    let has_zone = text.ends_with('Z')
        || text.ends_with('z')
        || text
            .get(19..)
            .is_some_and(|rest| rest.contains('+') || rest.contains('-'));
    let with_zone = if has_zone {
        text.to_string()
    } else {
        format!("{text}Z")
    };
    azure_core::time::parse_rfc3339(&with_zone).ok()
}

fn de_object<'de, D: Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Object(map) => map,
        // Some senders encode the dictionary as JSON text.
        Value::String(text) => match serde_json::from_str::<Value>(&text) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        },
        _ => Map::new(),
    })
}

/// The metadata of a `serviceBusTrigger` invocation the workers use (the rest is skipped).
///
/// The host copies the body's top-level properties into the same dictionary and lets them
/// overwrite these (functions-host notes §1.3): [`ServiceBusMetadata::shadowed_by`] says which
/// of these a body could have replaced, so a worker trusts its own body's ids instead.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ServiceBusMetadata {
    /// The message id (the task's deterministic id when the responder published it).
    #[serde(deserialize_with = "de_host_string")]
    pub message_id: Option<String>,
    /// How many times the message was delivered, this delivery included (1 the first time).
    #[serde(deserialize_with = "de_host_u64")]
    pub delivery_count: Option<u64>,
    /// When the broker enqueued the message (UTC).
    #[serde(deserialize_with = "de_host_time")]
    pub enqueued_time_utc: Option<azure_core::time::OffsetDateTime>,
    /// The correlation id (the alert's `systemAlertId` for the responder's tasks).
    #[serde(deserialize_with = "de_host_string")]
    pub correlation_id: Option<String>,
    /// The application properties, as sent.
    #[serde(deserialize_with = "de_object")]
    pub application_properties: Map<String, Value>,
    /// The content type.
    #[serde(deserialize_with = "de_host_string")]
    pub content_type: Option<String>,
    /// The broker's sequence number.
    #[serde(deserialize_with = "de_host_u64")]
    pub sequence_number: Option<u64>,
    /// The session id, on session-enabled queues.
    #[serde(deserialize_with = "de_host_string")]
    pub session_id: Option<String>,
    /// The subject (label).
    #[serde(deserialize_with = "de_host_string")]
    pub subject: Option<String>,
}

impl ServiceBusMetadata {
    /// The system properties read here that a body with same-named top-level properties
    /// (compared case-insensitively, as the host does) may have overwritten.
    pub fn shadowed_by(body: &Value) -> Vec<&'static str> {
        const READ: &[&str] = &[
            "MessageId",
            "DeliveryCount",
            "EnqueuedTimeUtc",
            "CorrelationId",
            "ApplicationProperties",
            "ContentType",
            "SequenceNumber",
            "SessionId",
            "Subject",
        ];
        let Value::Object(map) = body else {
            return Vec::new();
        };
        READ.iter()
            .copied()
            .filter(|name| map.keys().any(|key| key.eq_ignore_ascii_case(name)))
            .collect()
    }
}

/// The metadata of an `httpTrigger` invocation (query and headers as single strings).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpMetadata {
    /// Query parameters.
    pub query: BTreeMap<String, Value>,
    /// Request headers.
    pub headers: BTreeMap<String, Value>,
}

/// `Data.<req>` of an `httpTrigger` invocation without forwarding (functions-host notes §2.5).
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HttpRequestData {
    /// The original URL, query included.
    pub url: String,
    /// The method (`GET`, `POST`, …).
    pub method: String,
    /// Query parameters.
    pub query: BTreeMap<String, String>,
    /// Headers, each with its values.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Route parameters (present only when the route has some).
    pub params: BTreeMap<String, String>,
    /// The identities App Service Authentication resolved, as the host describes them.
    pub identities: Vec<Value>,
    /// The body as a string (base64 for binary content); absent when empty.
    pub body: Option<String>,
}

impl HttpRequestData {
    /// The first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }
}

/// One invocation: its id (from `X-Azure-Functions-InvocationId`) and its payload. The
/// extractor reads the body up to [`MAX_INVOCATION_BYTES`]; a payload that is not the host's
/// shape is acknowledged (a redelivery would be the same) through [`reply`].
#[derive(Clone, Debug)]
pub struct Invocation<M = IgnoredAny> {
    /// The host's invocation id, `-` when absent (a hand-made request).
    pub id: String,
    /// The payload.
    pub request: InvokeRequest<M>,
    /// The payload's size in bytes (small ones are decoded on the async worker).
    pub bytes: usize,
}

impl<M> Invocation<M> {
    /// The tracing span of this invocation of `function`.
    pub fn span(&self, function: &'static str) -> tracing::Span {
        tracing::info_span!("invocation", function, invocation_id = %self.id)
    }
}

/// One invocation with its payload unparsed, for a function that reads the payload in place
/// ([`BorrowedInvokeRequest`]). Read (and refused) as [`Invocation`] reads it.
#[derive(Clone, Debug)]
pub struct RawInvocation {
    /// The host's invocation id, `-` when absent (a hand-made request).
    pub id: String,
    /// The payload, at most [`MAX_INVOCATION_BYTES`].
    pub payload: Bytes,
}

impl RawInvocation {
    /// The tracing span of this invocation of `function`.
    pub fn span(&self, function: &'static str) -> tracing::Span {
        tracing::info_span!("invocation", function, invocation_id = %self.id)
    }
}

impl<S> FromRequest<S> for RawInvocation
where
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let id = request
            .headers()
            .get(INVOCATION_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let body: Body = request.into_body();
        let bytes = match crate::functions::read_body(body, MAX_INVOCATION_BYTES).await {
            Ok(bytes) => bytes,
            // The host would redeliver the same oversize payload: acknowledge, never loop.
            Err(crate::functions::BodyReadError::TooLarge(reason)) => {
                return Err(reply("invocation", Err(Error::bad_input(reason))))
            }
            // A body that did not arrive is not the message's fault: non-2xx, the host retries.
            Err(crate::functions::BodyReadError::Incomplete(reason)) => {
                return Err(crate::functions::incomplete(reason))
            }
        };
        Ok(RawInvocation { id, payload: bytes })
    }
}

impl<S, M> FromRequest<S> for Invocation<M>
where
    S: Send + Sync,
    M: DeserializeOwned + Default + Send,
{
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawInvocation { id, payload: bytes } =
            RawInvocation::from_request(request, state).await?;
        let request = serde_json::from_slice(&bytes).map_err(|err| {
            reply(
                "invocation",
                Err(Error::bad_input(format!(
                    "invocation payload is not the host's JSON shape: {err}"
                ))),
            )
        })?;
        Ok(Invocation {
            id,
            request,
            bytes: bytes.len(),
        })
    }
}

/// `{"Outputs": …, "Logs": […], "ReturnValue": …}`: always a JSON object, even on failure,
/// because the host waits forever on an empty 2xx body. `R` is the type of `ReturnValue`: a
/// `Value`, or a type serialised straight into the reply ([`reply_with`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct InvokeResponse<R = Value> {
    /// Output bindings (none for the queues: tasks are published by the adapters).
    #[serde(rename = "Outputs")]
    pub outputs: Map<String, Value>,
    /// Lines the host writes to the invocation's log.
    #[serde(rename = "Logs")]
    pub logs: Vec<String>,
    /// The invocation's result.
    #[serde(rename = "ReturnValue")]
    pub return_value: R,
}

impl<R> InvokeResponse<R> {
    /// A success carrying `return_value`, of any serialisable type, and one log line.
    pub fn with_return(log: impl Into<String>, return_value: R) -> Self {
        InvokeResponse {
            outputs: Map::new(),
            logs: vec![log.into()],
            return_value,
        }
    }
}

impl InvokeResponse {
    /// A success carrying `return_value` and one log line.
    pub fn new(log: impl Into<String>, return_value: Value) -> Self {
        InvokeResponse {
            outputs: Map::new(),
            logs: vec![log.into()],
            return_value,
        }
    }

    /// The reply of an HTTP-triggered function: `Outputs.res = {statusCode, body, headers}`.
    pub fn http(status: StatusCode, body: String, content_type: &str) -> Self {
        let mut outputs = Map::new();
        outputs.insert(
            HTTP_OUTPUT.to_string(),
            serde_json::json!({
                "statusCode": status.as_u16(),
                "body": body,
                "headers": {"Content-Type": content_type},
            }),
        );
        InvokeResponse {
            outputs,
            ..Default::default()
        }
    }
}

/// The one mapping from an invocation's result to the reply: 200 with the response; for an
/// error, the status its kind decides (503 retryable, 200 acknowledged), the reason in `Logs`
/// and on stderr (the host drops the body of a non-2xx reply), and `Retry-After` when the
/// error carries one. `subject` names what failed (e.g. `event <id>`).
pub fn reply(subject: &str, result: Result<InvokeResponse, Error>) -> Response {
    reply_with(subject, result)
}

/// [`reply`] of a response whose `ReturnValue` is any serialisable type: it is written into
/// the reply in one pass, never built as a `Value` first.
pub fn reply_with<R: Serialize>(
    subject: &str,
    result: Result<InvokeResponse<R>, Error>,
) -> Response {
    match result {
        Ok(response) => (StatusCode::OK, Json(response)).into_response(),
        Err(err) => {
            log_failure(subject, &err);
            let body = InvokeResponse {
                logs: vec![format!("{subject}: {err}")],
                return_value: serde_json::json!({"error": err.message(), "kind": err.kind().as_str()}),
                ..Default::default()
            };
            let mut response = (err.status_code(), Json(body)).into_response();
            if let Some(delay) = err.retry_after() {
                if let Ok(value) = HeaderValue::from_str(&delay.as_secs().max(1).to_string()) {
                    response.headers_mut().insert("retry-after", value);
                }
            }
            response
        }
    }
}

/// How often the same configuration fault is logged at most.
pub const CONFIGURATION_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// When each configuration fault was last logged, and how often it recurred since.
static CONFIGURATION_FAULTS: Mutex<Option<HashMap<String, (Instant, u64)>>> = Mutex::new(None);

/// Logs a failed invocation or event: retryable failures as errors, acknowledged ones as
/// warnings. A configuration fault (the same one recurs on every delivery until an operator
/// fixes it) is logged at most once per [`CONFIGURATION_LOG_INTERVAL`], with the number of
/// repeats in between.
pub fn log_failure(subject: &str, err: &Error) {
    match err.kind() {
        ErrorKind::Configuration => {
            let Some(repeats) = configuration_fault_due(err.message(), Instant::now()) else {
                tracing::debug!(subject, error = %err, "Configuration fault (already logged).");
                return;
            };
            tracing::error!(subject, error = %err, repeats_since_last_log = repeats, "Configuration fault; the platform will redeliver until it is fixed.");
        }
        ErrorKind::Transient => {
            tracing::error!(subject, error = %format!("{err:#}"), "Failed; the platform will redeliver.")
        }
        ErrorKind::Permanent | ErrorKind::BadInput => {
            tracing::warn!(subject, error = %err, "Failed permanently; acknowledged so it is not redelivered.")
        }
    }
}

/// `Some(repeats since the last log)` when the fault `key` should be logged at `now`.
fn configuration_fault_due(key: &str, now: Instant) -> Option<u64> {
    let mut guard = CONFIGURATION_FAULTS.lock().ok()?;
    let faults = guard.get_or_insert_with(HashMap::new);
    // Bounded: distinct faults are few; forget them all rather than grow without end.
    if faults.len() > 1024 {
        faults.clear();
    }
    match faults.get_mut(key) {
        Some((last, repeats)) if now.duration_since(*last) < CONFIGURATION_LOG_INTERVAL => {
            *repeats += 1;
            None
        }
        Some((last, repeats)) => {
            let seen = *repeats;
            *last = now;
            *repeats = 0;
            Some(seen)
        }
        None => {
            faults.insert(key.to_string(), (now, 0));
            Some(0)
        }
    }
}

#[cfg(test)]
mod tests;
