//! Teams through a Workflows webhook: the notification as an Adaptive Card 1.5 inside a
//! `message` envelope, with `Action.OpenUrl` buttons (a workflow-posted card has no bot to take
//! `Action.Submit`), trimmed to the 28 KB webhook limit while keeping every button.

use serde_json::{json, Value};

use super::message::{action_label, fact_label, shorten, Notification};

/// Teams refuses webhook messages above 28 KB.
pub const MAX_BYTES: usize = 28 * 1024;

/// How much a rendering keeps; each level drops more text, never a decision button.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Detail {
    /// Everything.
    Full,
    /// Reasons and facts shortened.
    Short,
    /// No facts, reasons cut to a line, checklist shortened.
    Brief,
    /// The title, the buttons and the journal link.
    Minimal,
}

/// The webhook body for `notification`, at most `max_bytes` long when it can be (the buttons
/// and links alone always stay).
pub fn payload(notification: &Notification, max_bytes: usize) -> Value {
    let mut body = Value::Null;
    for detail in [Detail::Full, Detail::Short, Detail::Brief, Detail::Minimal] {
        body = envelope(card(notification, detail));
        if body.to_string().len() <= max_bytes {
            return body;
        }
    }
    body
}

/// The card alone (the `content` of the attachment), at full detail.
pub fn full_card(notification: &Notification) -> Value {
    card(notification, Detail::Full)
}

fn envelope(card: Value) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": card,
        }]
    })
}

fn text(text: impl Into<String>) -> Value {
    json!({"type": "TextBlock", "text": text.into(), "wrap": true})
}

fn card(n: &Notification, detail: Detail) -> Value {
    let (reason_max, fact_max, checklist_max) = match detail {
        Detail::Full => (usize::MAX, usize::MAX, usize::MAX),
        Detail::Short => (600, 200, 400),
        Detail::Brief => (160, 0, 160),
        Detail::Minimal => (0, 0, 0),
    };
    let mut body = vec![
        json!({
            "type": "TextBlock",
            "text": n.title,
            "weight": "Bolder",
            "size": "Medium",
            "wrap": true,
            "style": "heading",
        }),
        json!({
            "type": "FactSet",
            "facts": header_facts(n),
        }),
    ];
    if n.dry_run {
        body.push(json!({
            "type": "TextBlock",
            "text": "Dry run: nothing was changed; the journal shows the exact requests.",
            "wrap": true,
            "color": "Warning",
        }));
    }
    if detail < Detail::Minimal {
        for section in &n.sections {
            let mut items = vec![json!({
                "type": "TextBlock",
                "text": format!("{} ({})", action_label(section.action.as_str()), section.steps.join(", ")),
                "weight": "Bolder",
                "wrap": true,
            })];
            items.push(text(shorten(&section.reason, reason_max)));
            if fact_max > 0 && !section.facts.is_empty() {
                let facts: Vec<Value> = section
                    .facts
                    .iter()
                    .map(|(k, v)| json!({"title": fact_label(k), "value": shorten(v, fact_max)}))
                    .collect();
                items.push(json!({"type": "FactSet", "facts": facts}));
            }
            body.push(json!({"type": "Container", "separator": true, "items": items}));
        }
        if !n.checklist.is_empty() {
            let mut items = vec![json!({
                "type": "TextBlock",
                "text": "Checklist",
                "weight": "Bolder",
                "wrap": true,
            })];
            for (index, step) in n.checklist.iter().enumerate() {
                items.push(text(format!(
                    "{}. {}",
                    index + 1,
                    shorten(step, checklist_max)
                )));
            }
            body.push(json!({"type": "Container", "separator": true, "items": items}));
        }
    }
    if !n.pending.is_empty() {
        body.push(json!({
            "type": "TextBlock",
            "text": format!("Waiting for a decision ({})", n.pending.len()),
            "weight": "Bolder",
            "separator": true,
            "wrap": true,
        }));
        for pending in &n.pending {
            let mut items = vec![text(format!(
                "**{}** ({}){}",
                action_label(&pending.action),
                pending.steps.join(", "),
                if pending.target.is_empty() {
                    String::new()
                } else {
                    format!(" on {}", pending.target)
                }
            ))];
            if detail < Detail::Minimal {
                items.push(text(shorten(&pending.reason, reason_max.min(400))));
            }
            let mut buttons = Vec::new();
            if let Some(url) = &pending.approve {
                buttons.push(json!({"type": "Action.OpenUrl", "title": "Approve", "url": url.as_str(), "style": "positive"}));
            }
            if let Some(url) = &pending.reject {
                buttons.push(json!({"type": "Action.OpenUrl", "title": "Reject", "url": url.as_str(), "style": "destructive"}));
            }
            if buttons.is_empty() {
                items.push(text(format!(
                    "Decide with `defender-responder decide {} approve|reject`.",
                    pending.message_id
                )));
            } else {
                items.push(json!({"type": "ActionSet", "actions": buttons}));
            }
            body.push(json!({"type": "Container", "items": items}));
        }
    }
    if !n.done.is_empty() {
        let mut items = vec![json!({
            "type": "TextBlock",
            "text": "Done",
            "weight": "Bolder",
            "wrap": true,
        })];
        for change in &n.done {
            let mut line = format!(
                "**{}** ({}){}: {}",
                action_label(&change.action),
                change.steps.join(", "),
                if change.dry_run { " [dry run]" } else { "" },
                shorten(&change.summary, reason_max.clamp(80, 300))
            );
            if let Some(undo) = &change.undo {
                line.push_str(&format!(" Undo: {}", shorten(undo, 300)));
            }
            items.push(text(line));
        }
        body.push(json!({"type": "Container", "separator": true, "items": items}));
    }
    if detail > Detail::Full {
        body.push(json!({
            "type": "TextBlock",
            "text": "Shortened to fit Teams: the journal entry has everything.",
            "isSubtle": true,
            "wrap": true,
        }));
    }
    let mut actions = Vec::new();
    if let Some(url) = &n.portal_url {
        actions.push(
            json!({"type": "Action.OpenUrl", "title": "Open in Defender for Cloud", "url": url}),
        );
    }
    if let Some(url) = &n.journal_url {
        actions
            .push(json!({"type": "Action.OpenUrl", "title": "Journal entry", "url": url.as_str()}));
    }
    let mut card = json!({
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.5",
        "msteams": {"width": "Full"},
        "body": body,
    });
    if !actions.is_empty() {
        card["actions"] = Value::Array(actions);
    }
    card
}

fn header_facts(n: &Notification) -> Vec<Value> {
    let severity = serde_json::to_value(n.alert.severity).unwrap_or(Value::Null);
    let status = serde_json::to_value(n.alert.status).unwrap_or(Value::Null);
    vec![
        json!({"title": "Alert", "value": n.alert.alert_type}),
        json!({"title": "Severity", "value": severity.as_str().unwrap_or("")}),
        json!({"title": "Status", "value": status.as_str().unwrap_or("")}),
        json!({"title": "Resource", "value": n.alert.resource}),
        json!({"title": "Alert id", "value": n.alert.system_alert_id}),
        json!({"title": "Message id", "value": n.message_id.as_str()}),
    ]
}
