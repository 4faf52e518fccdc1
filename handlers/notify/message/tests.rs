//! Tests of the notification model and its renderings (Teams, Slack, e-mail).

use super::*;
use crate::notify::{email, sample, slack, teams};
use crate::policy::Policy;

fn planned() -> Vec<Task> {
    sample::plan(sample::SAMPLE_ALERT.as_bytes(), &Policy::default()).expect("plan")
}

fn built() -> Notification {
    let tasks = planned();
    sample::notification(
        &tasks,
        "soc",
        "soc",
        Url::parse("https://responder.example/api/journal").ok(),
        |t| sample::links(None, t, 1_764_579_600),
    )
    .expect("a notification")
}

#[test]
fn one_message_covers_every_notification_task_of_the_alert() {
    let tasks = planned();
    let n = built();
    let notes = tasks
        .iter()
        .filter(|t| t.queue == Queue::Notification)
        .count();
    assert_eq!(n.sections.len(), notes);
    assert!(n.sections.len() >= 4, "{}", n.sections.len());
    assert_eq!(n.alert.alert_type, "KV_SuspiciousIPAccess");
    assert_eq!(
        n.title,
        "Medium · KV_SuspiciousIPAccess · kv-contoso-payments"
    );
    // The four containment tasks wait, each with both links.
    assert_eq!(n.pending.len(), 4);
    assert!(n
        .pending
        .iter()
        .all(|p| p.approve.is_some() && p.reject.is_some()));
    assert!(n.pending[0]
        .approve
        .as_ref()
        .unwrap()
        .as_str()
        .contains("d=approve"));
    assert!(n
        .portal_url
        .as_deref()
        .unwrap()
        .starts_with("https://portal.azure.com/"));
    assert!(n
        .journal_url
        .as_ref()
        .unwrap()
        .as_str()
        .starts_with("https://responder.example/api/journal?alert=2521240143013701557_"));
    assert!(!n.checklist.is_empty());
}

#[test]
fn the_message_id_is_stable_and_depends_on_the_destination() {
    let tasks = planned();
    let notes: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.queue == Queue::Notification)
        .collect();
    let context = BuildContext::default();
    let a = Notification::build(&notes, vec![], "mail", "a@contoso.com", &context).unwrap();
    let again = Notification::build(&notes, vec![], "mail", "a@contoso.com", &context).unwrap();
    let b = Notification::build(&notes, vec![], "mail", "b@contoso.com", &context).unwrap();
    let reversed: Vec<&Task> = notes.iter().rev().copied().collect();
    let same_set =
        Notification::build(&reversed, vec![], "mail", "a@contoso.com", &context).unwrap();
    assert_eq!(a.message_id, again.message_id);
    assert_eq!(a.message_id, same_set.message_id);
    assert_ne!(a.message_id, b.message_id);
}

#[test]
fn done_changes_say_how_to_undo_them() {
    let tasks = planned();
    let firewall = tasks
        .iter()
        .find(|t| t.action == Action::EnableKeyVaultFirewall)
        .unwrap();
    let mut related = RelatedTask::from_task(firewall);
    related.state = RelatedState::Done {
        summary: "firewall closed: default action Deny".into(),
        undo: Some("defender-responder undo dr-87bd…".into()),
        dry_run: false,
    };
    let notes: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.queue == Queue::Notification)
        .collect();
    let context = BuildContext {
        related: vec![related],
        journal_base: None,
    };
    let n = Notification::build(&notes, vec![], "soc", "soc", &context).unwrap();
    assert_eq!(n.done.len(), 1);
    assert!(n.pending.is_empty());
    let card = teams::payload(&n, teams::MAX_BYTES).to_string();
    assert!(card.contains("Undo: defender-responder undo"), "{card}");
    assert!(email::html(&n).contains("Undo: defender-responder undo"));
    assert!(slack::payload(&n)
        .to_string()
        .contains("Undo: defender-responder undo"));
}

#[test]
fn the_teams_card_is_an_adaptive_card_in_a_message_with_open_url_buttons() {
    let n = built();
    let body = teams::payload(&n, teams::MAX_BYTES);
    assert_eq!(body["type"], "message");
    let attachment = &body["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.5");
    let text = body.to_string();
    assert_eq!(text.matches("\"title\":\"Approve\"").count(), 4);
    assert_eq!(text.matches("\"title\":\"Reject\"").count(), 4);
    assert!(!text.contains("Action.Submit") && !text.contains("MessageCard"));
    assert!(text.len() <= teams::MAX_BYTES, "{}", text.len());
}

#[test]
fn an_oversized_card_is_trimmed_but_keeps_every_button() {
    let mut n = built();
    // A report with thousands of objects: far beyond 28 KB at full detail.
    for section in &mut n.sections {
        section.reason = "x".repeat(20_000);
        section.facts.insert(
            "accessed_objects".into(),
            "https://kv/secrets/s ".repeat(500),
        );
    }
    let full = teams::payload(&n, usize::MAX).to_string();
    assert!(full.len() > teams::MAX_BYTES);
    let trimmed = teams::payload(&n, teams::MAX_BYTES).to_string();
    assert!(trimmed.len() <= teams::MAX_BYTES, "{}", trimmed.len());
    for pending in &n.pending {
        assert!(trimmed.contains(pending.approve.as_ref().unwrap().as_str()));
        assert!(trimmed.contains(pending.reject.as_ref().unwrap().as_str()));
    }
    assert!(trimmed.contains("the journal entry has everything"));
    assert!(trimmed.contains("\"title\":\"Journal entry\""));
}

#[test]
fn the_email_escapes_every_value_and_carries_the_message_id_header() {
    let mut n = built();
    n.sections[0].reason = "<script>alert(1)</script> & \"quotes\"".into();
    let body = email::send_mail_body(&n, "owner@contoso.com");
    let html = body["message"]["body"]["content"].as_str().unwrap();
    assert!(!html.contains("<script>"));
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;quotes&quot;"));
    assert_eq!(body["message"]["body"]["contentType"], "HTML");
    assert_eq!(
        body["message"]["toRecipients"],
        serde_json::json!([{"emailAddress": {"address": "owner@contoso.com"}}])
    );
    assert_eq!(
        body["message"]["internetMessageHeaders"],
        serde_json::json!([{"name": "X-DR-Message-Id", "value": n.message_id.as_str()}])
    );
    assert_eq!(body["saveToSentItems"], false);
    assert!(body["message"]["subject"]
        .as_str()
        .unwrap()
        .ends_with("4 waiting for a decision"));
    // Links are attribute-escaped (& in the query).
    assert!(html.contains("&amp;d=approve"));
}
