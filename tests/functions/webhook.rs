//! `POST|OPTIONS /api/defender-alerts`: Event Grid and CloudEvents deliveries and both handshakes.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;

use crate::helpers::{fixture, TestApp};

#[tokio::test]
async fn the_event_grid_validation_handshake_echoes_the_code() {
    let app = TestApp::new();
    let (status, body) = app
        .webhook(
            fixture("alerts/eventgrid-SubscriptionValidationEvent-handshake.json"),
            "application/json",
            "SubscriptionValidation",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({"validationResponse": "533B110A-04C9-4BB4-8042-65B0ADDB312F"})
    );
    // Without a validationUrl (older API versions) it works the same.
    let (status, body) = app
        .webhook(
            fixture("edge/validation-nourl.json"),
            "application/json",
            "SubscriptionValidation",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["validationResponse"], "ABC-123");
}

#[tokio::test]
async fn the_cloudevents_abuse_protection_handshake_allows_the_origin() {
    let app = TestApp::new();
    let request = Request::options("/api/defender-alerts")
        .header("WebHook-Request-Origin", "eventgrid.azure.net")
        .header("WebHook-Request-Rate", "120")
        .body(Body::empty())
        .unwrap();
    let (status, _, headers) = app.request(request).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["webhook-allowed-origin"], "eventgrid.azure.net");
    assert_eq!(headers["webhook-allowed-rate"], "*");

    let request = Request::options("/api/defender-alerts")
        .body(Body::empty())
        .unwrap();
    let (status, body, _) = app.request(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("WebHook-Request-Origin"));
}

#[tokio::test]
async fn a_batch_reports_each_event_and_one_bad_event_does_not_sink_the_others() {
    let app = TestApp::new();
    let (status, body) = app
        .webhook(
            fixture("edge/batch-50.json"),
            "application/json",
            "Notification",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 50);
    assert_eq!(events[10]["outcome"], "rejected");
    assert!(events[10]["reason"]
        .as_str()
        .unwrap()
        .contains("data is missing or null"));
    assert_eq!(events[11]["outcome"], "duplicate");
    assert_eq!(events[20]["outcome"], "status_update");
    let planned = events.iter().filter(|e| e["outcome"] == "planned").count();
    assert_eq!(planned, 47);
    let (n, i, r) = app.counts();
    let published: usize = events
        .iter()
        .map(|e| e["task_count"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!((n + i + r) as usize, published);
}

#[tokio::test]
async fn cloudevents_single_and_batch_content_types_are_accepted() {
    let app = TestApp::new();
    let (status, body) = app
        .webhook(
            fixture("alerts/dns-AzureDNS_SinkholedDomain-ce.json"),
            "application/cloudevents+json; charset=utf-8",
            "Notification",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["events"][0]["outcome"], "planned");
    let (status, body) = app
        .webhook(
            fixture("edge/cloudevents-batch.json"),
            "application/cloudevents-batch+json",
            "Notification",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let outcomes: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["ignored", "planned", "planned"]);
}

#[tokio::test]
async fn malformed_bodies_get_400_naming_the_problem_and_publish_nothing() {
    let app = TestApp::new();
    for (file, expected) in [
        (
            "alerts/keyvault-KV_PutGetAnomaly-malformed-truncated.json",
            "invalid JSON at line",
        ),
        (
            "alerts/arm-ARM_SuspiciousComputeCreation-malformed-singlequotes.json",
            "invalid JSON at line 1",
        ),
        ("edge/bom.json", "byte order mark"),
        ("edge/empty.json", "body is empty"),
        ("edge/ndjson.json", "trailing characters"),
        ("edge/trailing-comma.json", "trailing comma"),
    ] {
        let (status, body) = app
            .webhook(fixture(file), "application/json", "Notification")
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{file}");
        assert!(
            body["error"].as_str().unwrap().contains(expected),
            "{file}: {body}"
        );
    }
    assert_eq!(app.counts(), (0, 0, 0));
}

#[tokio::test]
async fn an_oversize_delivery_is_refused_with_413() {
    let app = TestApp::new();
    let body = format!(
        "[{}]",
        " ".repeat(defender_responder::decode::MAX_BODY_BYTES)
    );
    let (status, body) = app
        .webhook(body.into_bytes(), "application/json", "Notification")
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(body["error"].as_str().unwrap().contains("over the limit"));
}

#[tokio::test]
async fn a_transient_failure_answers_503_and_the_retried_batch_publishes_nothing_twice() {
    let app = TestApp::with_failures(1);
    let batch = fixture("alerts/eventgrid-batch-mixed3.json");
    let (status, body) = app
        .webhook(batch.clone(), "application/json", "Notification")
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["retry"].as_array().unwrap().len(), 1);
    let after_first = app.counts();
    assert!(after_first.0 > 0, "the other events were published");

    let (status, body) = app.webhook(batch, "application/json", "Notification").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let outcomes: Vec<&str> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["planned", "duplicate", "duplicate"]);
}

#[tokio::test]
async fn an_unsubscribe_notice_is_acknowledged() {
    let app = TestApp::new();
    let (status, _) = app
        .webhook(b"[]".to_vec(), "application/json", "Unsubscribe")
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_validation_event_beside_alerts_is_answered_and_the_alerts_are_planned() {
    let app = TestApp::new();
    let mut batch: Vec<serde_json::Value> = serde_json::from_slice(&fixture(
        "alerts/eventgrid-SubscriptionValidationEvent-handshake.json",
    ))
    .unwrap();
    let alerts: Vec<serde_json::Value> =
        serde_json::from_slice(&fixture("alerts/eventgrid-batch-mixed3.json")).unwrap();
    batch.extend(alerts.iter().cloned());
    let (status, body) = app
        .webhook(
            serde_json::to_vec(&batch).unwrap(),
            "application/json",
            "Notification",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["validationResponse"],
        "533B110A-04C9-4BB4-8042-65B0ADDB312F"
    );
    assert_eq!(body["counts"]["planned"], alerts.len(), "{body}");
    let (n, i, r) = app.counts();
    let published: u64 = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["task_count"].as_u64().unwrap())
        .sum();
    assert!(published > 0);
    assert_eq!(n + i + r, published, "every planned task is on a queue");
}
