//! `GET /`, the host's readiness probe: 200 when the publisher is healthy, 503 naming the fault.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use defender_responder::adapters::{MemoryLedger, Publisher};
use defender_responder::domain::Task;
use defender_responder::error::Error;
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use crate::helpers::TestApp;

/// A publisher whose last broker check found a missing queue.
struct MissingQueue;

#[async_trait::async_trait]
impl Publisher for MissingQueue {
    async fn publish(&self, _tasks: &[Task]) -> Result<(), Error> {
        Err(Error::configuration("queue rotation does not exist"))
    }

    fn name(&self) -> &'static str {
        "missing-queue"
    }

    fn readiness(&self) -> Result<(), String> {
        Err("queue rotation (from RESPONDER_QUEUE_ROTATION) does not exist".into())
    }
}

async fn probe(state: AppState) -> (StatusCode, Value) {
    let response = defender_responder::app(state)
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn readiness_is_200_with_a_healthy_publisher() {
    let app = TestApp::new();
    let (status, body) = probe(app.state.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn readiness_is_503_naming_the_fault_and_invocations_are_retryable() {
    let state = AppState::new(
        Pipeline::new(Registry::standard(), Policy::default()),
        Arc::new(MissingQueue),
        Arc::new(MemoryLedger::default()),
    );
    let (status, body) = probe(state.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .contains("RESPONDER_QUEUE_ROTATION"),
        "{body}"
    );

    // The fault makes every delivery retryable: the host fails the invocation, Event Grid
    // retries and finally dead-letters; nothing is acknowledged as done.
    let mut event =
        crate::helpers::events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);
    event["id"] = Value::String("readiness-1".into());
    let payload = serde_json::json!({"Data": {"event": event}, "Metadata": {}});
    let response = defender_responder::app(state)
        .oneshot(
            Request::post("/DefenderAlert")
                .header("content-type", "application/json")
                .body(Body::from(payload.to_string()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let reply: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(reply["ReturnValue"]["kind"], "configuration", "{reply}");
}
