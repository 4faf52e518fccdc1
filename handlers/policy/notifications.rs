//! The policy's `notifications` section: the channels people read and which recipient, severity
//! and queue goes to which channel. Secrets (webhook URLs, signing keys) are never here: each
//! channel's secrets are app settings named after it (`config::notify`).

use serde::Deserialize;

use crate::domain::{Queue, Severity};

/// How a channel delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChannelKind {
    /// A Teams Workflows webhook ("When a Teams webhook request is received"): an Adaptive Card.
    Teams,
    /// A Slack incoming webhook: Block Kit.
    Slack,
    /// E-mail through Microsoft Graph `sendMail`, one message per recipient address.
    Email,
    /// A generic webhook signed per Standard Webhooks.
    Webhook,
}

impl ChannelKind {
    /// Parses `teams`, `slack`, `email` or `webhook`.
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "teams" => Some(ChannelKind::Teams),
            "slack" => Some(ChannelKind::Slack),
            "email" | "mail" => Some(ChannelKind::Email),
            "webhook" => Some(ChannelKind::Webhook),
            _ => None,
        }
    }

    /// The lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::Teams => "teams",
            ChannelKind::Slack => "slack",
            ChannelKind::Email => "email",
            ChannelKind::Webhook => "webhook",
        }
    }

    /// Whether one message goes to each recipient (e-mail) rather than one to the channel for
    /// all the recipients routed to it (Teams, Slack, webhook).
    pub fn per_recipient(self) -> bool {
        self == ChannelKind::Email
    }
}

/// One channel as the policy names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelSpec {
    /// The channel's name (letters, digits, `-`, `_`): routes refer to it, and its secrets are
    /// the app settings `RESPONDER_NOTIFY_<NAME>_*`.
    pub name: String,
    /// How it delivers.
    pub kind: ChannelKind,
    /// E-mail only: the mailbox that sends (`POST /users/{sender}/sendMail`).
    pub sender: Option<String>,
}

/// One routing rule: when every condition given holds, the recipient's message goes to the
/// rule's channels. A rule without conditions matches everything.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Recipients it covers (addresses, case-insensitive; `*@domain` for a whole domain);
    /// empty: any recipient.
    pub recipients: Vec<String>,
    /// The lowest alert severity it covers; `None`: any.
    pub min_severity: Option<Severity>,
    /// Queues it covers: the message is about a task of one of them (every notification is on
    /// `notification`; a pending or done containment task is on `isolation` or `rotation`).
    /// Empty: any.
    pub queues: Vec<Queue>,
    /// The channels (by name).
    pub channels: Vec<String>,
}

impl Route {
    /// Whether the rule covers this recipient, severity and set of queues.
    pub fn covers(&self, recipient: &str, severity: Severity, queues: &[Queue]) -> bool {
        let recipient_ok = self.recipients.is_empty()
            || self
                .recipients
                .iter()
                .any(|pattern| recipient_matches(pattern, recipient));
        let severity_ok = self.min_severity.is_none_or(|min| severity >= min);
        let queue_ok = self.queues.is_empty() || self.queues.iter().any(|q| queues.contains(q));
        recipient_ok && severity_ok && queue_ok
    }
}

/// `pattern` is an address or `*@domain`; both compare case-insensitively.
pub fn recipient_matches(pattern: &str, recipient: &str) -> bool {
    let pattern = pattern.trim();
    match pattern.strip_prefix("*@") {
        Some(domain) => recipient
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain)),
        None => pattern.eq_ignore_ascii_case(recipient.trim()),
    }
}

/// The policy's `notifications` section, validated.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationPolicy {
    /// The channels.
    pub channels: Vec<ChannelSpec>,
    /// Routing rules; every matching rule adds its channels.
    pub routes: Vec<Route>,
    /// Channels for a recipient no rule covers.
    pub default_channels: Vec<String>,
}

