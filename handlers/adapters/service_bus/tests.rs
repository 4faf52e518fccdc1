//! Unit tests of the Service Bus adapter: settings, SAS tokens, messages, link choice (no broker).

use super::sender::{choose_link, renewal_schedule};
use super::*;
use crate::adapters::QueueNames;
use crate::config::ServiceBusAuth;
use crate::domain::{Action, AlertRef, AlertStatus, Queue, Service, Severity};
use azure_core_amqp::message::{AmqpApplicationProperties, AmqpMessageBody, AmqpMessageId};
use azure_core_amqp::AmqpSymbol;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Settings from literal pairs, with the default queue names.
fn from_env(pairs: &[(&str, &str)]) -> Result<Option<ServiceBusSettings>, Error> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let get = move |k: &str| map.get(k).cloned();
    ServiceBusSettings::from_lookup(&get, QueueNames::default())
}

fn task() -> Task {
    let alert = AlertRef {
        system_alert_id: "alert-1".into(),
        alert_type: "KV_Anomaly".into(),
        service: Service::KeyVault,
        severity: Severity::High,
        status: AlertStatus::Active,
        resource: "kv-1".into(),
        alert_uri: None,
    };
    let mut task = Task::example(
        &alert,
        Action::RestrictPrincipal,
        &["KV-2a", "KV-2b"],
        "/subscriptions/x/resourceGroups/y",
        "because",
    );
    task.dry_run = true;
    task
}

// Expected value computed independently with:
// python3 -c 'import hmac,hashlib,base64,urllib.parse as u; e=u.quote_plus("sb://ns.servicebus.windows.net/notification");
//   sig=base64.b64encode(hmac.new(b"c2VjcmV0LWtleS1mb3ItdGVzdHM=",(e+"\n1767225600").encode(),hashlib.sha256).digest()).decode();
//   print(f"SharedAccessSignature sr={e}&sig={u.quote_plus(sig)}&se=1767225600&skn=send")'
#[test]
fn sas_token_matches_python() {
    let token = sas_token(
        "sb://ns.servicebus.windows.net/notification",
        "send",
        "c2VjcmV0LWtleS1mb3ItdGVzdHM=",
        1767225600,
    );
    assert_eq!(
        token,
        "SharedAccessSignature sr=sb%3A%2F%2Fns.servicebus.windows.net%2Fnotification&sig=aPWJ1Kb2WYuTnUNCXPJ4%2BkfByjBfme5OcnyGONVUEfw%3D&se=1767225600&skn=send"
    );
}

