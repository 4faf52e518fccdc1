//! Notifications from an alert file, without a journal: what `notify --render FILE` prints and
//! `notify --test CHANNEL` sends (a Key Vault alert built in, marked as a test).

use url::Url;

use super::message::{BuildContext, Notification, RelatedTask};
use super::notifier::related_from_plan;
use crate::adapters::MemoryLedger;
use crate::approval::ApprovalSettings;
use crate::approval::DecisionLink;
use crate::decode::decode_body;
use crate::domain::{Queue, Task, TaskStatus};
use crate::error::Error;
use crate::journal::Verdict;
use crate::pipeline::Pipeline;
use crate::policy::Policy;
use crate::services::Registry;

/// The alert `notify --test` sends: a Key Vault access from an unusual address.
pub const SAMPLE_ALERT: &str =
    include_str!("../../tests/fixtures/alerts/keyvault-KV_SuspiciousIPAccess-egrest.json");

/// The tasks the policy plans for the first alert in `bytes` (an Event Grid body or an alert).
pub fn plan(bytes: &[u8], policy: &Policy) -> Result<Vec<Task>, Error> {
    let pipeline = Pipeline::new(Registry::standard(), policy.clone());
    let ledger = MemoryLedger::default();
    let events = decode_body(bytes).map_err(|err| Error::BadRequest(err.to_string()))?;
    for event in &events {
        let report = pipeline.assess(event, &ledger)?;
        if !report.tasks.is_empty() {
            return Ok(report.tasks);
        }
    }
    Err(Error::BadRequest(
        "the file plans no task (no alert, a duplicate, or nothing to do)".into(),
    ))
}

/// Approve / Reject links for a planned task: signed with the configured key when there is
/// one (valid for the configured time), else with a throwaway key (for looking only: the
/// endpoint will refuse them).
pub fn links(approvals: Option<&ApprovalSettings>, task: &Task, now: i64) -> Vec<(Verdict, Url)> {
    if task.status != TaskStatus::PendingApproval {
        return Vec::new();
    }
    let (key, endpoint, ttl) = match approvals {
        Some(settings) => (
            settings.key.clone(),
            settings.decision_url.clone(),
            settings.ttl.as_secs() as i64,
        ),
        None => {
            let random = format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            );
            #[allow(clippy::expect_used)] // 64 hex characters are a valid key.
            let key = crate::approval::ApprovalKey::parse(&random).expect("key");
            #[allow(clippy::expect_used)] // A constant URL.
            let endpoint = Url::parse("http://127.0.0.1:7071/api/decide").expect("url");
            (key, endpoint, 72 * 3600)
        }
    };
    // The link is bound to the change's hash; before a worker records the preview there is
    // none, so the rendering binds it to the task's id (the real worker's links bind the preview).
    let hash = crate::journal::preview_hash(&serde_json::json!({"task": task.message_id.as_str()}));
    [Verdict::Approve, Verdict::Reject]
        .into_iter()
        .map(|verdict| {
            let link = DecisionLink::sign(&key, &task.message_id, verdict, &hash, now + ttl);
            (verdict, link.url(&endpoint))
        })
        .collect()
}

/// The notification for the plan's security-team recipients (every notification task of the
/// alert), with the plan's pending tasks and their links, as one channel would send it.
pub fn notification(
    tasks: &[Task],
    channel: &str,
    destination: &str,
    journal_base: Option<Url>,
    links_for: impl Fn(&Task) -> Vec<(Verdict, Url)>,
) -> Option<Notification> {
    let notes: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.queue == Queue::Notification)
        .collect();
    let mut recipients: Vec<String> = Vec::new();
    for person in notes.iter().flat_map(|t| &t.recipients) {
        if !recipients.contains(person) {
            recipients.push(person.clone());
        }
    }
    let related: Vec<RelatedTask> = related_from_plan(tasks, links_for);
    let context = BuildContext {
        related,
        journal_base,
    };
    Notification::build(&notes, recipients, channel, destination, &context)
}
