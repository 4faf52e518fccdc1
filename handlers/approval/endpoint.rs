//! The decision endpoint (`/api/decide`): GET shows the task and its change with Approve /
//! Reject buttons and decides nothing (mail and chat link scanners fetch GET links); only the
//! form POST decides. Every answer is an HTML page that is never cached or framed, and never
//! leaks the link through a `Referer`.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use time::OffsetDateTime;

use super::{page, Approver, ApproverIdentity, LinkParams};
use crate::state::AppState;

/// The route of the decision endpoint (the `Decision` function's route).
pub const ROUTE: &str = "/api/decide";

/// The largest decision form accepted (a real one is a few hundred bytes).
pub const MAX_FORM_BYTES: usize = 16 * 1024;

fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: header::HeaderName, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(headers, header::CONTENT_TYPE, "text/html; charset=utf-8");
    set(headers, header::CACHE_CONTROL, "no-store");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    );
    response
}

fn not_configured() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "<!doctype html><title>Not configured</title><p>Decision links are not configured on this responder (RESPONDER_APPROVAL_KEY is unset).</p>".into(),
    )
}

fn approver(identity: ApproverIdentity, headers: &HeaderMap) -> Option<Approver> {
    match identity {
        ApproverIdentity::AppServiceAuth => Approver::from_headers(headers),
        ApproverIdentity::Link => None,
    }
}

/// GET: the page for a link. Decides nothing.
pub async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<LinkParams>,
) -> Response {
    let Some(desk) = state.decisions.as_ref() else {
        return not_configured();
    };
    let approver = approver(desk.settings().identity, &headers);
    match desk
        .view(&params, approver, OffsetDateTime::now_utc())
        .await
    {
        Ok(view) => html(
            StatusCode::OK,
            page::decision_page(&view, desk.settings().decision_url.path()),
        ),
        Err(refusal) => html(refusal.status(), page::refusal_page(&refusal)),
    }
}

/// POST (form): records the decision once.
pub async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(params): Form<LinkParams>,
) -> Response {
    let Some(desk) = state.decisions.as_ref() else {
        return not_configured();
    };
    let approver = approver(desk.settings().identity, &headers);
    match desk
        .decide(&params, approver, OffsetDateTime::now_utc())
        .await
    {
        Ok(entry) => html(StatusCode::OK, page::decided_page(&entry)),
        Err(refusal) => {
            tracing::warn!(reason = %refusal, "decision refused");
            html(refusal.status(), page::refusal_page(&refusal))
        }
    }
}