/// Same check with python3 run live on other inputs (python3 is part of the test toolchain:
/// scripts/test.sh needs it for the broker tests, so its absence fails this test).
#[test]
fn sas_token_matches_python_live() {
    let uri = "sb://my-ns.servicebus.windows.net/rotation";
    let key = "k3y/with+base64=chars";
    let script = format!(
        "import hmac,hashlib,base64,urllib.parse as u\ne=u.quote_plus('{uri}')\nsig=base64.b64encode(hmac.new('{key}'.encode(),(e+'\\n1999999999').encode(),hashlib.sha256).digest()).decode()\nprint(f'SharedAccessSignature sr={{e}}&sig={{u.quote_plus(sig)}}&se=1999999999&skn=Root Key')"
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3 runs");
    assert!(out.status.success());
    let expected = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .replace("skn=Root Key", "skn=Root+Key");
    assert_eq!(sas_token(uri, "Root Key", key, 1999999999), expected);
}

#[test]
fn no_setting_means_none() {
    assert!(from_env(&[]).unwrap().is_none());
    assert!(from_env(&[("ServiceBusConnection", "  ")])
        .unwrap()
        .is_none());
}

#[test]
fn amqp_url_is_rabbitmq_without_cbs_and_hides_password() {
    let s = from_env(&[(
        "ServiceBusConnection",
        "amqp://guest:hunter2@127.0.0.1:5672",
    )])
    .unwrap()
    .unwrap();
    assert_eq!(s.flavour, BrokerFlavour::RabbitMq);
    assert!(matches!(s.auth, ServiceBusAuth::Sasl));
    assert_eq!(s.host, "127.0.0.1:5672");
    assert_eq!(s.connect_timeout, Duration::from_secs(10));
    assert_eq!(s.send_timeout, Duration::from_secs(10));
    let debug = format!("{s:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
    let p = ServiceBusPublisher::new(s);
    assert!(!format!("{p:?}").contains("hunter2"));
}

#[test]
fn connection_string_is_service_bus_with_sas_over_tls() {
    let s = from_env(&[
        ("ServiceBusConnection", "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=S3CR3T"),
                ("RESPONDER_SB_MESSAGE_TTL_SECONDS", "3600"),
        ("RESPONDER_SB_SESSIONS", "true"),
        ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "2.5"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        s.endpoint.as_str(),
        "amqps://ns.servicebus.windows.net:5671"
    );
    assert_eq!(s.flavour, BrokerFlavour::ServiceBus);
    assert_eq!(s.queues.name(Queue::Notification), "notification");
    assert_eq!(s.links_per_queue, DEFAULT_LINKS_PER_QUEUE);
    assert_eq!(s.message_ttl, Some(Duration::from_secs(3600)));
    assert!(s.use_sessions);
    assert_eq!(s.send_timeout, Duration::from_millis(2500));
    assert_eq!(
        s.audience("rotation"),
        "sb://ns.servicebus.windows.net/rotation"
    );
    assert!(!format!("{s:?}").contains("S3CR3T"));
}

#[test]
fn emulator_is_plain_amqp_with_sas() {
    let s = from_env(&[(
        "ServiceBusConnection",
        "Endpoint=sb://localhost;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true;",
    )])
    .unwrap()
    .unwrap();
    assert_eq!(s.endpoint.as_str(), "amqp://localhost:5672");
    assert!(matches!(s.auth, ServiceBusAuth::SharedKey { .. }));
}

#[test]
fn namespace_uses_entra_credential() {
    let s = from_env(&[
        (
            "ServiceBusConnection__fullyQualifiedNamespace",
            "ns.servicebus.windows.net",
        ),
        (
            "ServiceBusConnection__clientId",
            "00000000-0000-0000-0000-000000000001",
        ),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(s.endpoint.as_str(), "amqps://ns.servicebus.windows.net");
    assert!(matches!(s.auth, ServiceBusAuth::EntraId { .. }));
}

#[test]
fn bad_settings_are_config_errors() {
    for pairs in [
        vec![(
            "ServiceBusConnection",
            "Endpoint=sb://x/;SharedAccessKeyName=a",
        )],
        vec![
            ("ServiceBusConnection", "amqp://127.0.0.1"),
            ("RESPONDER_SB_BROKER", "kafka"),
        ],
        vec![
            ("ServiceBusConnection", "amqp://127.0.0.1"),
            ("RESPONDER_SB_SEND_TIMEOUT_SECONDS", "0"),
        ],
        vec![
            ("ServiceBusConnection", "amqp://127.0.0.1"),
            ("RESPONDER_SB_SESSIONS", "maybe"),
        ],
    ] {
        assert!(
            matches!(from_env(&pairs), Err(e) if e.kind() == ErrorKind::Configuration),
            "{pairs:?}"
        );
    }
}

#[test]
fn message_fields() {
    let s = from_env(&[
        ("ServiceBusConnection", "amqp://127.0.0.1:5672"),
        ("RESPONDER_SB_MESSAGE_TTL_SECONDS", "60"),
        ("RESPONDER_SB_SESSIONS", "true"),
    ])
    .unwrap()
    .unwrap();
    let m = build_message(&task(), &s).unwrap();
    let h = m.header.as_ref().unwrap();
    assert!(h.durable);
    assert_eq!(
        h.time_to_live,
        Some(azure_core::time::Duration::milliseconds(60_000))
    );
    let t = task();
    let p = m.properties.as_ref().unwrap();
    assert_eq!(
        p.message_id,
        Some(AmqpMessageId::String(t.message_id.as_str().into()))
    );
    assert_eq!(
        p.correlation_id,
        Some(AmqpMessageId::String("alert-1".into()))
    );
    assert_eq!(p.subject.as_deref(), Some("restrict_principal"));
    assert_eq!(p.content_type, Some(AmqpSymbol("application/json".into())));
    assert_eq!(p.group_id.as_deref(), Some(t.target.as_str()));
    let AmqpMessageBody::Binary(sections) = &m.body else {
        panic!("body is not data")
    };
    let body: serde_json::Value = serde_json::from_slice(&sections[0]).unwrap();
    assert_eq!(body, serde_json::to_value(&t).unwrap());
    let mut expected = AmqpApplicationProperties::new();
    expected.insert("alert_type".into(), "KV_Anomaly".to_string());
    expected.insert("service".into(), "key_vault".to_string());
    expected.insert("severity".into(), "High".to_string());
    expected.insert("steps".into(), "KV-2a,KV-2b".to_string());
    expected.insert("dry_run".into(), true);
    assert_eq!(m.application_properties, Some(expected));
}

#[test]
fn links_per_queue_is_configurable_and_bounded() {
    let s = from_env(&[
        ("ServiceBusConnection", "amqp://127.0.0.1:5672"),
        ("RESPONDER_SB_LINKS_PER_QUEUE", "8"),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(s.links_per_queue, 8);
    for bad in ["0", "65", "many"] {
        assert!(matches!(
            from_env(&[
                ("ServiceBusConnection", "amqp://127.0.0.1:5672"),
                ("RESPONDER_SB_LINKS_PER_QUEUE", bad),
            ]),
            Err(e) if e.kind() == ErrorKind::Configuration
        ));
    }
}

#[test]
fn a_send_takes_an_idle_link_then_a_new_one_then_the_least_busy() {
    // Empty pool: attach the first link.
    assert_eq!(choose_link(&[], 4), 0);
    // An idle link is reused rather than attaching another.
    assert_eq!(choose_link(&[1, 0, 2], 4), 1);
    // Every link busy and room left: attach one more.
    assert_eq!(choose_link(&[1, 1], 4), 2);
    // Pool full: the least busy link.
    assert_eq!(choose_link(&[3, 1, 2, 5], 4), 1);
    // A pool of one always uses its link.
    assert_eq!(choose_link(&[7], 1), 0);
}

#[test]
fn describe_names_the_broker_but_never_the_password() {
    let s = from_env(&[(
        "ServiceBusConnection",
        "amqp://guest:hunter2@127.0.0.1:5672",
    )])
    .unwrap()
    .unwrap();
    let text = s.describe();
    assert_eq!(
        text,
        "amqp://127.0.0.1:5672 (RabbitMq, sasl-plain, 8 links per queue)"
    );
    assert!(!text.contains("hunter2") && !text.contains("guest"));
}

#[test]
fn long_targets_get_hashed_session_ids() {
    let long = "x".repeat(200);
    let id = session_id(&long);
    assert!(id.starts_with("sha256:") && id.len() <= 128);
    assert_eq!(id, session_id(&long));
}

#[test]
fn oversized_body_is_permanent_before_connecting() {
    let s = from_env(&[
        ("ServiceBusConnection", "amqp://127.0.0.1:1"),
        ("RESPONDER_SB_MAX_MESSAGE_BYTES", "100"),
    ])
    .unwrap()
    .unwrap();
    assert!(matches!(
        build_message(&task(), &s),
        Err(e) if e.kind() == ErrorKind::Permanent
    ));
}

#[test]
fn tokens_are_renewed_at_80_percent_of_their_lifetime() {
    let now = Instant::now();
    let (refresh, expires) = renewal_schedule(now, Duration::from_secs(3600));
    assert_eq!(refresh - now, Duration::from_secs(2880));
    assert_eq!(expires - now, Duration::from_secs(3600));
    // An already expired token is renewed at once.
    let (refresh, _) = renewal_schedule(now, Duration::ZERO);
    assert_eq!(refresh, now);
}

#[test]
fn rabbitmq_and_service_bus_addresses() {
    assert_eq!(
        BrokerFlavour::ServiceBus.address("notification"),
        "notification"
    );
    assert_eq!(
        BrokerFlavour::RabbitMq.address("notification"),
        "/amq/queue/notification"
    );
}
