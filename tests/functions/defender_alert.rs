//! `POST /DefenderAlert` with the exact payloads the Functions host sends.

use std::sync::atomic::Ordering;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use defender_responder::domain::Queue;
use serde_json::{json, Value};

use crate::helpers::{events_of, TestApp};

fn outcome(body: &Value) -> &str {
    body["ReturnValue"]["outcome"].as_str().unwrap_or("(none)")
}

#[tokio::test]
async fn an_event_as_a_json_object_is_planned_and_published() {
    let app = TestApp::new();
    let event = events_of("alerts/keyvault-KV_SuspiciousIPAccess-egrest.json").remove(0);

    let (status, body) = app.invoke(event).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&body), "planned", "{body}");
    assert!(body["Outputs"].is_object());
    assert!(
        body["Logs"][0].as_str().unwrap().contains("Planned"),
        "{body}"
    );
    let tasks = body["ReturnValue"]["tasks"].as_array().unwrap();
    let (notification, isolation, rotation) = app.counts();
    assert_eq!(notification + isolation + rotation, tasks.len() as u64);
    assert!(notification >= 1 && isolation >= 1 && rotation >= 1);
}

#[tokio::test]
async fn an_event_as_a_json_string_holding_json_gives_the_same_plan() {
    let object_app = TestApp::new();
    let string_app = TestApp::new();
    let event = events_of("alerts/dns-AzureDNS_SinkholedDomain-egrest.json").remove(0);

    let (_, from_object) = object_app.invoke(event.clone()).await;
    let (status, from_string) = string_app.invoke(Value::String(event.to_string())).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&from_string), "planned");
    assert_eq!(
        from_object["ReturnValue"]["tasks"],
        from_string["ReturnValue"]["tasks"]
    );
}

#[tokio::test]
async fn a_redelivered_alert_publishes_nothing_new() {
    let app = TestApp::new();
    let mut events = events_of("alerts/keyvault-KV_PutGetAnomaly-egrest.json");
    let first = events.remove(0);
    let mut second = first.clone();
    second["id"] = json!("a-new-event-grid-id");

    let (_, body) = app.invoke(first).await;
    let counts = app.counts();
    let (status, again) = app.invoke(second).await;

    assert_eq!(outcome(&body), "planned");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&again), "duplicate", "{again}");
    assert_eq!(app.counts(), counts);
}

#[tokio::test]
async fn a_transient_publish_failure_answers_non_2xx_and_the_redelivery_publishes_the_same_ids() {
    let app = TestApp::with_failures(1);
    let event = events_of("alerts/keyvault-KV_TORAccess-egwfa.json").remove(0);

    let (status, body) = app.invoke(event.clone()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["Logs"][0].as_str().unwrap().contains("transient"),
        "{body}"
    );
    assert_eq!(app.counts(), (0, 0, 0));

    // The platform redelivers: the alert was not remembered, so it is planned again.
    let (status, body) = app.invoke(event.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&body), "planned");
    assert_eq!(app.publisher.calls.load(Ordering::SeqCst), 2);
    let published: Vec<String> = Queue::ALL
        .iter()
        .flat_map(|queue| app.store.peek(*queue, 100).unwrap())
        .map(|message| message.message_id)
        .collect();
    let mut planned: Vec<String> = body["ReturnValue"]["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|task| task["message_id"].as_str().unwrap().to_string())
        .collect();
    let mut published_sorted = published.clone();
    published_sorted.sort();
    planned.sort();
    assert_eq!(published_sorted, planned);
}

#[tokio::test]
async fn malformed_invocations_are_acknowledged_with_a_logged_reason() {
    let app = TestApp::new();
    for (payload, expected) in [
        (
            "not json",
            "invocation payload is not the host's JSON shape",
        ),
        ("{\"Data\":{},\"Metadata\":{}}", "no Data.event binding"),
    ] {
        let request = Request::post("/DefenderAlert")
            .header("content-type", "application/json")
            .body(Body::from(payload))
            .unwrap();
        let (status, body, _) = app.request(request).await;
        assert_eq!(status, StatusCode::OK, "{payload}");
        assert!(
            body["Logs"][0].as_str().unwrap().contains(expected),
            "{body}"
        );
    }
    // An event with null data: rejected, acknowledged, reason names the field.
    let (status, body) = app
        .invoke(
            json!({"id": "e", "eventType": "Contoso.Defender.SecurityAlert.Created", "data": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&body), "rejected");
    assert!(body["ReturnValue"]["reason"]
        .as_str()
        .unwrap()
        .contains("data is missing or null"));
    assert_eq!(app.counts(), (0, 0, 0));
}

#[tokio::test]
async fn a_status_update_starts_no_containment() {
    let app = TestApp::new();
    app.invoke(events_of("alerts/keyvault-KV_ListGetAnomaly-egwfa.json").remove(0))
        .await;
    let before = app.counts();

    let (status, body) = app
        .invoke(events_of("alerts/keyvault-KV_ListGetAnomaly-statusresolved.json").remove(0))
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome(&body), "status_update");
    let after = app.counts();
    assert_eq!(
        (after.1, after.2),
        (before.1, before.2),
        "no new isolation or rotation"
    );
    assert_eq!(
        after.0,
        before.0 + 1,
        "one notification that the alert closed"
    );
}

#[tokio::test]
async fn the_readiness_probe_answers() {
    let app = TestApp::new();
    let (status, body, _) = app
        .request(Request::get("/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn an_oversize_invocation_is_acknowledged_with_a_clear_reason_not_retried() {
    let app = TestApp::new();
    let huge = "x".repeat(defender_responder::decode::MAX_INVOCATION_BYTES + 1);
    let request = Request::post("/DefenderAlert")
        .header("content-type", "application/json")
        .body(Body::from(huge))
        .unwrap();
    let (status, body, _) = app.request(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body["Logs"][0].as_str().unwrap().contains("over the limit"),
        "{body}"
    );
}

#[tokio::test]
async fn an_event_near_event_grids_limit_is_planned_in_both_host_forms() {
    // The host repeats data in Metadata and may escape the event into a string: the payload is
    // about twice the event's size, and must still be accepted.
    for string_form in [false, true] {
        let app = TestApp::new();
        let event = events_of("edge/near-limit.json").remove(0);
        assert!(event.to_string().len() > 900 * 1024);
        let payload = if string_form {
            Value::String(event.to_string())
        } else {
            event.clone()
        };
        let body = json!({"Data": {"event": payload}, "Metadata": {"data": event["data"].clone()}})
            .to_string();
        assert!(body.len() > 1800 * 1024);
        let request = Request::post("/DefenderAlert")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap();
        let (status, body, _) = app.request(request).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(outcome(&body), "planned", "string form {string_form}");
    }
}
