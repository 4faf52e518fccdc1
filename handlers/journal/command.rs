//! The operator commands over the journal: `journal` (show) and `decide` (approve or reject a
//! pending task, confirm a done containment).

use std::process::ExitCode;

use clap::ValueEnum;

use super::{render_json, render_table, Journal, JournalEntry, JournalError, Verdict};
use crate::cli::Format;
use crate::domain::MessageId;

/// A decision given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DecisionArg {
    /// Carry the change out.
    Approve,
    /// Do not.
    Reject,
    /// Keep a done containment: its expiry does not undo it.
    Confirm,
}

fn parse_id(text: &str) -> anyhow::Result<MessageId> {
    serde_json::from_value(serde_json::Value::String(text.trim().to_string()))
        .map_err(|_| anyhow::anyhow!("{text:?} is not a task id"))
}

/// `journal`: the entries of one task, of one alert, or the most recent ones.
pub async fn show(
    journal: &Journal,
    alert: Option<&str>,
    task: Option<&str>,
    format: Format,
    limit: usize,
) -> anyhow::Result<ExitCode> {
    let entries: Vec<JournalEntry> = match (task, alert) {
        (Some(task), _) => {
            let id = parse_id(task)?;
            match journal.get(&id).await? {
                Some(entry) => vec![entry],
                None => anyhow::bail!("no journal entry for task {id}"),
            }
        }
        (None, Some(alert)) => journal.for_alert(alert).await?,
        (None, None) => journal.recent(limit).await?,
    };
    match format {
        Format::Json => println!("{}", render_json(&entries)),
        Format::Table => print!(
            "{}",
            render_table(&entries, task.is_some() || alert.is_some())
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// `decide`: an operator's decision on a pending task, recorded as by `operator:<by>`.
/// `preview_hash`, when given, binds the decision to the change the operator reviewed.
pub async fn decide(
    journal: &Journal,
    task: &str,
    decision: DecisionArg,
    by: &str,
    preview_hash: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let id = parse_id(task)?;
    let actor = format!("operator:{by}");
    let verdict = match decision {
        DecisionArg::Approve => Verdict::Approve,
        DecisionArg::Reject => Verdict::Reject,
        DecisionArg::Confirm => return confirm(journal, &id, &actor).await,
    };
    match journal.decide(&id, verdict, preview_hash, &actor).await {
        Ok(entry) => {
            print!("{}", render_table(std::slice::from_ref(&entry), true));
            Ok(ExitCode::SUCCESS)
        }
        Err(
            err @ (JournalError::IllegalTransition { .. }
            | JournalError::PreviewChanged { .. }
            | JournalError::NotFound(_)),
        ) => {
            eprintln!("error: not decided: {err}");
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}

/// `decide TASK confirm`: a person's word that a done containment stays (its expiry does not
/// undo it). Refused (exit 2) unless the task is done.
async fn confirm(journal: &Journal, id: &MessageId, actor: &str) -> anyhow::Result<ExitCode> {
    match journal.confirm(id, actor).await {
        Ok(entry) => {
            if let Some(confirmed) = &entry.confirmation {
                println!(
                    "confirmed: {id} stays in place (confirmed by {})",
                    confirmed.by
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(err @ (JournalError::IllegalTransition { .. } | JournalError::NotFound(_))) => {
            eprintln!("error: not confirmed: {err}");
            Ok(ExitCode::from(2))
        }
        Err(err) => Err(err.into()),
    }
}
