//! The HTML pages of the decision endpoint: the task and its change with Approve / Reject
//! buttons (forms that POST), a done change with its Undo or Keep button, the outcome, and
//! refusals. Everything shown is escaped.

use std::fmt::Write;

use super::{DecisionView, LinkKind, Refusal};
use crate::journal::{JournalEntry, RawJson};
use crate::workers::undo::UndoReport;

/// Escapes text for HTML element content and attribute values.
pub(super) fn escape(text: &str) -> String {
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

fn document(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<meta name=\"robots\" content=\"noindex\"><title>{title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem;line-height:1.45}}\
pre{{background:#f4f4f4;padding:1rem;overflow:auto}}dt{{font-weight:600}}dd{{margin:0 0 .5rem 0}}\
form{{display:inline-block;margin-right:1rem}}button{{font-size:1.1rem;padding:.5rem 1.5rem}}</style>\
</head><body>{body}</body></html>\n",
        title = escape(title)
    )
}

fn task_facts(entry: &JournalEntry) -> String {
    let mut out = String::from("<dl>");
    let mut fact = |name: &str, value: &str| {
        let _ = write!(out, "<dt>{}</dt><dd>{}</dd>", escape(name), escape(value));
    };
    fact("Action", entry.action.as_str());
    fact("Why", &entry.reason);
    fact("Playbook steps", &entry.steps.join(", "));
    fact("Alert", &entry.system_alert_id);
    fact("Task", entry.message_id.as_str());
    if entry.dry_run {
        fact(
            "Dry run",
            "yes: approving records what would be done and changes nothing",
        );
    }
    if !entry.recipients.is_empty() {
        fact("Recipients", &entry.recipients.join(", "));
    }
    out.push_str("</dl>");
    out
}

fn pretty(value: Option<&RawJson>) -> String {
    pretty_value(value.map(RawJson::to_value).as_ref())
}

/// [`pretty`] for a part of a recorded document.
fn pretty_value(value: Option<&serde_json::Value>) -> String {
    value
        .and_then(|v| serde_json::to_string_pretty(v).ok())
        .unwrap_or_else(|| "(none recorded)".into())
}

/// The page of a link: a pending task's facts and exact change with a form per offered
/// decision, or a done task's applied change and the state undo restores with its button.
pub(super) fn decision_page(view: &DecisionView, form_action: &str) -> String {
    let entry = &view.entry;
    let title = match view.link.kind {
        LinkKind::Approve | LinkKind::Reject => "Decide",
        LinkKind::Undo => "Undo",
        LinkKind::Confirm => "Keep",
    };
    let mut body = format!(
        "<h1>{title}: {}</h1>{}",
        escape(entry.action.as_str()),
        task_facts(entry)
    );
    match view.link.kind {
        LinkKind::Approve | LinkKind::Reject => {
            let _ = write!(
                body,
                "<h2>The exact change</h2><pre>{}</pre><p>Change hash <code>{}</code></p>",
                escape(&pretty(entry.preview.as_ref())),
                escape(&view.link.preview_hash)
            );
        }
        LinkKind::Undo | LinkKind::Confirm => {
            let preview = entry.preview.as_ref().map(RawJson::to_value);
            let summary = preview
                .as_ref()
                .and_then(|p| p.get("summary"))
                .and_then(|s| s.as_str())
                .unwrap_or("(no summary recorded)");
            let _ = write!(
                body,
                "<h2>The change that was made</h2><p>{}</p><pre>{}</pre><p>Change hash <code>{}</code></p>",
                escape(summary),
                escape(&pretty_value(
                    preview
                        .as_ref()
                        .and_then(|p| p.get("change"))
                        .or(preview.as_ref())
                )),
                escape(&view.link.preview_hash)
            );
            let _ = write!(
                body,
                "<h2>What undo restores</h2><p>The state read before the change, written back exactly:</p><pre>{}</pre>",
                escape(&pretty(entry.prior_state.as_ref()))
            );
            if view.link.kind == LinkKind::Confirm {
                body.push_str("<p>Keeping the change records that a person confirmed it: the containment expiry no longer undoes it. It can still be undone by hand.</p>");
            }
        }
    }
    if let Some(approver) = &view.approver {
        let _ = write!(
            body,
            "<p>Signed in as <strong>{}</strong>.</p>",
            escape(&approver.name)
        );
    }
    for offer in &view.offers {
        let label = match offer.kind {
            LinkKind::Approve => "Approve",
            LinkKind::Reject => "Reject",
            LinkKind::Undo => "Undo the change",
            LinkKind::Confirm => "Keep the change",
        };
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"m\" value=\"{m}\"><input type=\"hidden\" name=\"d\" value=\"{d}\">\
<input type=\"hidden\" name=\"h\" value=\"{h}\"><input type=\"hidden\" name=\"exp\" value=\"{exp}\">\
<input type=\"hidden\" name=\"sig\" value=\"{sig}\"><button type=\"submit\">{label}</button></form>",
            action = escape(form_action),
            m = escape(offer.message_id.as_str()),
            d = offer.kind.as_str(),
            h = escape(&offer.preview_hash),
            exp = offer.expires,
            sig = escape(&offer.signature),
        );
    }
    body.push_str("<p>Opening this page decides nothing; only a button does, once.</p>");
    document(&format!("{title}: {}", entry.action.as_str()), &body)
}

