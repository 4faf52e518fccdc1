//! Unit tests of the host protocol with the payload shapes the host sends (functions-host
//! notes §2.1 Event Grid, §2.3 Service Bus, §2.5 HTTP without forwarding).

use super::*;
use axum::http::Request as HttpRequest;

/// §2.1: an eventGridTrigger invocation; Metadata holds a second copy of the event's data.
const EVENT_GRID: &str = r#"{
  "Data": {
    "alertEvent": {
      "id": "7d6a1c6e-1111-4a5e-9c1e-000000000001",
      "topic": "/subscriptions/00000000-0000-0000-0000-000000000000",
      "subject": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg1/providers/Microsoft.Security/locations/westeurope/alerts/2517",
      "eventType": "Contoso.Security.AlertCreated",
      "eventTime": "2025-01-02T03:04:05.6789012Z",
      "dataVersion": "1.0",
      "metadataVersion": "1",
      "data": {
        "alertDisplayName": "Suspicious sign-in",
        "severity": "High",
        "compromisedEntity": "vm-01",
        "timeGeneratedUtc": "2025-01-02T03:04:00Z"
      }
    }
  },
  "Metadata": {
    "data": {
      "alertDisplayName": "Suspicious sign-in",
      "severity": "High",
      "compromisedEntity": "vm-01",
      "timeGeneratedUtc": "2025-01-02T03:04:00Z"
    },
    "sys": {
      "MethodName": "DefenderAlertIngest",
      "UtcNow": "2025-01-02T03:04:06.1234567Z",
      "RandGuid": "0b7c3a52-2222-4d0e-8f00-000000000002"
    }
  }
}"#;

/// §2.3: a serviceBusTrigger invocation: the body double-encoded, scalars as JSON text, the
/// body's own properties copied into Metadata.
const SERVICE_BUS: &str = r#"{
  "Data": {
    "msg": "\"{\\\"alertId\\\":\\\"2517\\\",\\\"action\\\":\\\"enrich\\\"}\""
  },
  "Metadata": {
    "MessageReceiver": {}, "MessageSession": {}, "MessageActions": {},
    "SessionActions": {}, "ReceiveActions": {},
    "Client": { "FullyQualifiedNamespace": "sb-mdc.servicebus.windows.net", "IsClosed": false,
                "TransportType": 0, "Identifier": "sb-mdc.servicebus.windows.net-1a2b" },
    "DeliveryCount": "1",
    "LockToken": "\"0d1e\"",
    "ExpiresAtUtc": "2025-01-16T03:04:05",
    "ExpiresAt": "2025-01-16T03:04:05+00:00",
    "EnqueuedTimeUtc": "2025-01-02T03:04:05",
    "EnqueuedTime": "2025-01-02T03:04:05+00:00",
    "MessageId": "\"9f8e7d6c\"",
    "ContentType": "\"application/json\"",
    "SequenceNumber": "42",
    "CorrelationId": "\"7d6a1c6e-1111-4a5e-9c1e-000000000001\"",
    "ApplicationProperties": { "source": "eventgrid" },
    "UserProperties": { "source": "eventgrid" },
    "alertId": "\"2517\"",
    "action": "\"enrich\"",
    "sys": { "MethodName": "AlertEnrich", "UtcNow": "2025-01-02T03:04:06.5Z",
             "RandGuid": "3c" }
  }
}"#;

/// §2.5: an httpTrigger invocation without forwarding.
const HTTP: &str = r#"{ "Data": { "req": {
    "Url": "http://localhost:7071/api/health?x=1",
    "Method": "GET",
    "Query": { "x": "1" },
    "Headers": { "Accept": ["*/*"], "Host": ["localhost:7071"] },
    "Params": { },
    "Identities": [ { "AuthenticationType": null, "IsAuthenticated": false, "Claims": [] } ],
    "Body": "raw body as string"
  } },
  "Metadata": { "Query": { "x": "1" }, "Headers": { "Accept": "*/*" }, "sys": { } } }"#;

#[test]
fn event_grid_binding_is_the_event_object_and_metadata_is_skipped() {
    let request: InvokeRequest = serde_json::from_str(EVENT_GRID).unwrap();
    let event = request.binding("alertEvent").unwrap();
    assert_eq!(event["id"], "7d6a1c6e-1111-4a5e-9c1e-000000000001");
    assert_eq!(request.binding_json("ALERTEVENT").unwrap(), *event);
    // A single binding under another name is still found (function.json may differ).
    assert!(request.binding("event").is_some());
}

#[test]
fn service_bus_body_and_metadata_are_decoded_from_the_double_encoding() {
    let request: InvokeRequest<ServiceBusMetadata> = serde_json::from_str(SERVICE_BUS).unwrap();
    let body = request.binding_json("msg").unwrap();
    assert_eq!(
        body,
        serde_json::json!({"alertId": "2517", "action": "enrich"})
    );
    let m = &request.metadata;
    assert_eq!(m.message_id.as_deref(), Some("9f8e7d6c"));
    assert_eq!(m.delivery_count, Some(1));
    assert_eq!(m.sequence_number, Some(42));
    assert_eq!(
        m.correlation_id.as_deref(),
        Some("7d6a1c6e-1111-4a5e-9c1e-000000000001")
    );
    assert_eq!(m.content_type.as_deref(), Some("application/json"));
    assert_eq!(m.application_properties["source"], "eventgrid");
    assert_eq!(
        m.enqueued_time_utc.unwrap(),
        azure_core::time::parse_rfc3339("2025-01-02T03:04:05Z").unwrap()
    );
    assert_eq!(m.session_id, None);
    // Nothing of this body can have replaced a system property.
    assert!(ServiceBusMetadata::shadowed_by(&body).is_empty());
}

