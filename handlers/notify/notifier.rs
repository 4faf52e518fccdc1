//! The notifier: routes an alert's notification tasks to the policy's channels (one message
//! per alert and channel, per recipient for e-mail), renders each, and delivers it once per
//! message id through the journal, paced and retried per channel.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};
use time::OffsetDateTime;
use url::Url;

use super::delivery::{post_json, Pace, RetryPolicy};
use super::message::{BuildContext, Notification, RelatedState, RelatedTask};
use super::webhook::{SendError, WebhookChannel, WebhookSettings};
use super::{email, owners, slack, teams};
use crate::approval::DecisionDesk;
use crate::azure::{ArmClient, GraphClient};
use crate::config::notify::{ChannelSecret, NotifySettings};
use crate::domain::{Action, Queue, Task, TaskStatus};
use crate::error::Error;
use crate::journal::{Journal, JournalError, RunOutcome, TaskState};
use crate::policy::notifications::{ChannelKind, ChannelSpec};
use crate::policy::Policy;

/// Teams throttles a webhook above 4 requests a second.
pub const TEAMS_INTERVAL: Duration = Duration::from_millis(250);
/// Slack allows about one message a second per incoming webhook.
pub const SLACK_INTERVAL: Duration = Duration::from_secs(1);
/// Spacing of `sendMail` calls from one mailbox (well inside Graph's 10 000 per 10 minutes).
pub const EMAIL_INTERVAL: Duration = Duration::from_millis(100);

/// How one channel sends.
#[derive(Clone, Debug)]
enum Sender {
    /// A chat webhook whose URL is the credential.
    Chat(Url),
    /// Graph `sendMail` from `sender`.
    Email { graph: GraphClient, sender: String },
    /// A Standard-Webhooks-signed webhook.
    Signed(WebhookChannel),
}

/// One configured channel.
#[derive(Debug)]
pub struct Channel {
    spec: ChannelSpec,
    sender: Sender,
    pace: Pace,
}

impl Channel {
    /// The channel's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Its kind.
    pub fn kind(&self) -> ChannelKind {
        self.spec.kind
    }
}

/// One message to send: a channel, a destination and the rendered notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The channel's name.
    pub channel: String,
    /// Its kind.
    pub kind: ChannelKind,
    /// The recipient address (e-mail) or the channel's name.
    pub destination: String,
    /// What it says.
    pub notification: Notification,
}

/// The request body a channel sends for a notification (for `notify --render` and tests).
pub fn render(kind: ChannelKind, notification: &Notification, destination: &str) -> Value {
    match kind {
        ChannelKind::Teams => teams::payload(notification, teams::MAX_BYTES),
        ChannelKind::Slack => slack::payload(notification),
        ChannelKind::Email => email::send_mail_body(notification, destination),
        ChannelKind::Webhook => webhook_event(notification, OffsetDateTime::now_utc()),
    }
}

/// The signed webhook's event for a notification: `{"id","type","timestamp","data"}`.
pub fn webhook_event(notification: &Notification, now: OffsetDateTime) -> Value {
    json!({
        "id": notification.message_id.as_str(),
        "type": "defender-responder.notification",
        "timestamp": now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
        "data": notification,
    })
}

/// A channel name and a destination (a recipient address, or the channel's name).
type Destination = (String, String);
/// The indexes of the tasks a message covers and its recipients.
type Covered = (Vec<usize>, Vec<String>);

/// What a delivery did with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Sent now.
    Delivered {
        /// The receiver's status.
        status: u16,
        /// Attempts it took.
        attempts: u32,
    },
    /// The journal records it as delivered already: not sent again.
    AlreadyDelivered,
}

/// The notifier.
#[derive(Debug)]
pub struct Notifier {
    policy: Policy,
    channels: Vec<Channel>,
    http: reqwest::Client,
    retry: RetryPolicy,
    journal_base: Option<Url>,
    arm: Option<ArmClient>,
    desk: Option<DecisionDesk>,
}

