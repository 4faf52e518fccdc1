//! Binary entry point: parses the command line, sets up logging, runs a command.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use defender_responder::adapters::{EmbeddedStore, ServiceBusPublisher, SharedPublisher};
use defender_responder::cli::{self, Cli, Command};
use defender_responder::config::Config;
use defender_responder::pipeline::Pipeline;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use tracing_subscriber::fmt::writer::MakeWriterExt;
use tracing_subscriber::EnvFilter;

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
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let config = Config::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Plan { files } => cli::plan(&files, &config),
        Command::Queues { peek } => cli::queues(&config, peek),
        Command::Send {
            files,
            url,
            mode,
            string_form,
        } => cli::send(&files, &url, mode, string_form).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], config.port));
    // Bind first: the host polls the port from the moment it starts the process.
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    // The embedded store is always the ledger: each instance's duplicate memory. With Service
    // Bus, the deterministic message ids and the queues' duplicate detection are what keep
    // instances from publishing a task twice.
    let store = EmbeddedStore::open(&config.store_path, config.queue_names.clone())?;
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
    let state = AppState::new(
        Pipeline::new(Registry::standard(), config.policy.clone()),
        publisher.clone(),
        store.clone(),
    );
    tracing::info!(
        %address,
        publisher = publisher.name(),
        broker = broker.as_deref().unwrap_or("none"),
        store = %config.store_path.display(),
        dry_run = config.policy.dry_run,
        "Custom handler listening."
    );
    axum::serve(listener, defender_responder::app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("Custom handler stopped.");
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