#[test]
fn a_service_bus_body_sent_once_encoded_or_as_json_is_accepted_too() {
    for data in [
        serde_json::json!({"msg": "{\"a\":1}"}),
        serde_json::json!({"msg": {"a": 1}}),
        serde_json::json!({"msg": "\"{\\\"a\\\":1}\""}),
    ] {
        let request: InvokeRequest<ServiceBusMetadata> =
            serde_json::from_value(serde_json::json!({"Data": data})).unwrap();
        assert_eq!(
            request.binding_json("msg").unwrap(),
            serde_json::json!({"a": 1})
        );
        assert_eq!(request.metadata, ServiceBusMetadata::default());
    }
    let request: InvokeRequest =
        serde_json::from_value(serde_json::json!({"Data": {"msg": "plain text"}})).unwrap();
    let err = request.binding_json("msg").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadInput);
    assert!(err.message().contains("Data.msg"), "{err}");
}

#[test]
fn a_body_that_collides_with_system_properties_is_detected() {
    let body = serde_json::json!({"messageId": "forged", "deliveryCount": 1, "x": 2});
    assert_eq!(
        ServiceBusMetadata::shadowed_by(&body),
        vec!["MessageId", "DeliveryCount"]
    );
}

#[test]
fn http_request_data_is_read_with_headers_case_insensitive() {
    let request: InvokeRequest<HttpMetadata> = serde_json::from_str(HTTP).unwrap();
    let req: HttpRequestData = request.binding_as("req").unwrap();
    assert_eq!(req.method, "GET");
    assert_eq!(req.url, "http://localhost:7071/api/health?x=1");
    assert_eq!(req.query["x"], "1");
    assert_eq!(req.header("accept"), Some("*/*"));
    assert_eq!(req.body.as_deref(), Some("raw body as string"));
    assert_eq!(req.identities.len(), 1);
    assert_eq!(request.metadata.query["x"], "1");
}

#[test]
fn host_scalars_and_times() {
    assert_eq!(
        host_scalar(&serde_json::json!("\"abc\"")).as_deref(),
        Some("abc")
    );
    assert_eq!(host_scalar(&serde_json::json!("4")).as_deref(), Some("4"));
    assert_eq!(
        host_scalar(&serde_json::json!("plain")).as_deref(),
        Some("plain")
    );
    assert_eq!(host_scalar(&serde_json::json!(7)).as_deref(), Some("7"));
    let utc = parse_host_time("2023-10-12T20:13:49").unwrap();
    assert_eq!(utc, parse_host_time("2023-10-12T20:13:49+00:00").unwrap());
    assert_eq!(utc, parse_host_time("2023-10-12T20:13:49Z").unwrap());
    assert!(parse_host_time("2023-10-12T20:13:49.1234567").is_some());
    assert!(parse_host_time("yesterday").is_none());
}

#[test]
fn the_reply_status_comes_from_the_error_kind() {
    let ok = reply("event 1", Ok(InvokeResponse::new("done", Value::Null)));
    assert_eq!(ok.status(), StatusCode::OK);
    let retry = reply(
        "event 1",
        Err(Error::configuration("queue rotation does not exist")
            .with_retry_after(Duration::from_secs(30))),
    );
    assert_eq!(retry.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(retry.headers()["retry-after"], "30");
    let acknowledged = reply("event 1", Err(Error::bad_input("not JSON")));
    assert_eq!(acknowledged.status(), StatusCode::OK);
    let permanent = reply("event 1", Err(Error::permanent("too large")));
    assert_eq!(permanent.status(), StatusCode::OK);
}

#[test]
fn http_outputs_follow_the_host_shape() {
    let response = InvokeResponse::http(StatusCode::ACCEPTED, "{}".into(), "application/json");
    let value = serde_json::to_value(&response).unwrap();
    assert_eq!(value["Outputs"]["res"]["statusCode"], 202);
    assert_eq!(
        value["Outputs"]["res"]["headers"]["Content-Type"],
        "application/json"
    );
}

#[test]
fn a_configuration_fault_is_logged_at_most_once_per_interval() {
    let start = Instant::now();
    let key = "unit-test fault";
    assert_eq!(configuration_fault_due(key, start), Some(0));
    assert_eq!(
        configuration_fault_due(key, start + Duration::from_secs(1)),
        None
    );
    assert_eq!(
        configuration_fault_due(key, start + Duration::from_secs(59)),
        None
    );
    assert_eq!(
        configuration_fault_due(key, start + CONFIGURATION_LOG_INTERVAL),
        Some(2)
    );
    assert_eq!(configuration_fault_due("another", start), Some(0));
}

#[tokio::test]
async fn the_extractor_reads_the_invocation_id_and_acknowledges_a_foreign_payload() {
    let request = HttpRequest::builder()
        .header(INVOCATION_ID_HEADER, "5f0c")
        .body(Body::from(SERVICE_BUS))
        .unwrap();
    let invocation = Invocation::<ServiceBusMetadata>::from_request(request, &())
        .await
        .unwrap();
    assert_eq!(invocation.id, "5f0c");
    assert_eq!(invocation.request.metadata.delivery_count, Some(1));

    let request = HttpRequest::builder().body(Body::from("[1,2]")).unwrap();
    let rejected = Invocation::<IgnoredAny>::from_request(request, &())
        .await
        .unwrap_err();
    assert_eq!(
        rejected.status(),
        StatusCode::OK,
        "acknowledged, never redelivered"
    );
}