impl Notifier {
    /// The channels of `policy` with their secrets from `settings`; e-mail channels need
    /// `graph`, owner tags need `arm` (without it the policy's owners are used).
    pub fn new(
        policy: &Policy,
        settings: &NotifySettings,
        graph: Option<GraphClient>,
        arm: Option<ArmClient>,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("defender-responder/", env!("CARGO_PKG_VERSION")))
            // A redirect would send the message somewhere not configured.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| Error::Config(format!("notification HTTP client: {err}")))?;
        let retry = RetryPolicy::default();
        let mut channels = Vec::new();
        for spec in &policy.notifications.channels {
            let secret = settings
                .secrets
                .get(&spec.name)
                .ok_or_else(|| Error::Config(format!("channel {:?} has no settings", spec.name)))?;
            let (sender, interval) = match (spec.kind, secret) {
                (ChannelKind::Teams, ChannelSecret::Url(url)) => {
                    (Sender::Chat(url.clone()), TEAMS_INTERVAL)
                }
                (ChannelKind::Slack, ChannelSecret::Url(url)) => {
                    (Sender::Chat(url.clone()), SLACK_INTERVAL)
                }
                (ChannelKind::Webhook, ChannelSecret::Signed(url, secret)) => (
                    Sender::Signed(WebhookChannel::new(WebhookSettings {
                        url: url.clone(),
                        secret: secret.clone(),
                        attempts: retry.attempts,
                        timeout: Duration::from_secs(10),
                        initial_backoff: retry.initial_backoff,
                    })?),
                    Duration::ZERO,
                ),
                (ChannelKind::Email, _) => {
                    let graph = graph.clone().ok_or_else(|| {
                        Error::Config(format!(
                            "channel {:?} sends e-mail through Microsoft Graph, which is not configured",
                            spec.name
                        ))
                    })?;
                    let sender = spec.sender.clone().unwrap_or_default();
                    (Sender::Email { graph, sender }, EMAIL_INTERVAL)
                }
                (kind, _) => {
                    return Err(Error::Config(format!(
                        "channel {:?} ({}) has the wrong kind of settings",
                        spec.name,
                        kind.as_str()
                    )))
                }
            };
            channels.push(Channel {
                spec: spec.clone(),
                sender,
                pace: Pace::new(interval),
            });
        }
        Ok(Notifier {
            policy: policy.clone(),
            channels,
            http,
            retry,
            journal_base: settings.journal_url.clone(),
            arm,
            desk: None,
        })
    }

    /// Signs Approve / Reject links for pending tasks with this desk.
    pub fn with_decisions(mut self, desk: DecisionDesk) -> Self {
        self.desk = Some(desk);
        self
    }

    /// Changes the retry policy of every channel (tests use short backoffs).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        for channel in &mut self.channels {
            if let Sender::Signed(webhook) = &channel.sender {
                let mut settings = webhook.settings().clone();
                settings.attempts = retry.attempts;
                settings.initial_backoff = retry.initial_backoff;
                if let Ok(rebuilt) = WebhookChannel::new(settings) {
                    channel.sender = Sender::Signed(rebuilt);
                }
            }
        }
        self.retry = retry;
        self
    }

    /// The configured channels.
    pub fn channels(&self) -> &[Channel] {
        &self.channels
    }

    fn channel(&self, name: &str) -> Option<&Channel> {
        self.channels.iter().find(|c| c.spec.name == name)
    }

    /// Who a task goes to: its recipients, plus for `contact_owner` the owners found by tag
    /// (or the policy's static owners).
    pub async fn recipients(&self, task: &Task) -> Vec<String> {
        let mut people = task.recipients.clone();
        if task.action == Action::ContactOwner {
            if let crate::domain::Parameters::ContactOwner {
                owner_lookup: Some(lookup),
                ..
            } = &task.parameters
            {
                let found = owners::resolve(
                    self.arm.as_ref(),
                    &self.policy,
                    lookup.resource.as_str(),
                    &lookup.tag,
                )
                .await;
                people.extend(found.people);
            }
        }
        let mut unique: Vec<String> = Vec::new();
        for person in people {
            if !unique.iter().any(|p| p.eq_ignore_ascii_case(&person)) {
                unique.push(person);
            }
        }
        unique
    }

    /// Routes an alert's notification tasks (with their recipients) to messages: one per
    /// channel, and per recipient for e-mail. Pure.
    pub fn route(&self, tasks: &[(Task, Vec<String>)], context: &BuildContext) -> Vec<Outgoing> {
        let mut queues = vec![Queue::Notification];
        for related in &context.related {
            if !matches!(related.state, RelatedState::Other) && !queues.contains(&related.queue) {
                queues.push(related.queue);
            }
        }
        // (channel, destination) → (task indexes, recipients), in first-seen order.
        let mut groups: Vec<(Destination, Covered)> = Vec::new();
        for (index, (task, recipients)) in tasks.iter().enumerate() {
            for recipient in recipients {
                for name in
                    self.policy
                        .notifications
                        .channels_for(recipient, task.alert.severity, &queues)
                {
                    let Some(channel) = self.channel(name) else {
                        continue;
                    };
                    let destination = if channel.kind().per_recipient() {
                        recipient.to_ascii_lowercase()
                    } else {
                        name.to_string()
                    };
                    let key = (name.to_string(), destination);
                    let slot = match groups.iter().position(|(k, _)| *k == key) {
                        Some(at) => at,
                        None => {
                            groups.push((key, (Vec::new(), Vec::new())));
                            groups.len() - 1
                        }
                    };
                    let (indexes, people) = &mut groups[slot].1;
                    if !indexes.contains(&index) {
                        indexes.push(index);
                    }
                    if !people.iter().any(|p| p.eq_ignore_ascii_case(recipient)) {
                        people.push(recipient.clone());
                    }
                }
            }
        }
        groups
            .into_iter()
            .filter_map(|((channel, destination), (indexes, people))| {
                let covered: Vec<&Task> = indexes.iter().map(|&i| &tasks[i].0).collect();
                let kind = self.channel(&channel)?.kind();
                let notification =
                    Notification::build(&covered, people, &channel, &destination, context)?;
                Some(Outgoing {
                    channel,
                    kind,
                    destination,
                    notification,
                })
            })
            .collect()
    }

    /// Sends one message now (no journal): paced and retried per its channel.
    pub async fn send(&self, outgoing: &Outgoing) -> Result<(u16, u32), SendError> {
        let Some(channel) = self.channel(&outgoing.channel) else {
            return Err(SendError::Refused { status: 0 });
        };
        let n = &outgoing.notification;
        match &channel.sender {
            Sender::Chat(url) => {
                let body = render(channel.kind(), n, &outgoing.destination).to_string();
                post_json(
                    &self.http,
                    url,
                    body.as_bytes(),
                    &channel.pace,
                    &self.retry,
                    &channel.spec.name,
                )
                .await
            }
            Sender::Signed(webhook) => {
                let body = webhook_event(n, OffsetDateTime::now_utc()).to_string();
                channel.pace.wait().await;
                webhook.send(n.message_id.as_str(), body.as_bytes()).await
            }
            Sender::Email { graph, sender } => {
                let body = email::send_mail_body(n, &outgoing.destination);
                let url = graph.url(&format!("/users/{sender}/sendMail"));
                let mut attempt = 0;
                let mut backoff = self.retry.initial_backoff;
                loop {
                    attempt += 1;
                    channel.pace.wait().await;
                    match graph.write(Method::POST, &url, Some(&body)).await {
                        Ok(response) => return Ok((response.status, attempt)),
                        Err(err) if err.is_retryable() && attempt < self.retry.attempts => {
                            tracing::info!(channel = %channel.spec.name, attempt, error = %err, "sendMail: retrying");
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(super::webhook::MAX_RETRY_AFTER);
                        }
                        Err(err) if err.is_retryable() => {
                            return Err(SendError::Retryable {
                                attempts: attempt,
                                reason: err.to_string(),
                            })
                        }
                        Err(err) => {
                            tracing::warn!(channel = %channel.spec.name, error = %err, "sendMail refused");
                            return Err(SendError::Refused {
                                status: err.status.unwrap_or(0),
                            });
                        }
                    }
                }
            }
        }
    }

    /// Sends one message once: the journal records a delivery under the message id, so a
    /// redelivered task (or a second worker) never sends it again. E-mail has no idempotency
    /// key at Graph, so this check before sending is what prevents a duplicate mail.
    pub async fn send_once(
        &self,
        outgoing: &Outgoing,
        template: &Task,
        journal: &Journal,
        actor: &str,
    ) -> Result<Sent, Error> {
        let n = &outgoing.notification;
        let mut record = template.clone();
        record.message_id = n.message_id.clone();
        record.target = format!("{}:{}", outgoing.channel, outgoing.destination);
        record.reason = format!(
            "notification to {} via {} ({}) covering {}",
            outgoing.destination,
            outgoing.channel,
            outgoing.kind.as_str(),
            n.sections
                .iter()
                .map(|s| s.message_id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
        record.recipients = n.recipients.clone();
        record.status = TaskStatus::Ready;
        let received = journal.receive(&record, actor).await?;
        if received.entry.state == TaskState::Done {
            return Ok(Sent::AlreadyDelivered);
        }
        match journal.begin_run(&record.message_id, actor).await {
            Ok(_) => {}
            Err(JournalError::IllegalTransition {
                from: TaskState::Done,
                ..
            }) => return Ok(Sent::AlreadyDelivered),
            Err(JournalError::IllegalTransition {
                from: TaskState::Running,
                ..
            }) => {
                return Err(Error::Transient(format!(
                    "message {} is being sent by another worker",
                    record.message_id
                )))
            }
            Err(err) => return Err(err.into()),
        }
        match self.send(outgoing).await {
            Ok((status, attempts)) => {
                journal
                    .finish(
                        &record.message_id,
                        RunOutcome::Done {
                            result: json!({
                                "channel": outgoing.channel,
                                "kind": outgoing.kind.as_str(),
                                "destination": outgoing.destination,
                                "status": status,
                                "attempts": attempts,
                            }),
                            verification: Value::Null,
                        },
                        actor,
                    )
                    .await?;
                Ok(Sent::Delivered { status, attempts })
            }
            Err(err) => {
                let retryable = matches!(err, SendError::Retryable { .. });
                journal
                    .finish(
                        &record.message_id,
                        RunOutcome::Failed {
                            error: err.to_string(),
                            retryable,
                        },
                        actor,
                    )
                    .await?;
                Err(if retryable {
                    Error::Transient(err.to_string())
                } else {
                    Error::Permanent(format!(
                        "{} ({}): {err}",
                        outgoing.channel,
                        outgoing.kind.as_str()
                    ))
                })
            }
        }
    }

    /// What the journal knows of the alert's other tasks, with decision links for pending ones.
    pub async fn related(
        &self,
        journal: &Journal,
        system_alert_id: &str,
    ) -> Result<Vec<RelatedTask>, Error> {
        let entries = journal.for_alert(system_alert_id).await?;
        let now = OffsetDateTime::now_utc();
        Ok(entries
            .iter()
            .filter(|entry| entry.queue != Queue::Notification)
            .map(|entry| {
                let links = match (&self.desk, entry.state) {
                    (Some(desk), TaskState::PendingApproval) => {
                        desk.links(entry, now).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                RelatedTask::from_entry(entry, links)
            })
            .collect())
    }

    /// Delivers an alert's notification tasks (a batch the worker received; each is one
    /// alert's): one message per alert and channel (per recipient for e-mail), each sent once.
    /// The tasks are recorded in the journal as received, and as done once every message that
    /// covers them went out. A retryable failure of any message is returned as
    /// [`Error::Transient`] after the others were tried, so a redelivery sends only what is
    /// missing.
    pub async fn deliver(
        &self,
        tasks: &[Task],
        journal: &Journal,
        actor: &str,
    ) -> Result<Vec<(Outgoing, Sent)>, Error> {
        let mut by_alert: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
        for task in tasks {
            by_alert
                .entry(task.alert.system_alert_id.as_str())
                .or_default()
                .push(task);
        }
        let mut results = Vec::new();
        let mut failure: Option<Error> = None;
        for (alert, alert_tasks) in by_alert {
            let mut pending = Vec::new();
            for task in alert_tasks {
                let received = journal.receive(task, actor).await?;
                if received.entry.state != TaskState::Done {
                    let recipients = self.recipients(task).await;
                    pending.push((task.clone(), recipients));
                }
            }
            if pending.is_empty() {
                continue;
            }
            let context = BuildContext {
                related: self.related(journal, alert).await?,
                journal_base: self.journal_base.clone(),
            };
            let outgoing = self.route(&pending, &context);
            let mut sent_for: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut alert_failed = false;
            for message in outgoing {
                let template = &pending[0].0;
                match self.send_once(&message, template, journal, actor).await {
                    Ok(sent) => {
                        for section in &message.notification.sections {
                            sent_for
                                .entry(section.message_id.to_string())
                                .or_default()
                                .push(message.notification.message_id.to_string());
                        }
                        results.push((message, sent));
                    }
                    Err(err) => {
                        tracing::warn!(channel = %message.channel, error = %err, "notification not delivered");
                        alert_failed = true;
                        // A retryable failure wins: the redelivery sends what is missing.
                        failure = Some(match failure {
                            Some(previous) if previous.is_retryable() => previous,
                            _ => err,
                        });
                    }
                }
            }
            if alert_failed {
                continue;
            }
            for (task, _) in &pending {
                let messages = sent_for
                    .remove(task.message_id.as_str())
                    .unwrap_or_default();
                // A task no channel carried is recorded as failed, never as done unsent.
                let outcome = if messages.is_empty() {
                    let recipients = pending
                        .iter()
                        .find(|(t, _)| t.message_id == task.message_id)
                        .map(|(_, r)| r.join(", "))
                        .unwrap_or_default();
                    tracing::warn!(task = %task.message_id, recipients = %recipients, "no notification channel covers the task's recipients");
                    RunOutcome::Failed {
                        error: format!(
                            "no notification channel covers its recipients ({}); see the policy's notifications.routes",
                            if recipients.is_empty() { "none" } else { recipients.as_str() }
                        ),
                        retryable: false,
                    }
                } else {
                    RunOutcome::Done {
                        result: json!({"messages": messages}),
                        verification: Value::Null,
                    }
                };
                match journal.begin_run(&task.message_id, actor).await {
                    Ok(_) => {
                        journal.finish(&task.message_id, outcome, actor).await?;
                    }
                    // Another worker finished or holds it: its record stands.
                    Err(JournalError::IllegalTransition { .. }) => {}
                    Err(err) => return Err(err.into()),
                }
            }
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(results),
        }
    }
}

/// The related tasks of a plan that is not in the journal yet (`notify --render`): pending
/// ones with the given links.
pub fn related_from_plan(
    tasks: &[Task],
    links: impl Fn(&Task) -> Vec<(crate::journal::Verdict, Url)>,
) -> Vec<RelatedTask> {
    tasks
        .iter()
        .filter(|t| t.queue != Queue::Notification)
        .map(|t| {
            let mut related = RelatedTask::from_task(t);
            if let RelatedState::Pending(found) = &mut related.state {
                *found = links(t);
            }
            related
        })
        .collect()
}
