//! The request every surface handler sees, the reply it returns, and the error bodies of each API family.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use serde_json::{json, Value};

/// Which API family a request belongs to (decides auth, error shapes and throttling).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Surface {
    /// Azure Resource Manager.
    Arm,
    /// The Key Vault data plane of one vault (lower-case name).
    Vault(String),
    /// Microsoft Graph v1.0.
    Graph,
    /// Defender for Endpoint.
    Mde,
    /// Managed-identity / Entra token endpoints.
    Token,
    /// The simulator's own `/_sim` control API.
    Control,
}

impl Surface {
    /// Short name used in the request log.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Surface::Arm => "arm",
            Surface::Vault(_) => "vault",
            Surface::Graph => "graph",
            Surface::Mde => "mde",
            Surface::Token => "token",
            Surface::Control => "control",
        }
    }
}

/// One decoded HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub(crate) method: Method,
    /// The path as sent (percent-decoded), without the query.
    pub(crate) path: String,
    /// Query pairs, percent-decoded, in order.
    pub(crate) query: Vec<(String, String)>,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Vec<u8>,
    /// `https://127.0.0.1:port` (or `http://…`) as the client reached us: LRO URLs point here.
    pub(crate) origin: String,
    /// Object id of the caller, once the token was checked.
    pub(crate) caller: Option<String>,
    /// A slow / failing LRO fault that hit this request.
    pub(crate) lro_fault: Option<crate::faults::Fault>,
    /// The client's address.
    pub(crate) peer: std::net::IpAddr,
}

impl Req {
    /// The first query value named `name` (case-insensitive name).
    pub(crate) fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON; an empty body is `null`.
    pub(crate) fn json(&self) -> Result<Value, Reply> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|error| {
            Reply::error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                &format!(
                    "The request content was invalid and could not be deserialized: '{error}'."
                ),
            )
        })
    }

    /// The body as a JSON object (an error reply otherwise).
    pub(crate) fn json_object(&self) -> Result<serde_json::Map<String, Value>, Reply> {
        match self.json()? {
            Value::Object(map) => Ok(map),
            _ => Err(Reply::error(
                StatusCode::BAD_REQUEST,
                "InvalidRequestContent",
                "The request content was invalid: a JSON object is required.",
            )),
        }
    }

    /// A header as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// What a handler answers.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: Vec<(HeaderName, String)>,
    pub(crate) body: ReplyBody,
}

/// A reply body.
#[derive(Debug, Clone)]
pub(crate) enum ReplyBody {
    Empty,
    Json(Value),
    Text(String, &'static str),
}

impl Reply {
    /// A JSON reply.
    pub(crate) fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Json(body),
        }
    }

    /// 200 with a JSON body.
    pub(crate) fn ok(body: Value) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    /// A reply without a body.
    pub(crate) fn empty(status: StatusCode) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Empty,
        }
    }

    /// A text reply with its content type.
    pub(crate) fn text(status: StatusCode, text: String, content_type: &'static str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: ReplyBody::Text(text, content_type),
        }
    }

    /// The ARM / Key Vault / MDE error shape `{"error":{"code","message"}}`.
    pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Reply {
        Reply::json(status, json!({"error": {"code": code, "message": message}}))
    }

    /// Graph's error shape, with its `innerError`.
    pub(crate) fn graph_error(status: StatusCode, code: &str, message: &str) -> Reply {
        let request_id = uuid::Uuid::new_v4().to_string();
        Reply::json(
            status,
            json!({"error": {"code": code, "message": message, "innerError": {
                "date": crate::time::now_rfc3339(),
                "request-id": request_id,
                "client-request-id": request_id,
            }}}),
        )
    }

    /// Adds a header.
    pub(crate) fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers
            .push((HeaderName::from_static(name), value.into()));
        self
    }

    /// Turns the reply into an axum response.
    pub(crate) fn into_response(self) -> axum::response::Response {
        let (bytes, content_type) = match self.body {
            ReplyBody::Empty => (Vec::new(), None),
            ReplyBody::Json(value) => (
                serde_json::to_vec(&value).unwrap_or_default(),
                Some("application/json; charset=utf-8"),
            ),
            ReplyBody::Text(text, content_type) => (text.into_bytes(), Some(content_type)),
        };
        let mut response = axum::response::Response::new(axum::body::Body::from(bytes));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        if let Some(content_type) = content_type {
            headers.insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append(name, value);
            }
        }
        response
    }
}

/// A handler's result: the error arm is a finished reply too.
pub(crate) type Answer = Result<Reply, Reply>;

/// Splits a path into its non-empty segments.
pub(crate) fn segments(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|segment| !segment.is_empty())
        .collect()
}

/// Case-insensitive segment equality.
pub(crate) fn is(segment: &str, expected: &str) -> bool {
    segment.eq_ignore_ascii_case(expected)
}

/// Percent-decodes one URL component (`+` stays as is).
pub(crate) fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' && index + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&text[index + 1..index + 3], 16) {
                out.push(byte);
                index += 3;
                continue;
            }
        }
        out.push(bytes[index]);
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a query string into pairs (`+` is a space).
pub(crate) fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (
                percent_decode(&key.replace('+', " ")),
                percent_decode(&value.replace('+', " ")),
            )
        })
        .collect()
}
