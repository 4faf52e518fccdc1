//! Binary entry point: parses the command line, sets up logging, runs a command.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use defender_responder::adapters::identity;
use defender_responder::adapters::{
    EmbeddedStore, QueueOptions, ServiceBusPublisher, SharedLedger, SharedPublisher,
};
use defender_responder::approval::DecisionDesk;
use defender_responder::azure::AzureClients;
use defender_responder::cli::{self, Cli, Command, Format};
use defender_responder::config::azure;
use defender_responder::config::Config;
use defender_responder::domain::Queue;
use defender_responder::executors::rotation::RotationContext;
use defender_responder::executors::{ExecutorContext, ExecutorRegistry};
use defender_responder::journal::command;
use defender_responder::notify::{Notifier, WebhookChannel};
use defender_responder::pipeline::Pipeline;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use defender_responder::workers::queue_loop::EmbeddedWorkers;
use defender_responder::workers::{sweeper, Worker};
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: allocation and freeing were a fifth of the intake's CPU
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc 3.3's `mi_option_arena_eager_commit` (its index in `mi_option_t`; the crates are
/// pinned in Cargo.toml).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Turns off mimalloc's eager commit of its arenas before the first allocation: with it on, the
/// idle server holds ~8 MB more resident memory (docs/benchmarks.md). The option is read when the
/// first arena is reserved, at the first allocation, which the Rust runtime makes before `main`;
/// so this runs as an ELF constructor, after mimalloc's own (priority 101) and before the
/// runtime's start.
#[cfg(target_os = "linux")]
extern "C" fn mimalloc_options() {
    // SAFETY: sets a value in mimalloc's option table; no allocation has been made yet.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
}

#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00200"]
static MIMALLOC_OPTIONS: extern "C" fn() = mimalloc_options;

