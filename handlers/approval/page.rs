//! The HTML pages of the decision endpoint: the task and its change with Approve / Reject
//! buttons (forms that POST), the outcome, and refusals. Everything shown is escaped.

use std::fmt::Write;

use super::{DecisionView, Refusal};
use crate::journal::{JournalEntry, Verdict};

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

/// The page for a pending task: its facts, the exact change, and a form per offered decision.
pub(super) fn decision_page(view: &DecisionView, form_action: &str) -> String {
    let entry = &view.entry;
    let mut body = format!(
        "<h1>Decide: {}</h1>{}",
        escape(entry.action.as_str()),
        task_facts(entry)
    );
    let preview = entry
        .preview
        .as_ref()
        .and_then(|p| serde_json::to_string_pretty(p).ok())
        .unwrap_or_else(|| "(none recorded)".into());
    let _ = write!(
        body,
        "<h2>The exact change</h2><pre>{}</pre><p>Change hash <code>{}</code></p>",
        escape(&preview),
        escape(&view.link.preview_hash)
    );
    if let Some(approver) = &view.approver {
        let _ = write!(
            body,
            "<p>Signed in as <strong>{}</strong>.</p>",
            escape(&approver.name)
        );
    }
    for offer in &view.offers {
        let label = match offer.verdict {
            Verdict::Approve => "Approve",
            Verdict::Reject => "Reject",
        };
        let _ = write!(
            body,
            "<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"m\" value=\"{m}\"><input type=\"hidden\" name=\"d\" value=\"{d}\">\
<input type=\"hidden\" name=\"h\" value=\"{h}\"><input type=\"hidden\" name=\"exp\" value=\"{exp}\">\
<input type=\"hidden\" name=\"sig\" value=\"{sig}\"><button type=\"submit\">{label}</button></form>",
            action = escape(form_action),
            m = escape(offer.message_id.as_str()),
            d = offer.verdict.as_str(),
            h = escape(&offer.preview_hash),
            exp = offer.expires,
            sig = escape(&offer.signature),
        );
    }
    body.push_str("<p>Opening this page decides nothing; only a button does, once.</p>");
    document(&format!("Decide: {}", entry.action.as_str()), &body)
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

/// The page of a refusal: the reason, in words.
pub(super) fn refusal_page(refusal: &Refusal) -> String {
    let body = format!(
        "<h1>Not decided</h1><p>{}</p>",
        escape(&refusal.to_string())
    );
    document("Not decided", &body)
}
