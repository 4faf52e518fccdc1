//! Managed identity (App Service style: IDENTITY_ENDPOINT + IDENTITY_HEADER) against a loopback
//! token endpoint; never a real metadata address.

use std::sync::{Arc, Mutex};

use defender_responder::adapters::ServiceBusSettings;
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
    // azure_identity reads the process environment itself; the serial lock keeps other tests
    // of this binary from running meanwhile, and the variables are removed afterwards.
    std::env::set_var("IDENTITY_ENDPOINT", &endpoint);
    std::env::set_var("IDENTITY_HEADER", "loopback-header-value");
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
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let settings = ServiceBusSettings::from_lookup(&get, Default::default())
        .unwrap()
        .unwrap();
    assert!(settings.describe().contains("entra-id"));
    let got = settings.check_credentials().await;
    std::env::remove_var("IDENTITY_ENDPOINT");
    std::env::remove_var("IDENTITY_HEADER");
    server.await.unwrap();

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