/// The page after a recorded decision.
pub(super) fn decided_page(entry: &JournalEntry) -> String {
    let (verdict, by) = entry
        .decision
        .as_ref()
        .map(|d| (d.verdict.as_str(), d.by.as_str()))
        .unwrap_or(("decided", "-"));
    let body = format!(
        "<h1>Recorded: {}</h1><p>Task <code>{}</code> is now <strong>{}</strong>, decided by {}.</p>{}",
        escape(verdict),
        escape(entry.message_id.as_str()),
        escape(entry.state.as_str()),
        escape(by),
        task_facts(entry)
    );
    document("Decision recorded", &body)
}

/// The page after a confirmation: the change stays.
pub(super) fn confirmed_page(entry: &JournalEntry) -> String {
    let by = entry
        .confirmation
        .as_ref()
        .map(|c| c.by.as_str())
        .unwrap_or("-");
    let body = format!(
        "<h1>Kept</h1><p>The change of task <code>{}</code> stays, confirmed by {}; the containment expiry will not undo it.</p>{}",
        escape(entry.message_id.as_str()),
        escape(by),
        task_facts(entry)
    );
    document("Change kept", &body)
}

/// The page after an undo: what was written back and what could not be restored.
pub(super) fn undone_page(report: &UndoReport) -> String {
    let mut body = format!(
        "<h1>Undone</h1><p>Task <code>{}</code> ({}) is now <strong>undone</strong>, by {}.</p><p>The change was: {}</p>",
        escape(report.message_id.as_str()),
        escape(report.action.as_str()),
        escape(&report.by),
        escape(&report.change),
    );
    body.push_str("<h2>Written back</h2><ul>");
    for sent in &report.sent {
        let _ = write!(
            body,
            "<li>{} {} → {}</li>",
            escape(&sent.method),
            escape(&sent.url),
            sent.status
        );
    }
    body.push_str("</ul>");
    if report.not_restored.is_empty() {
        body.push_str("<p>Everything recorded before the change was restored.</p>");
    } else {
        body.push_str("<h2>Not restored</h2><ul>");
        for item in &report.not_restored {
            let _ = write!(body, "<li>{}</li>", escape(item));
        }
        body.push_str("</ul>");
    }
    document("Change undone", &body)
}

/// The page of a refusal: the reason, in words.
pub(super) fn refusal_page(refusal: &Refusal) -> String {
    let body = format!(
        "<h1>Not decided</h1><p>{}</p>",
        escape(&refusal.to_string())
    );
    document("Not decided", &body)
}
