//! The decision endpoint (`/api/decide`): GET shows the task and its change with Approve /
//! Reject buttons and decides nothing (mail and chat link scanners fetch GET links); only the
//! form POST decides. Every answer is an HTML page that is never cached or framed, and never
//! leaks the link through a `Referer`. Undo and confirm links work the same way: GET shows the
//! applied change and what undo restores, only the POST undoes (through the worker) or keeps.
//!
//! [`handle`] is the endpoint itself, independent of how the request arrives: the axum route
//! [`route`] calls it with the raw request, and a Functions `httpTrigger` (`Decision`) calls it
//! with the method, query, headers and body of the host's `Data.req`.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use time::OffsetDateTime;

use super::{
    page, Approver, ApproverIdentity, DecisionDesk, DecisionLink, LinkKind, LinkParams, Refusal,
};
use crate::state::AppState;
use crate::workers::undo::UndoError;
use crate::workers::Worker;

/// The route of the decision endpoint (the `Decision` function's route).
pub const ROUTE: &str = "/api/decide";

/// The largest decision form accepted (a real one is a few hundred bytes).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

/// One request to the endpoint.
#[derive(Clone, Copy, Debug)]
pub struct DecisionRequest<'a> {
    /// GET shows, POST decides; anything else is refused.
    pub method: &'a Method,
    /// The raw query string (without `?`): the link's parameters on GET.
    pub query: Option<&'a str>,
    /// The request headers (App Service Authentication's `X-MS-CLIENT-PRINCIPAL*` among them).
    pub headers: &'a HeaderMap,
    /// The body: the form (`application/x-www-form-urlencoded`) on POST.
    pub body: &'a [u8],
}

/// The endpoint's answer: an HTML page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers (content type and the no-cache, no-frame, no-referrer policy).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The HTML.
    pub body: String,
}

impl IntoResponse for DecisionResponse {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

fn html(status: StatusCode, body: String) -> DecisionResponse {
    let headers = [
        (header::CONTENT_TYPE, "text/html; charset=utf-8"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    ]
    .into_iter()
    .map(|(name, value)| (name, HeaderValue::from_static(value)))
    .collect();
    DecisionResponse {
        status,
        headers,
        body,
    }
}

fn message(status: StatusCode, title: &str, text: &str) -> DecisionResponse {
    html(
        status,
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{0}</title></head><body><h1>{0}</h1><p>{1}</p></body></html>\n",
            page::escape(title),
            page::escape(text)
        ),
    )
}

/// Answers one request: GET shows the page of a link, POST records its decision once (an
/// undo link's POST has `worker` carry the undo out).
pub async fn handle(
    desk: Option<&DecisionDesk>,
    worker: Option<&Worker>,
    request: DecisionRequest<'_>,
) -> DecisionResponse {
    let Some(desk) = desk else {
        return message(
            StatusCode::NOT_FOUND,
            "Not configured",
            "Decision links are not configured on this responder (RESPONDER_APPROVAL_KEY is unset).",
        );
    };
    let approver = match desk.settings().identity {
        ApproverIdentity::AppServiceAuth => Approver::from_headers(request.headers),
        ApproverIdentity::Link => None,
    };
    let now = OffsetDateTime::now_utc();
    if *request.method == Method::GET {
        let params: LinkParams = match serde_urlencoded::from_str(request.query.unwrap_or("")) {
            Ok(params) => params,
            Err(_) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Not a decision link",
                    "The link's query cannot be read.",
                )
            }
        };
        return match desk.view(&params, approver, now).await {
            Ok(view) => html(
                StatusCode::OK,
                page::decision_page(&view, desk.settings().decision_url.path()),
            ),
            Err(refusal) => html(refusal.status(), page::refusal_page(&refusal)),
        };
    }
    if *request.method == Method::POST {
        if request.body.len() > MAX_FORM_BYTES {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Not decided",
                "The form is too large.",
            );
        }
        let params: LinkParams = match serde_urlencoded::from_bytes(request.body) {
            Ok(params) => params,
            Err(_) => {
                return message(
                    StatusCode::BAD_REQUEST,
                    "Not decided",
                    "The form cannot be read.",
                )
            }
        };
        let kind = DecisionLink::parse(&params).ok().map(|link| link.kind);
        if kind == Some(LinkKind::Undo) {
            return undo(desk, worker, &params, approver, now).await;
        }
        return match desk.decide(&params, approver, now).await {
            Ok(entry) if kind == Some(LinkKind::Confirm) => {
                html(StatusCode::OK, page::confirmed_page(&entry))
            }
            Ok(entry) => html(StatusCode::OK, page::decided_page(&entry)),
            Err(refusal) => {
                tracing::warn!(reason = %refusal, "decision refused");
                html(refusal.status(), page::refusal_page(&refusal))
            }
        };
    }
    let mut response = message(
        StatusCode::METHOD_NOT_ALLOWED,
        "Not allowed",
        "Open the link (GET) to see the decision; its button (POST) decides.",
    );
    response
        .headers
        .push((header::ALLOW, HeaderValue::from_static("GET, POST")));
    response
}

/// The POST of an undo link: checked by the desk (link, change, approver), carried out once
/// by the worker.
async fn undo(
    desk: &DecisionDesk,
    worker: Option<&Worker>,
    params: &LinkParams,
    approver: Option<Approver>,
    now: OffsetDateTime,
) -> DecisionResponse {
    let refused = |refusal: Refusal| {
        tracing::warn!(reason = %refusal, "undo refused");
        html(refusal.status(), page::refusal_page(&refusal))
    };
    let (link, actor) = match desk.authorize_undo(params, approver, now).await {
        Ok(authorized) => authorized,
        Err(refusal) => return refused(refusal),
    };
    let Some(worker) = worker else {
        return refused(Refusal::Unavailable(
            "undo links are carried out by the workers, which are not configured on this instance"
                .into(),
        ));
    };
    match worker.undo(&link.message_id, &actor).await {
        Ok(report) => html(StatusCode::OK, page::undone_page(&report)),
        Err(err) => refused(match err {
            UndoError::UnknownTask(id) => Refusal::UnknownTask(id.to_string()),
            UndoError::Refused(reason) => Refusal::NotPending(reason),
            UndoError::Busy(reason) => Refusal::Unavailable(reason),
            UndoError::Failed(reason) => Refusal::NotUndone(reason),
        }),
    }
}

/// The axum route: the raw request, handed to [`handle`].
pub async fn route(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> DecisionResponse {
    let request = DecisionRequest {
        method: &method,
        query: query.as_deref(),
        headers: &headers,
        body: &body,
    };
    handle(state.decisions.as_deref(), state.worker.as_deref(), request).await
}
