//! Start-to-ready time of azure-sim: the binary as the demo runs it (spawn → ready line) and in-process `Simulator::start`. Prints numbers; asserts nothing.
//!
//! `cargo build -p azure-sim && cargo run -p azure-sim --example startup [runs]`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn summary(label: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{label}: runs={} min={:.1} ms median={:.1} ms max={:.1} ms",
        samples.len(),
        ms(samples[0]),
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1])
    );
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20);
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.parent()
                .and_then(|dir| dir.parent())
                .map(|dir| dir.join("azure-sim"))
        })
        .filter(|path| path.exists());
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/seeds/example.json");
    match binary {
        Some(binary) => {
            let mut samples = Vec::new();
            for _ in 0..runs {
                let started = Instant::now();
                let mut child = Command::new(&binary)
                    .args(["--port", "0", "--seed", seed])
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("spawn azure-sim");
                let stdout = child.stdout.take().expect("stdout");
                let mut line = String::new();
                BufReader::new(stdout)
                    .read_line(&mut line)
                    .expect("ready line");
                samples.push(started.elapsed());
                assert!(line.starts_with("azure-sim ready "), "unexpected: {line}");
                let _ = child.kill();
                let _ = child.wait();
            }
            summary(
                &format!("binary spawn → ready ({})", binary.display()),
                samples,
            );
        }
        None => println!("binary: target/debug/azure-sim not built (cargo build -p azure-sim)"),
    }
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut samples = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let handle = runtime
            .block_on(azure_sim::Simulator::start(azure_sim::Seed::example()))
            .expect("start");
        samples.push(started.elapsed());
        drop(handle);
    }
    summary("in-process Simulator::start (example seed)", samples);
}