impl NotificationPolicy {
    /// The channel of that name.
    pub fn channel(&self, name: &str) -> Option<&ChannelSpec> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// The channel names a recipient's message goes to, in policy order, without repeats.
    pub fn channels_for(&self, recipient: &str, severity: Severity, queues: &[Queue]) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut matched = false;
        for route in &self.routes {
            if route.covers(recipient, severity, queues) {
                matched = true;
                for name in &route.channels {
                    if !names.contains(&name.as_str()) {
                        names.push(name);
                    }
                }
            }
        }
        if !matched {
            for name in &self.default_channels {
                if !names.contains(&name.as_str()) {
                    names.push(name);
                }
            }
        }
        names
    }
}

/// The section as written in the policy file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotificationsEntry {
    /// The channels.
    #[serde(default)]
    pub channels: Vec<ChannelEntry>,
    /// Routing rules.
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    /// Channels for recipients no rule covers.
    #[serde(default)]
    pub default_channels: Vec<String>,
}

/// One channel as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelEntry {
    /// Its name.
    pub name: String,
    /// `teams`, `slack`, `email` or `webhook`.
    pub kind: String,
    /// E-mail: the sending mailbox.
    #[serde(default)]
    pub sender: Option<String>,
}

/// One route as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteEntry {
    /// Recipients (addresses or `*@domain`).
    #[serde(default)]
    pub recipients: Vec<String>,
    /// Lowest severity.
    #[serde(default)]
    pub min_severity: Option<String>,
    /// Queues.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Channel names.
    pub channels: Vec<String>,
}