/// How long the start-up check of the broker waits before trying again after a failure.
const STARTUP_CHECK_RETRY: std::time::Duration = std::time::Duration::from_secs(15);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, None | Some(Command::Serve));
    init_tracing(serving);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "error: cannot start the async runtime: {err}"
            );
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // Whoever read stdout stopped (`| head`, a pager that quit): a normal end, as for any
        // Unix tool; nothing is left to say to a reader who is gone.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Whether the error is (or wraps) a write to a closed pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Plan { files, format } => cli::plan(&files, &config, Format::resolve(format)),
        Command::Queues { peek, format } => cli::queues(&config, peek, Format::resolve(format)),
        Command::Send {
            files,
            url,
            mode,
            string_form,
            progress,
        } => cli::send(&files, &url, mode, string_form, progress).await,
        Command::Journal {
            alert,
            task,
            format,
            limit,
        } => {
            let journal = config.workers.journal.open()?;
            command::show(
                &journal,
                alert.as_deref(),
                task.as_deref(),
                Format::resolve(format),
                limit,
            )
            .await
        }
        Command::Notify {
            render,
            channel,
            json,
            test,
            to,
        } => {
            cli::notify(
                render.as_deref(),
                channel,
                json,
                test.as_deref(),
                to.as_deref(),
                &config,
            )
            .await
        }
        Command::Work { once: _, format } => work(config, Format::resolve(format)).await,
        Command::Decide {
            task,
            decision,
            by,
            preview_hash,
        } => {
            let journal = config.workers.journal.open()?;
            command::decide(&journal, &task, decision, &by, preview_hash.as_deref()).await
        }
        Command::Undo { task, by, format } => {
            let worker = command_worker(&config).await?;
            cli::undo(&worker, &task, &by, Format::resolve(format)).await
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], config.port));
    // Bind first: the host polls the port from the moment it starts the process.
    let listener = defender_responder::server::bind(address)
        .with_context(|| format!("cannot listen on {address}"))?;
    // The embedded store holds the local queues (and, locally, the ledger); the file is held
    // exclusively while serving.
    let store = EmbeddedStore::open_with(
        &config.store_path,
        config.queue_names.clone(),
        QueueOptions {
            max_delivery_count: config.limits.max_delivery_count,
        },
    )?;
    let store = Arc::new(store);
    let (publisher, broker): (SharedPublisher, Option<String>) = match &config.service_bus {
        Some(settings) => {
            let broker = settings.describe();
            let publisher = Arc::new(ServiceBusPublisher::new(settings.clone()));
            // Connect in the background so the first invocation finds the links attached and
            // a missing queue, role or password is reported at start-up. Readiness never waits
            // for the broker (the host needs an answer within its start-up timeout); it reports
            // the fault until a check or a publish succeeds, and the check repeats meanwhile.
            let warm = publisher.clone();
            tokio::spawn(async move {
                loop {
                    match warm.connect_now().await {
                        Ok(()) => {
                            tracing::info!("Service Bus connected; sender links attached and every queue found.");
                            break;
                        }
                        Err(err) => {
                            defender_responder::invoke::log_failure(
                                "Service Bus start-up check",
                                &err,
                            );
                            tokio::time::sleep(STARTUP_CHECK_RETRY).await;
                        }
                    }
                }
            });
            (publisher, Some(broker))
        }
        None => (store.clone(), None),
    };
    // The intake ledger goes where the journal is: deployed (journal in Blob storage) every
    // instance shares it in the journal's container and claims each alert there, so exactly
    // one instance plans and publishes it; locally it is the embedded store, this process's own.
    let (ledger, ledger_location): (SharedLedger, String) =
        match config.workers.journal.open_ledger()? {
            Some(blob) => {
                let location = blob.location().to_string();
                (Arc::new(blob), location)
            }
            None => (store.clone(), config.store_path.display().to_string()),
        };
    let mut state = AppState::new(
        Pipeline::new(Registry::standard(), config.policy.clone())
            .with_claim_wait(config.limits.duplicate_wait),
        publisher.clone(),
        ledger.clone(),
    );
    if let Some(approvals) = &config.workers.approvals {
        let journal = config.workers.journal.open()?;
        state = state.with_decisions(DecisionDesk::new(journal, approvals.clone()));
    }
    let worker = build_worker(&config, publisher.clone(), state.decisions.clone()).await?;
    state = state.with_worker(worker.clone(), config.workers.decision_timeout);
    // On the embedded default the same workers run in-process on the SQLite queues; with
    // Service Bus the host triggers them as functions.
    let (stop_workers, workers_stopped) = tokio::sync::watch::channel(false);
    let mut loops = Vec::new();
    if config.service_bus.is_none() && config.workers.embedded_workers {
        let embedded = EmbeddedWorkers::new((*store).clone(), Arc::new(worker.clone()));
        for queue in Queue::ALL {
            loops.push(tokio::spawn(embedded.clone().run(
                queue,
                config.workers.poll,
                workers_stopped.clone(),
            )));
        }
        let sweeper = worker.clone();
        let timeout = config.workers.decision_timeout;
        let interval = config.workers.sweep_interval;
        let mut stopped = workers_stopped.clone();
        loops.push(tokio::spawn(async move {
            loop {
                if let Err(err) = sweeper::sweep(&sweeper, timeout).await {
                    tracing::warn!(error = %err, next_in_s = interval.as_secs(), "sweep failed; the next one tries again");
                }
                tokio::select! {
                    _ = stopped.changed() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        }));
    }
    tracing::info!(
        %address,
        publisher = publisher.name(),
        broker = broker.as_deref().unwrap_or("none"),
        store = %config.store_path.display(),
        dry_run = config.policy.dry_run,
        journal = %config.workers.journal.describe(),
        ledger = ledger.name(),
        ledger_location = %ledger_location,
        decision_links = config.workers.approvals.is_some(),
        webhook = config.workers.webhook.is_some(),
        header_timeout_s = config.limits.header_timeout.as_secs_f64(),
        body_timeout_s = config.limits.body_timeout.as_secs_f64(),
        idle_timeout_s = config.limits.idle_timeout.as_secs_f64(),
        max_connections = config.limits.max_connections,
        "Custom handler listening."
    );
    defender_responder::server::serve(
        listener,
        defender_responder::app(state),
        config.limits,
        shutdown_signal(),
    )
    .await;
    let _ = stop_workers.send(true);
    for running in loops {
        let _ = running.await;
    }
    tracing::info!("Custom handler stopped.");
    Ok(ExitCode::SUCCESS)
}

/// The worker of this process: the journal, the notification channels, the decision links,
/// and the executors when they act on Azure.
async fn build_worker(
    config: &Config,
    publisher: SharedPublisher,
    desk: Option<Arc<DecisionDesk>>,
) -> anyhow::Result<Worker> {
    let journal = config.workers.journal.open()?;
    let webhook = match &config.workers.webhook {
        Some(settings) => Some(WebhookChannel::new(settings.clone())?),
        None => None,
    };
    let clients = azure_clients(config)?;
    let notifier = Notifier::new(
        &config.policy,
        &config.notify,
        clients.as_ref().map(|c| c.graph.clone()),
        clients.as_ref().map(|c| c.arm.clone()),
    )?;
    let notifier = match &desk {
        Some(desk) => notifier.with_decisions((**desk).clone()),
        None => notifier,
    };
    let worker = Worker::new(journal, publisher)
        .with_webhook(webhook)
        .with_notifier(Some(notifier))
        .with_security_team(config.policy.notify_recipients.clone())
        .with_decisions(desk)
        .with_dry_run(config.policy.dry_run)
        .with_containment_expiry(config.policy.containment_expiry())
        .with_timeout_policy(config.policy.clone());
    let Some(clients) = clients.filter(|_| config.executors_enabled) else {
        return Ok(worker);
    };
    let rotation = RotationContext::from_settings(
        config.rotation.clone(),
        identity::credential(&config.identity, None),
        extra_root_pem(config)?.as_deref(),
    )?;
    let context = ExecutorContext::new(clients, config.isolation.clone()).with_rotation(rotation);
    Ok(worker
        .with_executors(ExecutorRegistry::standard(), context)
        .load_blast_radius()
        .await?)
}

/// The Azure clients with the app's identity: always built (owner tags and e-mail use them),
/// acting on Azure only when [`Config::executors_enabled`].
fn azure_clients(config: &Config) -> anyhow::Result<Option<AzureClients>> {
    if !config.executors_enabled && config.policy.notifications.channels.is_empty() {
        return Ok(None);
    }
    Ok(Some(AzureClients::new(
        &config.azure,
        identity::credential(&config.identity, None),
    )?))
}

/// The extra root certificate the Azure clients trust, read from its file.
fn extra_root_pem(config: &Config) -> anyhow::Result<Option<String>> {
    match &config.azure.extra_root_certificate {
        Some(path) => Ok(Some(std::fs::read_to_string(path).with_context(|| {
            format!(
                "{}: cannot read {}",
                azure::EXTRA_ROOT_CERTIFICATE,
                path.display()
            )
        })?)),
        None => Ok(None),
    }
}

/// The worker of a one-off operator command (`undo`): built as `work` builds it, over Service
/// Bus when it is configured, else over the embedded store of a stopped handler.
async fn command_worker(config: &Config) -> anyhow::Result<Worker> {
    let publisher: SharedPublisher = match &config.service_bus {
        Some(settings) => Arc::new(ServiceBusPublisher::new(settings.clone())),
        None => Arc::new(EmbeddedStore::open_with(
            &config.store_path,
            config.queue_names.clone(),
            QueueOptions {
                max_delivery_count: config.limits.max_delivery_count,
            },
        )?),
    };
    let desk = match &config.workers.approvals {
        Some(approvals) => Some(Arc::new(DecisionDesk::new(
            config.workers.journal.open()?,
            approvals.clone(),
        ))),
        None => None,
    };
    build_worker(config, publisher, desk).await
}

/// `work --once`: drains the embedded queues of a stopped handler (the store is exclusive).
async fn work(config: Config, format: Format) -> anyhow::Result<ExitCode> {
    let store = EmbeddedStore::open_with(
        &config.store_path,
        config.queue_names.clone(),
        QueueOptions {
            max_delivery_count: config.limits.max_delivery_count,
        },
    )?;
    let publisher: SharedPublisher = Arc::new(store.clone());
    let desk = match &config.workers.approvals {
        Some(approvals) => Some(Arc::new(DecisionDesk::new(
            config.workers.journal.open()?,
            approvals.clone(),
        ))),
        None => None,
    };
    let worker = Arc::new(build_worker(&config, publisher, desk).await?);
    let swept = sweeper::sweep(&worker, config.workers.decision_timeout).await?;
    let report = EmbeddedWorkers::new(store, worker).drain_all().await?;
    cli::print_work_report(&report, &swept, format)?;
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Serving: information to stdout and warnings and errors to stderr, which the Functions host
/// logs as errors. Other commands: everything to stderr, so stdout stays pure JSON.
fn init_tracing(serving: bool) {
    let filter = EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if serving {
        builder
            .with_writer(
                std::io::stderr
                    .with_max_level(tracing::Level::WARN)
                    .or_else(std::io::stdout),
            )
            .with_ansi(false)
            .init();
    } else {
        builder.with_writer(std::io::stderr).init();
    }
}

#[cfg(test)]
mod tests {
    use super::MI_OPTION_ARENA_EAGER_COMMIT;

    /// This test binary links `main.rs`, so its allocator and constructor are the server's.
    #[test]
    #[cfg(target_os = "linux")]
    fn mimalloc_commits_arenas_on_demand_from_before_main() {
        // SAFETY: reads a value of mimalloc's option table.
        let eager = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_ARENA_EAGER_COMMIT) };
        assert_eq!(eager, 0, "mimalloc's arena_eager_commit is {eager}, not 0");
    }

    #[test]
    fn the_linked_mimalloc_is_the_version_whose_option_index_main_uses() {
        // MI_OPTION_ARENA_EAGER_COMMIT is the option's index in mimalloc 3.3's `mi_option_t`.
        // SAFETY: reads a constant.
        let version = unsafe { libmimalloc_sys::mi_version() };
        assert_eq!(
            version / 100,
            303,
            "mimalloc {version}: check the option's index"
        );
    }
}
