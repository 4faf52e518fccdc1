//! Managed identity (App Service style: IDENTITY_ENDPOINT + IDENTITY_HEADER, and IMDS through
//! RESPONDER_IDENTITY_ENDPOINT) against a loopback token endpoint; never a real metadata
//! address. The endpoint comes from the settings, not from the process environment.

use std::sync::{Arc, Mutex};

use defender_responder::adapters::{ServiceBusPublisher, ServiceBusSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::serial;

#[tokio::test]
async fn managed_identity_asks_the_platform_endpoint_for_a_service_bus_token() {
    let _serial = serial().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let expires_on = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    let record = seen.clone();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = socket.read(&mut buf).await.unwrap_or(0);
        record
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&buf[..n]).to_string());
        let body = format!(
            r#"{{"access_token":"fake-jwt-for-tests","expires_on":"{expires_on}","resource":"https://servicebus.azure.net","token_type":"Bearer"}}"#
        );
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = socket.shutdown().await;
    });

    let endpoint = format!("http://127.0.0.1:{port}/msi/token");
    let map = [
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ns.servicebus.windows.net".to_string(),
        ),
        (
            "ServiceBusConnection__clientId",
            "11111111-2222-3333-4444-555555555555".to_string(),
        ),
        ("IDENTITY_ENDPOINT", endpoint.clone()),
        ("IDENTITY_HEADER", "loopback-header-value".to_string()),
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let settings = ServiceBusSettings::from_lookup(&get, Default::default())
        .unwrap()
        .unwrap();
    assert!(settings.describe().contains("entra-id"));
    assert!(!format!("{settings:?}").contains("loopback-header-value"));
    let publisher = ServiceBusPublisher::new(settings.clone());
    let got = publisher.check_credentials().await;
    // A second request within the token's lifetime is served from the cache.
    let again = publisher.check_credentials().await;
    server.await.unwrap();
    assert!(again.is_ok(), "{again:?}");

    let expiry = got
        .expect("a token from the loopback endpoint")
        .expect("a token");
    assert_eq!(expiry.unix_timestamp(), expires_on as i64);
    let requests = seen.lock().unwrap().clone();
    let first = requests[0].to_ascii_lowercase();
    assert!(first.starts_with("get /msi/token?"), "{first}");
    assert!(first.contains("api-version=2019-08-01"), "{first}");
    assert!(
        first.contains("resource=https%3a%2f%2fservicebus.azure.net"),
        "{first}"
    );
    assert!(
        first.contains("client_id=11111111-2222-3333-4444-555555555555"),
        "{first}"
    );
    assert!(
        first.contains("x-identity-header: loopback-header-value"),
        "{first}"
    );
    assert!(!format!("{settings:?}").contains("loopback-header-value"));
}

/// A loopback server answering each of `replies` (status, body) to one request in turn;
/// returns its port and the requests it saw.
async fn token_server(replies: Vec<(u16, String)>) -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        for (status, body) in replies {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let n = socket.read(&mut buf).await.unwrap_or(0);
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n]).to_string());
            let reply = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(reply.as_bytes()).await;
            let _ = socket.shutdown().await;
        }
    });
    (port, seen)
}

#[tokio::test]
async fn the_token_endpoint_is_configurable_and_an_unknown_identity_is_a_configuration_fault() {
    let _serial = serial().await;
    let (port, seen) = token_server(vec![(
        400,
        r#"{"error":"invalid_request","error_description":"Identity not found"}"#.to_string(),
    )])
    .await;
    let endpoint = format!("http://127.0.0.1:{port}/metadata/identity/oauth2/token");
    let map = [
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ns.servicebus.windows.net".to_string(),
        ),
        ("RESPONDER_IDENTITY", "managed_identity".to_string()),
        ("RESPONDER_IDENTITY_ENDPOINT", endpoint),
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let settings = ServiceBusSettings::from_lookup(&get, Default::default())
        .unwrap()
        .unwrap();
    let publisher = ServiceBusPublisher::new(settings);
    let err = publisher.check_credentials().await.unwrap_err();
    assert_eq!(
        err.kind(),
        defender_responder::error::ErrorKind::Configuration,
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains("Identity not found"), "{text}");
    assert!(text.contains("system-assigned"), "{text}");
    assert!(
        text.contains("ServiceBusConnection__fullyQualifiedNamespace"),
        "{text}"
    );
    let request = seen.lock().unwrap()[0].to_ascii_lowercase();
    assert!(
        request.starts_with("get /metadata/identity/oauth2/token?api-version=2018-02-01"),
        "{request}"
    );
    assert!(request.contains("metadata: true"), "{request}");
}
