//! What the journal records of one task: its state, its history, the decision, the preview,
//! the prior state, the result; and the state machine's legal transitions.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::domain::{Action, MessageId, Queue, Task, TaskStatus};
use crate::executors::FollowUp;

/// Where a task is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// A worker took the task off its queue.
    Received,
    /// Waiting for a person's decision on the recorded preview.
    PendingApproval,
    /// A person approved the change.
    Approved,
    /// A person rejected the change (final).
    Rejected,
    /// No decision came in time (final).
    Expired,
    /// A worker is carrying it out.
    Running,
    /// Carried out and verified.
    Done,
    /// The run failed; a retryable failure may be run again.
    Failed,
    /// A done change that was reverted (final).
    Undone,
    /// No executor carries this action out yet; recorded and notified (final).
    NotAutomated,
}

impl TaskState {
    /// Every state, in the order of a task's life.
    pub const ALL: [TaskState; 10] = [
        TaskState::Received,
        TaskState::PendingApproval,
        TaskState::Approved,
        TaskState::Rejected,
        TaskState::Expired,
        TaskState::Running,
        TaskState::Done,
        TaskState::Failed,
        TaskState::Undone,
        TaskState::NotAutomated,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Received => "received",
            TaskState::PendingApproval => "pending_approval",
            TaskState::Approved => "approved",
            TaskState::Rejected => "rejected",
            TaskState::Expired => "expired",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Failed => "failed",
            TaskState::Undone => "undone",
            TaskState::NotAutomated => "not_automated",
        }
    }

    /// Whether a task in this state may move to `to`. `running → running` is the take-over of
    /// a run whose instance died; [`super::Journal::begin_run`] allows it only after the run
    /// timeout.
    pub fn may_become(self, to: TaskState) -> bool {
        use TaskState::*;
        matches!(
            (self, to),
            (Received, PendingApproval | Running | NotAutomated)
                | (PendingApproval, Approved | Rejected | Expired)
                | (Approved, Running | NotAutomated)
                | (Running, Running | Done | Failed)
                | (Failed, Running)
                | (Done, Undone)
        )
    }

    /// Whether nothing more will happen to the task (a failed task may still be retried).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            TaskState::Rejected
                | TaskState::Expired
                | TaskState::Done
                | TaskState::Undone
                | TaskState::NotAutomated
        )
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A person's answer to a pending task.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Carry the change out.
    Approve,
    /// Do not.
    Reject,
}

impl Verdict {
    /// The snake_case name (`approve`, `reject`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Approve => "approve",
            Verdict::Reject => "reject",
        }
    }

    /// Parses `approve` or `reject`.
    pub fn parse(text: &str) -> Option<Verdict> {
        match text {
            "approve" => Some(Verdict::Approve),
            "reject" => Some(Verdict::Reject),
            _ => None,
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who decided what, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Approve or reject.
    pub verdict: Verdict,
    /// The approver: a signed-in identity, `link` (the link alone), or an operator.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Who confirmed that a done containment stays, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// A signed-in identity, `link` (the link alone), or `operator:<name>`.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// An undo claimed on a done task: only one caller runs it; a failed one may be tried again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoAttempt {
    /// Who started it.
    pub by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// Why it failed (`None` while it runs, and once it is done).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One transition in a task's history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The state before (`None` for the first record).
    pub from: Option<TaskState>,
    /// The state after.
    pub to: TaskState,
    /// Who caused it: a worker, an approver, an operator.
    pub actor: String,
    /// What happened without a change of state (a follow-up step's result, an escalation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Everything the journal knows about one task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The task's message id (the key).
    pub message_id: MessageId,
    /// What the task does.
    pub action: Action,
    /// The queue it came from.
    pub queue: Queue,
    /// The alert it came from.
    pub system_alert_id: String,
    /// Why the task exists.
    pub reason: String,
    /// The playbook steps it carries out.
    #[serde(default)]
    pub steps: Vec<String>,
    /// The task's recipients (who may decide on it, besides the configured approvers).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Whether the task only reports what it would do.
    pub dry_run: bool,
    /// Whether the planner published it ready or waiting for a decision.
    pub published_status: TaskStatus,
    /// The current state.
    pub state: TaskState,
    /// When the entry was created.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// When it last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The decision, once made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// The exact requests the task would send (or sent), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview: Option<RawJson>,
    /// SHA-256 (hex) of the preview's canonical JSON; decision links are bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preview_hash: Option<String>,
    /// The state of the target before the change, saved before the first write (for undo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prior_state: Option<RawJson>,
    /// What the executor or channel answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<RawJson>,
    /// What the verifying read found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<RawJson>,
    /// What the undo answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo_result: Option<RawJson>,
    /// A person's word that a done containment stays: no containment expiry undoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<Confirmation>,
    /// The undo started on this done task (and why it failed, when it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<UndoAttempt>,
    /// Why the last run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether that failure may be retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retryable: Option<bool>,
    /// How many runs were started.
    #[serde(default)]
    pub attempts: u32,
    /// When the current (or last) run started.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub run_started_at: Option<OffsetDateTime>,
    /// Which worker started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_by: Option<String>,
    /// Every transition, oldest first.
    #[serde(default)]
    pub history: Vec<HistoryEvent>,
    /// Work the run left for later (disable the old versions after the grace window), run by
    /// the sweeper once due; kept with its error when it failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_up: Option<ScheduledFollowUp>,
    /// The decision was asked again of other people after the first timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    /// A random id of the write that produced this version, so a writer can recognise its
    /// own write when the storage's answer to it was lost.
    #[serde(default)]
    pub write_id: String,
}

/// A follow-up step as the journal schedules it: the step, the task it belongs to (what
/// [`crate::executors::Executor::follow_up`] is called with), when it is due, and its tries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduledFollowUp {
    /// The step and its `not_before` (Unix seconds), as the executor answered it.
    pub follow_up: FollowUp,
    /// The task whose executor performs it.
    pub task: Task,
    /// Unix seconds from which the sweeper may take it: `not_before`, a retry's backoff, or
    /// the end of a claim whose sweeper died. `None` once it failed for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due_at: Option<i64>,
    /// How many times a sweeper took it.
    #[serde(default)]
    pub attempts: u32,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The sweeper running it now (until `claim.until`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<FollowUpClaim>,
}

impl ScheduledFollowUp {
    /// A follow-up of `task`, due at its `not_before`.
    pub fn new(task: &Task, follow_up: FollowUp) -> Self {
        ScheduledFollowUp {
            due_at: Some(follow_up.not_before),
            follow_up,
            task: task.clone(),
            attempts: 0,
            error: None,
            claim: None,
        }
    }

    /// The step's name (`disable_secret_versions`, …).
    pub fn step_name(&self) -> String {
        serde_json::to_value(&self.follow_up.step)
            .ok()
            .and_then(|v| v.get("step").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| "follow_up".to_string())
    }
}

/// A sweeper's claim on a follow-up: only the holder of `id` records its result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FollowUpClaim {
    /// A random id of this claim.
    pub id: String,
    /// The sweeper.
    pub by: String,
    /// Unix seconds at which the claim lapses (its sweeper died) and another may take it.
    pub until: i64,
}

