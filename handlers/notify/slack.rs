//! Slack through an incoming webhook: the notification as Block Kit (header, section, context
//! and actions blocks with URL buttons), within Slack's block limits (50 blocks, 3000
//! characters a section, 75 a button label, 150 the header).

use serde_json::{json, Value};

use super::message::{action_label, shorten, Notification};

/// Slack refuses more blocks than this in one message.
pub const MAX_BLOCKS: usize = 50;
/// Slack's limit on a section's text.
pub const MAX_SECTION_TEXT: usize = 3000;
/// Slack's limit on a header's text.
pub const MAX_HEADER_TEXT: usize = 150;
/// Slack's limit on a button's label.
pub const MAX_BUTTON_TEXT: usize = 75;
/// Slack's limit on a button's URL.
pub const MAX_URL: usize = 3000;
/// Slack's limit on the buttons of one actions block.
pub const MAX_ACTIONS_ELEMENTS: usize = 25;

/// Escapes the three characters Slack's mrkdwn reserves.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": shorten(text, MAX_SECTION_TEXT)}})
}

fn button(label: &str, url: &str, action_id: String, style: Option<&str>) -> Value {
    let mut value = json!({
        "type": "button",
        "text": {"type": "plain_text", "text": shorten(label, MAX_BUTTON_TEXT)},
        "url": url,
        "action_id": action_id,
    });
    if let Some(style) = style {
        value["style"] = json!(style);
    }
    value
}

/// The webhook body: `text` (the fallback notifications show) and `blocks`.
pub fn payload(n: &Notification) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": shorten(&n.title, MAX_HEADER_TEXT)},
    })];
    let severity = serde_json::to_value(n.alert.severity).unwrap_or(Value::Null);
    blocks.push(json!({
        "type": "context",
        "elements": [{
            "type": "mrkdwn",
            "text": shorten(&format!(
                "*{}* · {} · `{}` · message `{}`",
                escape(&n.alert.alert_type),
                severity.as_str().unwrap_or(""),
                escape(&n.alert.resource),
                n.message_id
            ), MAX_SECTION_TEXT),
        }],
    }));
    if n.dry_run {
        blocks.push(section(
            ":warning: Dry run: nothing was changed; the journal shows the exact requests.",
        ));
    }
    for s in &n.sections {
        let mut text = format!(
            "*{}* ({})\n{}",
            action_label(s.action.as_str()),
            s.steps.join(", "),
            escape(&s.reason)
        );
        for (key, value) in &s.facts {
            text.push_str(&format!("\n• {}: {}", escape(key), escape(value)));
        }
        blocks.push(section(&text));
    }
    if !n.checklist.is_empty() {
        let mut text = "*Checklist*".to_string();
        for (index, step) in n.checklist.iter().enumerate() {
            text.push_str(&format!("\n{}. {}", index + 1, escape(step)));
        }
        blocks.push(section(&text));
    }
    let mut tail = Vec::new();
    for pending in &n.pending {
        tail.push(section(&format!(
            "*Waiting for a decision: {}* ({}){}\n{}",
            action_label(&pending.action),
            pending.steps.join(", "),
            if pending.target.is_empty() {
                String::new()
            } else {
                format!(" on `{}`", escape(&pending.target))
            },
            escape(&shorten(&pending.reason, 1000))
        )));
        let mut elements = Vec::new();
        let id = pending.message_id.as_str();
        if let Some(url) = &pending.approve {
            elements.push(button(
                "Approve",
                url.as_str(),
                format!("approve-{id}"),
                Some("primary"),
            ));
        }
        if let Some(url) = &pending.reject {
            elements.push(button(
                "Reject",
                url.as_str(),
                format!("reject-{id}"),
                Some("danger"),
            ));
        }
        if elements.is_empty() {
            tail.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": format!("Decide with `defender-responder decide {id} approve|reject`.")}]}));
        } else {
            tail.push(json!({"type": "actions", "elements": elements}));
        }
    }
    if !n.done.is_empty() {
        let mut text = "*Done*".to_string();
        for change in &n.done {
            text.push_str(&format!(
                "\n• {} ({}){}: {}",
                action_label(&change.action),
                change.steps.join(", "),
                if change.dry_run { " [dry run]" } else { "" },
                escape(&change.summary)
            ));
            if let Some(undo) = &change.undo {
                text.push_str(&format!(" Undo: {}", escape(undo)));
            }
        }
        tail.push(section(&text));
    }
    let mut links = Vec::new();
    if let Some(url) = &n.portal_url {
        links.push(button(
            "Open in Defender for Cloud",
            url,
            "portal".into(),
            None,
        ));
    }
    if let Some(url) = &n.journal_url {
        links.push(button(
            "Journal entry",
            url.as_str(),
            "journal".into(),
            None,
        ));
    }
    if !links.is_empty() {
        tail.push(json!({"type": "actions", "elements": links}));
    }
    // Keep every decision and link: drop reading blocks from the end of the body instead.
    let room = MAX_BLOCKS.saturating_sub(tail.len() + 1);
    if blocks.len() > room {
        blocks.truncate(room);
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn", "text": "Shortened to fit Slack: the journal entry has everything."}]}));
    }
    blocks.extend(tail);
    json!({
        "text": shorten(&format!("{} ({} waiting for a decision)", n.title, n.pending.len()), MAX_SECTION_TEXT),
        "blocks": blocks,
    })
}
