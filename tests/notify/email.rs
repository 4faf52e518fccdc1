//! E-mail through Graph `sendMail` on the Azure simulator: one message per recipient (the
//! owner found by the vault's tag, and the security team), the exact body in the request log
//! with a Graph-audience token, and no second mail on a redelivery.

use std::sync::Arc;

use azure_sim::{Audience, Seed, Simulator, SimulatorHandle};
use defender_responder::azure::credential::StaticTokenCredential;
use defender_responder::azure::AzureClients;
use defender_responder::config::azure::AzureSettings;
use defender_responder::config::notify::ChannelSecret;
use defender_responder::notify::{email, Notifier, Sent};
use defender_responder::policy::notifications::ChannelKind;
use serde_json::Value;

use super::support::{journal, notifications, planned, policy_with, settings};

pub(crate) async fn simulator() -> (SimulatorHandle, AzureClients) {
    let sim = Simulator::start(Seed::example())
        .await
        .expect("simulator starts");
    let azure = AzureSettings::on_one_host(&sim.base_url());
    let credential = StaticTokenCredential::new([
        (azure.arm_scope.clone(), sim.token(Audience::Management)),
        (azure.graph_scope.clone(), sim.token(Audience::Graph)),
    ]);
    let clients = AzureClients::with_root_pem(&azure, Arc::new(credential), sim.certificate_pem())
        .expect("clients");
    (sim, clients)
}

fn send_mail_requests(sim: &SimulatorHandle) -> Vec<Value> {
    sim.requests()
        .into_iter()
        .filter(|r| {
            r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/sendMail"))
        })
        .collect()
}

#[tokio::test]
async fn each_recipient_gets_one_mail_with_the_exact_body_and_a_redelivery_sends_none() {
    let (sim, clients) = simulator().await;
    let policy = policy_with("mail", ChannelKind::Email, Some("alice@contoso.com"));
    let notifier = Notifier::new(
        &policy,
        &settings("mail", ChannelSecret::None),
        Some(clients.graph.clone()),
        Some(clients.arm.clone()),
    )
    .unwrap();
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    let results = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    let mut destinations: Vec<&str> = results
        .iter()
        .map(|(o, _)| o.destination.as_str())
        .collect();
    destinations.sort();
    // The vault's owner tag (payments-oncall) and the security team: one mail each.
    assert_eq!(
        destinations,
        ["payments-oncall@contoso.com", "secops@contoso.com"]
    );
    assert!(results.iter().all(|(_, sent)| *sent
        == Sent::Delivered {
            status: 202,
            attempts: 1
        }));

    let requests = send_mail_requests(&sim);
    assert_eq!(requests.len(), 2, "{requests:#?}");
    for (outgoing, _) in &results {
        let request = requests
            .iter()
            .find(|r| {
                r["body"]["message"]["toRecipients"][0]["emailAddress"]["address"]
                    == outgoing.destination.as_str()
            })
            .expect("a mail for each destination");
        assert_eq!(request["path"], "/v1.0/users/alice@contoso.com/sendMail");
        assert_eq!(request["status"], 202);
        assert_eq!(request["audience"], "https://graph.microsoft.com");
        assert_eq!(
            request["body"],
            email::send_mail_body(&outgoing.notification, &outgoing.destination)
        );
        assert_eq!(
            request["body"]["message"]["internetMessageHeaders"][0]["value"],
            outgoing.notification.message_id.as_str()
        );
    }
    // The owner's mail is the same alert's message with a different id than the team's.
    assert_ne!(
        results[0].0.notification.message_id,
        results[1].0.notification.message_id
    );

    // Redelivered: the journal knows both mails; Graph has no idempotency key, so nothing is sent.
    let again = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    assert!(again.is_empty());
    assert_eq!(send_mail_requests(&sim).len(), 2);
}

#[tokio::test]
async fn after_a_partial_failure_a_redelivery_sends_only_the_mail_that_did_not_go_out() {
    use azure_sim::{Fault, FaultRule};
    let (sim, clients) = simulator().await;
    let policy = policy_with("mail", ChannelKind::Email, Some("alice@contoso.com"));
    let notifier = Notifier::new(
        &policy,
        &settings("mail", ChannelSecret::None),
        Some(clients.graph.clone()),
        Some(clients.arm.clone()),
    )
    .unwrap()
    .with_retry(defender_responder::notify::delivery::RetryPolicy {
        attempts: 2,
        initial_backoff: std::time::Duration::from_millis(10),
    });
    // The first mail goes through; both attempts at the second are refused with 503.
    sim.add_fault(FaultRule {
        method: Some("POST".into()),
        path: "*/sendMail".into(),
        after: 1,
        times: Some(2),
        fault: Fault::Status {
            status: 503,
            retry_after: Some(0),
            code: None,
            message: None,
        },
    });
    let tasks = notifications(&planned(&policy));
    let (journal, _dir) = journal();
    let err = notifier
        .deliver(&tasks, &journal, "test")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let accepted = |sim: &SimulatorHandle| -> Vec<String> {
        send_mail_requests(sim)
            .into_iter()
            .filter(|r| r["status"] == 202)
            .map(|r| {
                r["body"]["message"]["toRecipients"][0]["emailAddress"]["address"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(accepted(&sim).len(), 1);
    sim.clear_faults();
    // The queue redelivers: only the missing mail is sent.
    let again = notifier.deliver(&tasks, &journal, "test").await.unwrap();
    let mut sent = accepted(&sim);
    sent.sort();
    assert_eq!(
        sent,
        ["payments-oncall@contoso.com", "secops@contoso.com"],
        "one mail each"
    );
    assert_eq!(
        again
            .iter()
            .filter(|(_, s)| *s == Sent::AlreadyDelivered)
            .count(),
        1,
        "{again:?}"
    );
    // And the tasks are done: a third delivery sends nothing.
    assert!(notifier
        .deliver(&tasks, &journal, "test")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(accepted(&sim).len(), 2);
}