/// A decision asked again of other people after the first timeout.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Escalation {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who was asked.
    pub to: Vec<String>,
}

impl JournalEntry {
    /// When the task became `done` (its last transition there), if it did.
    pub fn done_at(&self) -> Option<OffsetDateTime> {
        self.history
            .iter()
            .rev()
            .find(|event| event.to == TaskState::Done)
            .map(|event| event.at)
    }

    /// When its follow-up is due (Unix seconds), if one waits; what the stores index.
    pub fn follow_up_due(&self) -> Option<i64> {
        self.follow_up.as_ref().and_then(|f| f.due_at)
    }

    /// The first record of a task.
    pub fn received(task: &Task, actor: &str, now: OffsetDateTime) -> Self {
        JournalEntry {
            message_id: task.message_id.clone(),
            action: task.action,
            queue: task.queue,
            system_alert_id: task.alert.system_alert_id.clone(),
            reason: task.reason.clone(),
            steps: task.steps.clone(),
            recipients: task.recipients.clone(),
            dry_run: task.dry_run,
            published_status: task.status,
            state: TaskState::Received,
            received_at: now,
            updated_at: now,
            decision: None,
            preview: None,
            preview_hash: None,
            prior_state: None,
            result: None,
            verification: None,
            undo_result: None,
            confirmation: None,
            undo: None,
            error: None,
            retryable: None,
            attempts: 0,
            run_started_at: None,
            run_by: None,
            history: vec![HistoryEvent {
                at: now,
                from: None,
                to: TaskState::Received,
                actor: actor.to_string(),
                note: None,
            }],
            follow_up: None,
            escalation: None,
            write_id: uuid::Uuid::new_v4().to_string(),
        }
    }
}

/// A JSON document the journal keeps as its compact text (a preview, a prior state, a
/// result): an entry is read and rewritten several times per task, and carrying these as text
/// spares decoding them into `Value` trees and encoding them again each time. Readers that
/// look inside decode it with [`RawJson::to_value`]. Two are equal when their JSON is equal,
/// whatever the spacing or key order.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// The compact text of `value`.
    pub fn from_value(value: &Value) -> Self {
        // A `Value` always encodes: its map keys are strings and its numbers finite.
        Self(serde_json::value::to_raw_value(value).expect("a JSON value encodes"))
    }

    /// The document as a `Value` tree.
    pub fn to_value(&self) -> Value {
        // The text was checked as JSON when it was decoded or encoded.
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }

    /// The document decoded into `T` (only the parts `T` names are built).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }

    /// The document's JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl From<Value> for RawJson {
    fn from(value: Value) -> Self {
        Self::from_value(&value)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str() || self.to_value() == other.to_value()
    }
}

/// An opaque version of a stored entry: an ETag (Blob) or a counter (SQLite).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version(pub String);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A held lease on a resource: until `expires_at`, no one else acquires it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The resource it serialises (e.g. a normalised Azure resource id).
    pub resource: String,
    /// The lease's id (a GUID), needed to renew or release it.
    pub lease_id: String,
    /// Who holds it (for logs).
    pub holder: String,
    /// How long each acquire or renew holds it.
    pub ttl: std::time::Duration,
    /// When it lapses unless renewed.
    pub expires_at: OffsetDateTime,
}

/// SHA-256 (hex) of a preview's canonical JSON (object keys sorted, no spaces), so the same
/// change always hashes the same, whatever the key order it was built with.
pub fn preview_hash(preview: &Value) -> String {
    let mut canonical = Vec::with_capacity(1024);
    write_canonical(preview, &mut canonical);
    hex::encode(Sha256::digest(&canonical))
}

/// Writes `value` as compact JSON with every object's keys in byte order: keys and scalars
/// spelled as `serde_json` writes them, straight into `out` (no string per key or scalar).
fn write_canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            // Kept in key order already unless serde_json keeps insertion order.
            if !entries.is_sorted_by(|a, b| a.0 <= b.0) {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push(b'{');
            for (index, (key, item)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_json(key, out);
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn write_json(value: &(impl Serialize + ?Sized), out: &mut Vec<u8>) {
    // Writing a string or a scalar `Value` into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}
