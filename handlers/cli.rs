//! The command line: `serve` (default), `plan`, `queues`, `send`, and the operator commands
//! over the journal and the workers (`journal`, `decide`, `undo`, `work`, `notify`).

mod table;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::{json, Value};

use crate::adapters::{EmbeddedStore, MemoryLedger};
use crate::config::Config;
use crate::decode::decode_body;
use crate::domain::Queue;
use crate::error::Error;
use crate::pipeline::{EventReport, Pipeline};
use crate::policy::Policy;
use crate::services::Registry;

/// Automated incident response for Microsoft Defender for Cloud alerts.
#[derive(Debug, Parser)]
#[command(name = "defender-responder", version, about)]
pub struct Cli {
    /// What to do (default: serve, as the Functions host starts it).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the custom handler HTTP server (what the Functions host starts).
    Serve,
    /// Decode, route and plan alert files offline; print the plans. Publishes nothing.
    Plan {
        /// Alert delivery files (Event Grid arrays, CloudEvents, bare alerts), in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Output format (default: table on a terminal, JSON otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Show how many tasks each queue of the embedded store holds, and peek at them.
    Queues {
        /// How many messages of each queue to show.
        #[arg(long, default_value_t = 3)]
        peek: usize,
        /// Output format (default: table on a terminal, JSON otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Post alert files to a running handler.
    Send {
        /// Alert delivery files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Base URL of the handler (or of `func start`, e.g. http://localhost:7071).
        #[arg(long, default_value = "http://127.0.0.1:3000")]
        url: String,
        /// How to deliver.
        #[arg(long = "as", value_enum, default_value_t = SendMode::Host)]
        mode: SendMode,
        /// With `--as host`: send each event as a JSON string holding JSON (the host's other form).
        #[arg(long)]
        string_form: bool,
        /// Report progress on stderr (the default when stderr is a terminal).
        #[arg(long)]
        progress: bool,
    },
    /// Show the journal: every task's states, decisions and results.
    Journal {
        /// Only the tasks of this alert (its systemAlertId).
        #[arg(long)]
        alert: Option<String>,
        /// Only this task (its message id), with its whole history.
        #[arg(long)]
        task: Option<String>,
        /// table or json (default: table on a terminal, json otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
        /// How many of the most recent tasks to show without --alert or --task.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Notification channels: print what a channel would send for an alert file, or send a
    /// sample to a configured channel.
    #[command(group(clap::ArgGroup::new("what").required(true).args(["render", "test"])))]
    Notify {
        /// Print the rendered notification for this alert file (no network).
        #[arg(long, value_name = "FILE")]
        render: Option<PathBuf>,
        /// With --render: teams, slack, email or webhook.
        #[arg(long, value_enum, default_value_t = RenderChannel::Teams)]
        channel: RenderChannel,
        /// With --render --channel email: the whole Graph sendMail body as JSON, not the HTML.
        #[arg(long)]
        json: bool,
        /// Send a sample notification to this channel of the policy.
        #[arg(long, value_name = "CHANNEL")]
        test: Option<String>,
        /// With --test on an e-mail channel: the address to send to.
        #[arg(long)]
        to: Option<String>,
    },
    /// Run the workers on the embedded queues of a stopped handler: carry out (or record)
    /// every task queued now, then stop.
    Work {
        /// Drain the queues once and stop (the only mode; `serve` runs the workers itself).
        #[arg(long, required = true)]
        once: bool,
        /// table or json (default: table on a terminal, json otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
    /// Approve or reject a task waiting for a decision, or confirm a done containment so
    /// that its expiry does not undo it, as an operator.
    Decide {
        /// The task's message id.
        task: String,
        /// approve, reject, or (on a done task) confirm.
        #[arg(value_enum)]
        decision: crate::journal::command::DecisionArg,
        /// Who decides (recorded as operator:<name>; default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
        /// Refuse unless the task's change still has this hash (from `journal --task`).
        #[arg(long)]
        preview_hash: Option<String>,
    },
    /// Undo a done task's change: restore the state recorded before it, read it back, and
    /// print what was restored (and what could not be).
    Undo {
        /// The task's message id.
        task: String,
        /// Who undoes it (recorded as operator:<name>; default: $USER).
        #[arg(long, env = "USER", default_value = "unknown")]
        by: String,
        /// table or json (default: table on a terminal, json otherwise).
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

/// Output formats of `plan`, `queues` and `journal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: each alert, what it became, its tasks by queue, what waits for a decision.
    Table,
    /// The documented JSON contract, for scripts.
    Json,
}

impl Format {
    /// The format asked for, else a table when stdout is a terminal and JSON when it is not.
    pub fn resolve(asked: Option<Format>) -> Format {
        asked.unwrap_or(if std::io::stdout().is_terminal() {
            Format::Table
        } else {
            Format::Json
        })
    }
}

/// Writes `text` to stdout. A closed stdout (`head`, a pager that quit) comes back as an
/// `io::Error` of kind `BrokenPipe`, which `main` treats as a normal end.
fn print(text: &str) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// The channel kinds `notify --render` renders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RenderChannel {
    /// The Adaptive Card message a Teams workflow receives.
    Teams,
    /// The Block Kit message a Slack incoming webhook receives.
    Slack,
    /// The e-mail's HTML (or, with --json, the Graph sendMail body).
    Email,
    /// The signed webhook's event.
    Webhook,
}

impl RenderChannel {
    /// The channel kind.
    pub fn kind(self) -> crate::policy::notifications::ChannelKind {
        use crate::policy::notifications::ChannelKind;
        match self {
            RenderChannel::Teams => ChannelKind::Teams,
            RenderChannel::Slack => ChannelKind::Slack,
            RenderChannel::Email => ChannelKind::Email,
            RenderChannel::Webhook => ChannelKind::Webhook,
        }
    }
}

/// `notify`: `--render FILE` prints, `--test CHANNEL` sends a sample.
pub async fn notify(
    render: Option<&Path>,
    channel: RenderChannel,
    json: bool,
    test: Option<&str>,
    to: Option<&str>,
    config: &Config,
) -> anyhow::Result<ExitCode> {
    if let Some(file) = render {
        let text = crate::notify::command::render_file(file, channel.kind(), config, json)?;
        print(&text)?;
        return Ok(ExitCode::SUCCESS);
    }
    match test {
        Some(name) => crate::notify::command::test_channel(name, to, config).await,
        None => anyhow::bail!("notify needs --render FILE or --test CHANNEL"),
    }
}

/// Delivery styles for `send`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SendMode {
    /// As the Functions host invokes the handler: POST /DefenderAlert, one event per call.
    Host,
    /// As Event Grid delivers to a webhook: POST /api/defender-alerts with the file as body.
    Webhook,
    /// To `func start`'s local Event Grid endpoint: /runtime/webhooks/EventGrid?functionName=DefenderAlert.
    Runtime,
}

/// What `plan` prints: one entry per input file.
#[derive(Debug, Serialize)]
pub struct PlanOutput {
    /// The files, in the order given.
    pub inputs: Vec<PlanInputReport>,
}

/// The handling of one input file.
#[derive(Debug, Serialize)]
pub struct PlanInputReport {
    /// The path as given.
    pub file: String,
    /// Why the file as a whole could not be read or decoded (then `events` is empty).
    pub error: Option<String>,
    /// Each event's handling.
    pub events: Vec<EventReport>,
}

/// Plans files in order with one shared duplicate memory, like redeliveries to one handler.
/// The flag is true when some file could not be read at all.
pub fn plan_files(files: &[PathBuf], policy: &Policy) -> Result<(PlanOutput, bool), Error> {
    let pipeline = Pipeline::new(Registry::standard(), policy.clone());
    let ledger = MemoryLedger::default();
    let mut inputs = Vec::with_capacity(files.len());
    let mut unreadable = false;
    for file in files {
        let name = file.display().to_string();
        let bytes = match std::fs::read(file) {
            Ok(bytes) => bytes,
            Err(err) => {
                unreadable = true;
                inputs.push(PlanInputReport {
                    file: name,
                    error: Some(format!("cannot read the file: {err}")),
                    events: vec![],
                });
                continue;
            }
        };
        let (error, events) = match decode_body(&bytes) {
            Ok(events) => {
                let mut reports = Vec::with_capacity(events.len());
                for event in &events {
                    let report = pipeline.assess(event, &ledger)?;
                    pipeline.remember(&report, &ledger)?;
                    reports.push(report);
                }
                (None, reports)
            }
            Err(err) => (Some(err.to_string()), Vec::new()),
        };
        inputs.push(PlanInputReport {
            file: name,
            error,
            events,
        });
    }
    Ok((PlanOutput { inputs }, unreadable))
}

/// `plan`: prints [`plan_files`] as JSON or a table; exits 2 when a file could not be read.
pub fn plan(files: &[PathBuf], config: &Config, format: Format) -> anyhow::Result<ExitCode> {
    let (output, unreadable) = plan_files(files, &config.policy)?;
    match format {
        Format::Json => print(&(serde_json::to_string_pretty(&output)? + "\n"))?,
        Format::Table => print(&table::plan(&output, table::width()))?,
    }
    Ok(if unreadable {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `queues`: counts and a peek of the embedded store, as JSON or a table.
pub fn queues(config: &Config, peek: usize, format: Format) -> anyhow::Result<ExitCode> {
    if !config.store_path.exists() {
        anyhow::bail!(
            "no embedded store at {} (set RESPONDER_STORE_PATH, or run `serve` and deliver an alert first)",
            config.store_path.display()
        );
    }
    let store = EmbeddedStore::open(&config.store_path, config.queue_names.clone())?;
    let mut out = serde_json::Map::new();
    out.insert("store".into(), json!(store.path().display().to_string()));
    let mut queues = Vec::new();
    let mut views = Vec::new();
    for (queue, (name, count)) in Queue::ALL.into_iter().zip(store.counts()?) {
        let peeked = store.peek(queue, peek)?;
        if format == Format::Table {
            views.push(table::QueueView {
                name: name.clone(),
                count,
                peek: peeked
                    .iter()
                    .map(|message| {
                        serde_json::from_str(&message.body)
                            .map_err(|_| (message.subject.clone(), message.body.clone()))
                    })
                    .collect(),
            });
            continue;
        }
        let messages: Vec<Value> = peeked
            .into_iter()
            .map(|message| {
                let body: Value = serde_json::from_str(&message.body).unwrap_or(Value::String(message.body.clone()));
                json!({"message_id": message.message_id, "correlation_id": message.correlation_id,
                       "subject": message.subject, "enqueued_at": message.enqueued_at, "body": body})
            })
            .collect();
        let dead_lettered = store.dead_letter_count(queue)?;
        queues.push(json!({"queue": name, "count": count, "dead_lettered": dead_lettered, "peek": messages}));
    }
    if format == Format::Table {
        print(&table::queues(
            &store.path().display().to_string(),
            &views,
            table::width(),
        ))?;
        return Ok(ExitCode::SUCCESS);
    }
    out.insert("queues".into(), Value::Array(queues));
    print(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    Ok(ExitCode::SUCCESS)
}

/// `send`: posts files to a running handler and prints each reply; with `progress`, reports
/// on stderr how many files are done.
pub async fn send(
    files: &[PathBuf],
    url: &str,
    mode: SendMode,
    string_form: bool,
    progress: bool,
) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()?;
    let base = url.trim_end_matches('/');
    let mut failures = 0;
    let mut progress = Progress::new(files.len(), progress);
    for file in files {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let requests = build_requests(file, &bytes, base, mode, string_form)?;
        for (target, headers, body) in requests {
            let mut request = client.post(&target).body(body);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let text = response.text().await.unwrap_or_default();
                    if !status.is_success() {
                        failures += 1;
                    }
                    print(&format!(
                        "{} -> {target}: {status}\n{text}\n",
                        file.display()
                    ))?;
                }
                Err(err) => {
                    failures += 1;
                    print(&format!(
                        "{} -> {target}: request failed: {err}\n",
                        file.display()
                    ))?;
                }
            }
        }
        progress.file_done(file, failures);
    }
    progress.finish(failures);
    Ok(if failures == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Progress of `send` on stderr: one rewritten line on a terminal, a line per file otherwise.
struct Progress {
    total: usize,
    done: usize,
    enabled: bool,
    terminal: bool,
}

impl Progress {
    fn new(total: usize, asked: bool) -> Self {
        let on_terminal = std::io::stderr().is_terminal();
        Progress {
            total,
            done: 0,
            enabled: asked || on_terminal,
            // One line rewritten in place, unless the replies go to the same screen.
            terminal: on_terminal && !std::io::stdout().is_terminal(),
        }
    }

    fn file_done(&mut self, file: &Path, failures: usize) {
        self.done += 1;
        if !self.enabled {
            return;
        }
        let line = format!(
            "send: {}/{} file(s), {failures} failed: {}",
            self.done,
            self.total,
            file.display()
        );
        // Progress is best effort: a closed stderr must not stop the delivery.
        let mut stderr = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(stderr, "\r\x1b[K{line}")
        } else {
            writeln!(stderr, "{line}")
        };
        let _ = stderr.flush();
    }

    fn finish(&self, failures: usize) {
        if self.enabled && self.terminal {
            let _ = writeln!(
                std::io::stderr(),
                "\r\x1b[Ksend: {} file(s) sent, {failures} failed",
                self.done
            );
        }
    }
}

type Request = (String, Vec<(&'static str, String)>, Vec<u8>);

fn build_requests(
    file: &Path,
    bytes: &[u8],
    base: &str,
    mode: SendMode,
    string_form: bool,
) -> anyhow::Result<Vec<Request>> {
    let value: Value =
        serde_json::from_slice(bytes).with_context(|| format!("{} is not JSON", file.display()))?;
    let is_cloud_event = |v: &Value| v.get("specversion").is_some();
    let is_validation = |v: &Value| {
        v.get("eventType").and_then(Value::as_str)
            == Some("Microsoft.EventGrid.SubscriptionValidationEvent")
    };
    let events: Vec<Value> = match &value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    };
    match mode {
        SendMode::Host => Ok(events
            .iter()
            .enumerate()
            .map(|(index, event)| {
                let event_value = if string_form { Value::String(event.to_string()) } else { event.clone() };
                let payload = json!({
                    "Data": {"event": event_value},
                    "Metadata": {"sys": {"MethodName": "DefenderAlert", "UtcNow": "2025-05-14T07:13:01Z", "RandGuid": format!("send-{index}")},
                                 "data": event.get("data").cloned().unwrap_or(Value::Null)}
                });
                let headers = vec![
                    ("content-type", "application/json; charset=utf-8".to_string()),
                    ("x-azure-functions-invocationid", format!("send-{}-{index}", file.display())),
                ];
                (format!("{base}/DefenderAlert"), headers, payload.to_string().into_bytes())
            })
            .collect()),
        SendMode::Webhook | SendMode::Runtime => {
            let target = match mode {
                SendMode::Webhook => format!("{base}/api/defender-alerts"),
                _ => format!("{base}/runtime/webhooks/EventGrid?functionName=DefenderAlert"),
            };
            let content_type = match &value {
                Value::Array(items) if items.iter().any(is_cloud_event) => "application/cloudevents-batch+json",
                single if is_cloud_event(single) => "application/cloudevents+json",
                _ => "application/json",
            };
            let event_type = if events.iter().any(is_validation) { "SubscriptionValidation" } else { "Notification" };
            let headers = vec![("content-type", content_type.to_string()), ("aeg-event-type", event_type.to_string())];
            Ok(vec![(target, headers, bytes.to_vec())])
        }
    }
}

/// What `undo` printed and how it ends: 0 undone, 1 the undo failed (the task stays done), 2
/// refused (nothing to undo), 3 busy (another change of the task or its resource runs; try
/// again).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndoOutcome {
    /// The exit code.
    pub code: u8,
    /// What goes to stdout (the report) or, when nothing was undone, to stderr (why).
    pub text: String,
}

/// `undo`: undoes a task's change as `operator:<by>` and prints what was restored.
pub async fn undo(
    worker: &crate::workers::Worker,
    task: &str,
    by: &str,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let outcome = undo_outcome(worker, task, by, format).await;
    if outcome.code == 0 {
        print(&outcome.text)?;
    } else {
        eprint!("{}", outcome.text);
    }
    Ok(ExitCode::from(outcome.code))
}

/// The `undo` command without the printing.
pub async fn undo_outcome(
    worker: &crate::workers::Worker,
    task: &str,
    by: &str,
    format: Format,
) -> UndoOutcome {
    use crate::workers::undo::UndoError;
    let Ok(id) =
        serde_json::from_value::<crate::domain::MessageId>(Value::String(task.trim().to_string()))
    else {
        return UndoOutcome {
            code: 2,
            text: format!("error: not undone: {task:?} is not a task id\n"),
        };
    };
    match worker.undo(&id, &format!("operator:{by}")).await {
        Ok(report) => UndoOutcome {
            code: 0,
            text: match format {
                Format::Json => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                Format::Table => table::undo_report(&report),
            },
        },
        Err(err) => {
            let code = match err {
                UndoError::Failed(_) => 1,
                UndoError::UnknownTask(_) | UndoError::Refused(_) => 2,
                UndoError::Busy(_) => 3,
            };
            UndoOutcome {
                code,
                text: format!("error: not undone: {err}\n"),
            }
        }
    }
}

/// Prints what `work --once` did: the sweep, then one line per message.
pub fn print_work_report(
    report: &crate::workers::queue_loop::DrainReport,
    swept: &crate::workers::sweeper::SweepReport,
    format: Format,
) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            let value = serde_json::json!({"sweep": swept, "drain": report});
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        Format::Table => {
            writeln!(
                out,
                "completed {}, retried later {}, dead-lettered {}; sweep: {}",
                report.completed,
                report.retried,
                report.dead_lettered,
                swept.summary()
            )?;
            for line in &report.outcomes {
                writeln!(out, "  {line}")?;
            }
        }
    }
    Ok(())
}
