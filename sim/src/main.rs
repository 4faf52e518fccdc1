//! `azure-sim`: runs the local Azure simulator until interrupted, printing one ready line with its URLs.

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;

/// A local stand-in for ARM, Key Vault, Graph, Defender for Endpoint and managed identity.
#[derive(Parser)]
#[command(name = "azure-sim", version)]
struct Args {
    /// Port of the main listener on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Seed file (JSON); the built-in example world when absent.
    #[arg(long)]
    seed: Option<PathBuf>,
    /// Start with an empty world instead of the example.
    #[arg(long, conflicts_with = "seed")]
    empty: bool,
    /// Write the self-signed certificate (PEM) here, for clients that verify TLS.
    #[arg(long)]
    cert_out: Option<PathBuf>,
    /// Also write the ready line's JSON (URLs, vault URLs, token endpoint) to this file.
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let started = Instant::now();
    let args = Args::parse();
    let seed = match (&args.seed, args.empty) {
        (Some(path), _) => azure_sim::Seed::from_file(path),
        (None, true) => Ok(azure_sim::Seed::empty()),
        (None, false) => Ok(azure_sim::Seed::example()),
    };
    let seed = match seed {
        Ok(seed) => seed,
        Err(error) => {
            eprintln!("azure-sim: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let sim = match azure_sim::Simulator::start_on(seed, args.port).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("azure-sim: {error}");
            return std::process::ExitCode::from(1);
        }
    };
    if let Some(path) = &args.cert_out {
        if let Err(error) = std::fs::write(path, sim.certificate_pem()) {
            eprintln!("azure-sim: cannot write {}: {error}", path.display());
            return std::process::ExitCode::from(1);
        }
    }
    let ready = serde_json::json!({
        "https": sim.base_url(),
        "http": sim.http_url(),
        "vaults": sim.vault_urls(),
        "imds": sim.imds_endpoint(),
        "identityHeader": sim.identity_header(),
        "startupMs": started.elapsed().as_secs_f64() * 1000.0,
    });
    if let Some(path) = &args.ready_file {
        if let Err(error) = std::fs::write(path, ready.to_string()) {
            eprintln!("azure-sim: cannot write {}: {error}", path.display());
            return std::process::ExitCode::from(1);
        }
    }
    println!("azure-sim ready {ready}");
    let _ = tokio::signal::ctrl_c().await;
    std::process::ExitCode::SUCCESS
}
