//! How `defender-responder journal` prints entries: a table for people, JSON for tools.

use std::fmt::Write;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::JournalEntry;

fn stamp(at: OffsetDateTime) -> String {
    // Whole seconds are enough on a terminal; JSON keeps the full precision.
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

fn unix_stamp(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .map(stamp)
        .unwrap_or_else(|_| seconds.to_string())
}

/// Entries as JSON (an array, pretty-printed).
pub fn render_json(entries: &[JournalEntry]) -> String {
    // Through a `Value` tree, so the documents kept as compact text are indented too.
    serde_json::to_value(entries)
        .and_then(|entries| serde_json::to_string_pretty(&entries))
        .unwrap_or_else(|_| "[]".to_string())
}

/// Entries as a table, one line per task, then each task's history indented under it when
/// `history` is set.
pub fn render_table(entries: &[JournalEntry], history: bool) -> String {
    if entries.is_empty() {
        return "no journal entries\n".to_string();
    }
    let rows: Vec<[String; 6]> = entries
        .iter()
        .map(|entry| {
            [
                stamp(entry.updated_at),
                entry.state.to_string(),
                entry.action.to_string(),
                entry.message_id.to_string(),
                entry.system_alert_id.clone(),
                entry
                    .decision
                    .as_ref()
                    .map(|d| format!("{} by {}", d.verdict, d.by))
                    .unwrap_or_else(|| "-".to_string()),
            ]
        })
        .collect();
    let headers = ["UPDATED", "STATE", "ACTION", "TASK", "ALERT", "DECISION"];
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let last = cells.len() - 1;
        for (index, (cell, width)) in cells.iter().zip(widths).enumerate() {
            if index == last {
                let _ = write!(out, "{cell}");
            } else {
                let _ = write!(out, "{cell:<width$}  ");
            }
        }
        out.push('\n');
    };
    line(&mut out, &headers);
    for (entry, row) in entries.iter().zip(&rows) {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        line(&mut out, &cells);
        if history {
            for event in &entry.history {
                let from = event.from.map(|s| s.as_str()).unwrap_or("-");
                let note = event
                    .note
                    .as_deref()
                    .map(|note| format!(": {note}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "    {}  {from} -> {}  by {}{note}",
                    stamp(event.at),
                    event.to,
                    event.actor
                );
            }
            if let Some(error) = &entry.error {
                let _ = writeln!(out, "    error: {error}");
            }
            if let Some(follow_up) = &entry.follow_up {
                let when = match follow_up.due_at {
                    Some(due) => format!("due at {}", unix_stamp(due)),
                    None => "failed for good".to_string(),
                };
                let _ = writeln!(
                    out,
                    "    follow-up: {} {when} (attempts {})",
                    follow_up.step_name(),
                    follow_up.attempts
                );
            }
        }
    }
    out
}