impl NotificationsEntry {
    /// Validates the section; each error names its entry (`notifications.routes[1].channels[0]`).
    pub fn into_policy(self, errors: &mut Vec<String>) -> NotificationPolicy {
        let mut channels: Vec<ChannelSpec> = Vec::new();
        for (index, entry) in self.channels.into_iter().enumerate() {
            let at = format!("notifications.channels[{index}]");
            let name = entry.name.trim().to_string();
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                errors.push(format!(
                    "{at}.name: {:?} must be letters, digits, '-' or '_'",
                    entry.name
                ));
                continue;
            }
            if channels.iter().any(|c| c.name.eq_ignore_ascii_case(&name)) {
                errors.push(format!("{at}.name: {name:?} is named twice"));
                continue;
            }
            let Some(kind) = ChannelKind::parse(&entry.kind) else {
                errors.push(format!(
                    "{at}.kind: {:?} is not teams, slack, email or webhook",
                    entry.kind
                ));
                continue;
            };
            let sender = entry.sender.map(|s| s.trim().to_string());
            match (kind, &sender) {
                (ChannelKind::Email, None) => {
                    errors.push(format!(
                        "{at}.sender: an email channel needs the sending mailbox"
                    ));
                    continue;
                }
                (ChannelKind::Email, Some(address)) if !address.contains('@') => {
                    errors.push(format!("{at}.sender: {address:?} is not a mailbox address"));
                    continue;
                }
                (ChannelKind::Email, Some(_)) => {}
                (_, Some(_)) => {
                    errors.push(format!("{at}.sender: only an email channel has a sender"));
                    continue;
                }
                (_, None) => {}
            }
            channels.push(ChannelSpec { name, kind, sender });
        }
        let known = |name: &str| channels.iter().any(|c| c.name == name);
        let mut routes = Vec::new();
        for (index, entry) in self.routes.into_iter().enumerate() {
            let at = format!("notifications.routes[{index}]");
            if entry.channels.is_empty() {
                errors.push(format!("{at}.channels: names no channel"));
            }
            for (c, name) in entry.channels.iter().enumerate() {
                if !known(name) {
                    errors.push(format!("{at}.channels[{c}]: {name:?} is not a channel"));
                }
            }
            let min_severity = match entry.min_severity.as_deref() {
                None => None,
                Some(text) => match Severity::parse(text) {
                    Some(severity) => Some(severity),
                    None => {
                        errors.push(format!(
                            "{at}.min_severity: {text:?} is not Informational, Low, Medium or High"
                        ));
                        None
                    }
                },
            };
            let mut queues = Vec::new();
            for (q, text) in entry.queues.iter().enumerate() {
                match Queue::ALL
                    .into_iter()
                    .find(|queue| queue.as_str().eq_ignore_ascii_case(text.trim()))
                {
                    Some(queue) => queues.push(queue),
                    None => errors.push(format!(
                        "{at}.queues[{q}]: {text:?} is not notification, isolation or rotation"
                    )),
                }
            }
            for (r, pattern) in entry.recipients.iter().enumerate() {
                if !pattern.contains('@') {
                    errors.push(format!(
                        "{at}.recipients[{r}]: {pattern:?} is not an address or *@domain"
                    ));
                }
            }
            routes.push(Route {
                recipients: entry.recipients,
                min_severity,
                queues,
                channels: entry.channels,
            });
        }
        for (index, name) in self.default_channels.iter().enumerate() {
            if !known(name) {
                errors.push(format!(
                    "notifications.default_channels[{index}]: {name:?} is not a channel"
                ));
            }
        }
        NotificationPolicy {
            channels,
            routes,
            default_channels: self.default_channels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(json: &str) -> Result<NotificationPolicy, Vec<String>> {
        let entry: NotificationsEntry = serde_json::from_str(json).expect("shape");
        let mut errors = Vec::new();
        let policy = entry.into_policy(&mut errors);
        if errors.is_empty() {
            Ok(policy)
        } else {
            Err(errors)
        }
    }

    #[test]
    fn routes_by_recipient_severity_and_queue_with_a_default() {
        let policy = section(
            r#"{
              "channels": [
                {"name": "soc-teams", "kind": "teams"},
                {"name": "mail", "kind": "email", "sender": "responder@contoso.com"},
                {"name": "oncall", "kind": "slack"},
                {"name": "soar", "kind": "webhook"}
              ],
              "routes": [
                {"recipients": ["secops@contoso.com"], "channels": ["soc-teams", "mail"]},
                {"recipients": ["*@contoso.com"], "min_severity": "High", "channels": ["oncall"]},
                {"queues": ["rotation"], "channels": ["soar"]}
              ],
              "default_channels": ["mail"]
            }"#,
        )
        .unwrap();
        let n = [Queue::Notification];
        assert_eq!(
            policy.channels_for("SecOps@contoso.com", Severity::Medium, &n),
            ["soc-teams", "mail"]
        );
        assert_eq!(
            policy.channels_for("secops@contoso.com", Severity::High, &n),
            ["soc-teams", "mail", "oncall"]
        );
        assert_eq!(
            policy.channels_for("owner@fabrikam.com", Severity::High, &n),
            ["mail"]
        );
        assert_eq!(
            policy.channels_for(
                "owner@fabrikam.com",
                Severity::Low,
                &[Queue::Notification, Queue::Rotation]
            ),
            ["soar"]
        );
        assert_eq!(policy.channel("mail").unwrap().kind, ChannelKind::Email);
    }

    #[test]
    fn every_bad_entry_is_named() {
        let errors = section(
            r#"{
              "channels": [
                {"name": "a b", "kind": "teams"},
                {"name": "mail", "kind": "email"},
                {"name": "x", "kind": "pager"},
                {"name": "t", "kind": "teams", "sender": "a@b.c"}
              ],
              "routes": [{"min_severity": "Huge", "queues": ["tickets"], "channels": ["nope"]}],
              "default_channels": ["gone"]
            }"#,
        )
        .unwrap_err();
        let all = errors.join("\n");
        for expected in [
            "notifications.channels[0].name",
            "notifications.channels[1].sender",
            "notifications.channels[2].kind",
            "notifications.channels[3].sender",
            "notifications.routes[0].channels[0]: \"nope\"",
            "notifications.routes[0].min_severity",
            "notifications.routes[0].queues[0]",
            "notifications.default_channels[0]",
        ] {
            assert!(all.contains(expected), "missing {expected} in\n{all}");
        }
    }
}
