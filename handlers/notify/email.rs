//! E-mail: the notification as HTML (every value escaped), and the Microsoft Graph `sendMail`
//! request body that carries it with the message id in an `X-DR-Message-Id` header.

use serde_json::{json, Value};

use super::message::{action_label, fact_label, Notification};

/// The header that carries the message id (Graph accepts custom headers starting with `X-`).
pub const MESSAGE_ID_HEADER: &str = "X-DR-Message-Id";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The subject line.
pub fn subject(n: &Notification) -> String {
    let mut subject = format!("[Defender] {}", n.title);
    if !n.pending.is_empty() {
        subject.push_str(&format!(" — {} waiting for a decision", n.pending.len()));
    }
    if n.dry_run {
        subject.push_str(" (dry run)");
    }
    subject
}

fn link_button(url: &str, label: &str, colour: &str) -> String {
    format!(
        "<a href=\"{}\" style=\"display:inline-block;padding:6px 14px;margin:2px 6px 2px 0;background:{colour};color:#ffffff;text-decoration:none;border-radius:3px\">{}</a>",
        escape(url),
        escape(label)
    )
}

/// The HTML body.
pub fn html(n: &Notification) -> String {
    let severity = serde_json::to_value(n.alert.severity).unwrap_or(Value::Null);
    let status = serde_json::to_value(n.alert.status).unwrap_or(Value::Null);
    let mut out = String::new();
    out.push_str("<!DOCTYPE html><html><body style=\"font-family:Segoe UI,Helvetica,Arial,sans-serif;font-size:14px\">");
    out.push_str(&format!("<h2>{}</h2>", escape(&n.title)));
    out.push_str("<table cellpadding=\"3\">");
    for (label, value) in [
        ("Alert", n.alert.alert_type.as_str()),
        ("Severity", severity.as_str().unwrap_or("")),
        ("Status", status.as_str().unwrap_or("")),
        ("Resource", n.alert.resource.as_str()),
        ("Alert id", n.alert.system_alert_id.as_str()),
        ("Message id", n.message_id.as_str()),
    ] {
        out.push_str(&format!(
            "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
            escape(label),
            escape(value)
        ));
    }
    out.push_str("</table>");
    if n.dry_run {
        out.push_str("<p><strong>Dry run:</strong> nothing was changed; the journal shows the exact requests.</p>");
    }
    for s in &n.sections {
        out.push_str(&format!(
            "<h3>{} ({})</h3><p>{}</p>",
            escape(&action_label(s.action.as_str())),
            escape(&s.steps.join(", ")),
            escape(&s.reason)
        ));
        if !s.facts.is_empty() {
            out.push_str("<table cellpadding=\"2\">");
            for (key, value) in &s.facts {
                out.push_str(&format!(
                    "<tr><th align=\"left\">{}</th><td>{}</td></tr>",
                    escape(&fact_label(key)),
                    escape(value)
                ));
            }
            out.push_str("</table>");
        }
    }
    if !n.checklist.is_empty() {
        out.push_str("<h3>Checklist</h3><ol>");
        for step in &n.checklist {
            out.push_str(&format!("<li>{}</li>", escape(step)));
        }
        out.push_str("</ol>");
    }
    if !n.pending.is_empty() {
        out.push_str(&format!(
            "<h3>Waiting for a decision ({})</h3>",
            n.pending.len()
        ));
        for p in &n.pending {
            out.push_str(&format!(
                "<p><strong>{}</strong> ({}){}<br>{}<br>",
                escape(&action_label(&p.action)),
                escape(&p.steps.join(", ")),
                if p.target.is_empty() {
                    String::new()
                } else {
                    format!(" on <code>{}</code>", escape(&p.target))
                },
                escape(&p.reason)
            ));
            match (&p.approve, &p.reject) {
                (None, None) => out.push_str(&format!(
                    "Decide with <code>defender-responder decide {} approve|reject</code>.",
                    escape(p.message_id.as_str())
                )),
                (approve, reject) => {
                    if let Some(url) = approve {
                        out.push_str(&link_button(url.as_str(), "Approve", "#107c10"));
                    }
                    if let Some(url) = reject {
                        out.push_str(&link_button(url.as_str(), "Reject", "#a4262c"));
                    }
                }
            }
            out.push_str("</p>");
        }
        out.push_str("<p style=\"color:#605e5c\">Each link opens a page that shows the exact change; only the button on that page decides.</p>");
    }
    if !n.done.is_empty() {
        out.push_str("<h3>Done</h3><ul>");
        for d in &n.done {
            out.push_str(&format!(
                "<li><strong>{}</strong> ({}){}: {}",
                escape(&action_label(&d.action)),
                escape(&d.steps.join(", ")),
                if d.dry_run { " [dry run]" } else { "" },
                escape(&d.summary)
            ));
            if let Some(undo) = &d.undo {
                out.push_str(&format!("<br>Undo: {}", escape(undo)));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("<p>");
    if let Some(url) = &n.portal_url {
        out.push_str(&link_button(url, "Open in Defender for Cloud", "#0078d4"));
    }
    if let Some(url) = &n.journal_url {
        out.push_str(&link_button(url.as_str(), "Journal entry", "#605e5c"));
    }
    out.push_str("</p></body></html>");
    out
}

/// The `POST /users/{sender}/sendMail` body for one recipient.
pub fn send_mail_body(n: &Notification, recipient: &str) -> Value {
    json!({
        "message": {
            "subject": subject(n),
            "body": {"contentType": "HTML", "content": html(n)},
            "toRecipients": [{"emailAddress": {"address": recipient}}],
            "internetMessageHeaders": [{"name": MESSAGE_ID_HEADER, "value": n.message_id.as_str()}],
        },
        "saveToSentItems": false,
    })
}
