//! Every log line at TRACE level (this crate, azure_core_amqp, azure_core) while publishing with
//! a password URL and with a SAS key: none holds the password, the key or a signature.

use std::io::Write;
use std::sync::{Arc, Mutex};

use defender_responder::adapters::{Publisher, ServiceBusPublisher, ServiceBusSettings};

use crate::support::*;

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);

impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn no_secret_reaches_the_trace_logs() {
    let _serial = serial().await;
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // This test's thread only (the runtime is current-thread), so other binaries' tests and
    // the global subscriber are untouched.
    let _logging = tracing::subscriber::set_default(subscriber);

    let queues = TestQueues::new("secrets");
    // A password of our own, so finding it can only mean it leaked (RabbitMQ refuses it).
    let map = [
        (
            "ServiceBusConnection",
            "amqp://guest:Pa55w0rdLeak@127.0.0.1:5672".to_string(),
        ),
        ("RESPONDER_SB_CONNECT_TIMEOUT_SECONDS", "2".to_string()),
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let bad = ServiceBusPublisher::new(
        ServiceBusSettings::from_lookup(&get, queues.names.clone())
            .unwrap()
            .unwrap(),
    );
    let refused = bad.publish(&alert_tasks("secrets-0")).await;
    tracing::info!(?refused, publisher = ?bad, "wrong password");
    assert!(refused.is_err());

    let good = publisher(&queues, &[]);
    good.publish(&alert_tasks("secrets-1")).await.unwrap();
    tracing::info!(publisher = ?good, settings = %good.settings().describe(), "published");

    let map = [
        ("ServiceBusConnection", "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=k;SharedAccessKey=S3CR3TKEY;UseDevelopmentEmulator=true".to_string()),
        ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "2".to_string()),
    ];
    let get = |k: &str| map.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
    let sas = ServiceBusPublisher::new(
        ServiceBusSettings::from_lookup(&get, queues.names.clone())
            .unwrap()
            .unwrap(),
    );
    let result = sas.publish(&alert_tasks("secrets-2")[..1]).await;
    tracing::info!(?result, publisher = ?sas, "sas publish");
    delete_cbs_queue();

    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines().count() > 10,
        "the subscriber captured the logs"
    );
    assert!(logs.contains("service bus connection open"), "{logs}");
    for secret in [
        "Pa55w0rdLeak",
        "guest:guest",
        "S3CR3TKEY",
        "SharedAccessSignature",
        "sig=",
    ] {
        assert!(!logs.contains(secret), "{secret} found in the logs");
    }
}
