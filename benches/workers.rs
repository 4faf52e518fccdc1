//! Worker benchmark: containment tasks queued on the embedded store, drained by
//! `EmbeddedWorkers` / `Worker::process` with the standard executors against the Azure
//! simulator, printing the responder's own CPU per task and how 1,000 tasks drain at the ARM
//! write budget (429s seen, retried, left unhandled).
//!
//! The simulator runs in this process on its own runtime, whose threads are named `azure-sim`;
//! "responder CPU" is the process's CPU minus those threads' (both from `/proc`), so what the
//! simulator spends answering is not counted, while everything the responder does around an
//! Azure call (journal, queue, TLS client, JSON, retries) is.
//!
//! Knobs: `BENCH_WORKER_TASKS` (1000), `BENCH_WORKER_SCALE` (1: ARM's real write bucket, 200
//! then 10/s, so the two budget runs take ~80 s and ~120 s; 10 runs them ten times faster with the same
//! shape), `BENCH_WORKER_OVERHEAD_TASKS` (300, the zero-latency, unthrottled run),
//! `BENCH_STORE_DIR` (system temp folder: the store and journal are durable SQLite files),
//! `BENCH_WORKER_ONLY` (one run: `overhead`, `budget` or `shared-subscription`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use azure_sim::{Audience, Seed, Simulator, SimulatorHandle, ThrottleConfig, ThrottleLimit};
use defender_responder::adapters::{EmbeddedStore, QueueNames, SharedPublisher};
use defender_responder::azure::budget::BucketLimit;
use defender_responder::azure::credential::StaticTokenCredential;
use defender_responder::azure::AzureClients;
use defender_responder::config::azure::{AzureSettings, IsolationSettings};
use defender_responder::domain::alert::{AlertStatus, Severity};
use defender_responder::domain::ids::{Guid, KeyVaultId};
use defender_responder::domain::parameters::{FirewallBypass, FirewallDefault, Parameters};
use defender_responder::domain::task::{AlertRef, PolicyDecision, Task};
use defender_responder::domain::Queue;
use defender_responder::executors::{ExecutorContext, ExecutorRegistry};
use defender_responder::journal::{Journal, SqliteJournal, TaskState};
use defender_responder::services::KeyVault;
use defender_responder::workers::queue_loop::EmbeddedWorkers;
use defender_responder::workers::Worker;
use serde_json::Value;

/// The server's allocator (handlers/main.rs): the workers run inside that binary, so the CPU per
/// task is measured with the allocator they ship with.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SUBSCRIPTION: &str = "4a9d62b4-c70d-4263-9280-1c7fce8ab0e7";
const RESPONDER_OID: &str = "5b0c9f2e-1d7a-4e3b-8c6f-2a9e4d1b7c30";
const SIM_THREADS: &str = "azure-sim";

fn env_number(name: &str, default: f64) -> f64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vault_id(index: usize) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-payments-prod/providers/Microsoft.KeyVault/vaults/kv-bench-{index:04}")
}

/// The example world plus `vaults` open Key Vaults (firewall off) in one subscription.
fn seed(vaults: usize) -> Seed {
    let mut world: Value = serde_json::from_str(include_str!("../sim/seeds/example.json"))
        .expect("the example seed is JSON");
    let template = world["resources"]
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|r| r["type"] == "Microsoft.KeyVault/vaults")
                .cloned()
        })
        .expect("the example seed has a vault");
    let resources = world["resources"].as_array_mut().expect("resources");
    for index in 0..vaults {
        let mut vault = template.clone();
        vault["id"] = Value::String(vault_id(index));
        resources.push(vault);
    }
    Seed::from_json(&world.to_string()).expect("the bench seed is valid")
}

/// One `enable_key_vault_firewall` task per vault, decided `auto`: preview (GET), apply
/// (one PATCH, an ARM write), verify (GET).
fn tasks(count: usize, run: &str) -> Vec<Task> {
    (0..count)
        .map(|index| {
            let alert = AlertRef {
                system_alert_id: format!("bench-{run}-{index:04}"),
                alert_type: "KV_UserAnomaly".into(),
                service: KeyVault::NAME,
                severity: Severity::High,
                status: AlertStatus::Active,
                resource: vault_id(index),
                alert_uri: None,
            };
            let mut task = Task::new(
                &alert,
                Parameters::EnableKeyVaultFirewall {
                    vault: KeyVaultId::parse(&vault_id(index)).expect("vault id"),
                    default_action: FirewallDefault::Deny,
                    bypass: FirewallBypass::AzureServices,
                    allow_ip_ranges: Vec::new(),
                    allow_virtual_networks: Vec::new(),
                    block_addresses: Vec::new(),
                },
                &["KV-2a"],
                "worker benchmark",
            );
            task.policy = Some(PolicyDecision {
                mode: "auto".into(),
                rule: "bench".into(),
                loop_protection: false,
            });
            task
        })
        .collect()
}

/// CPU seconds (utime + stime) of this process's threads, split into the simulator's and the
/// rest.
fn cpu_split() -> (f64, f64) {
    let ticks = clock_ticks();
    let (mut sim, mut rest) = (0.0, 0.0);
    let Ok(threads) = std::fs::read_dir("/proc/self/task") else {
        return (0.0, 0.0);
    };
    for thread in threads.flatten() {
        let path = thread.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let Some(used) = stat_ticks(&stat) else {
            continue;
        };
        if comm.trim().starts_with(SIM_THREADS) {
            sim += used / ticks;
        } else {
            rest += used / ticks;
        }
    }
    // Threads that ended (blocking-pool threads idle for 10 s) took their CPU with them from
    // the per-thread view; the process total still has it.
    let total = process_cpu();
    (sim, (total - sim).max(rest))
}

fn process_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_ticks(&stat).unwrap_or(0.0) / clock_ticks()
}

/// User + system time (clock ticks) of a `/proc/…/stat` line; `None` when it has no `)`.
fn stat_ticks(stat: &str) -> Option<f64> {
    let after = stat.rfind(')').map(|at| &stat[at + 2..])?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |at: usize| {
        fields
            .get(at)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some(field(11) + field(12))
}

fn clock_ticks() -> f64 {
    // Linux reports thread and process times in USER_HZ, 100 on every supported platform.
    100.0
}

#[derive(Clone)]
struct RunSpec {
    label: &'static str,
    tasks: usize,
    /// The simulator's ARM write and delete bucket (`None`: no throttling at all).
    arm_limit: Option<ThrottleLimit>,
    /// The responder's own budget.
    budget: BucketLimit,
}

#[derive(Default)]
struct RunResult {
    wall: Duration,
    responder_cpu: f64,
    sim_cpu: f64,
    done: usize,
    failed: usize,
    other: BTreeMap<String, usize>,
    requests: usize,
    writes: usize,
    throttled: usize,
    deliveries: usize,
    retried: usize,
    dead_lettered: usize,
}

fn dir_for(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(format!("defender-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench folder");
    dir
}

async fn run_one(sim: &SimulatorHandle, spec: &RunSpec, base: &Path) -> RunResult {
    sim.reset();
    let unthrottled = ThrottleLimit {
        capacity: 1_000_000,
        refill_per_second: 1_000_000.0,
    };
    let arm = spec.arm_limit.unwrap_or(unthrottled);
    sim.set_throttle(ThrottleConfig {
        // Reads scale with writes as ARM's do (250, 25/s against 200, 10/s).
        reads: match spec.arm_limit {
            Some(limit) => ThrottleLimit {
                capacity: 250,
                refill_per_second: limit.refill_per_second * 2.5,
            },
            None => unthrottled,
        },
        writes: arm,
        deletes: arm,
        mde_actions: unthrottled,
    });
    sim.clear_requests();

    let dir = dir_for(base, spec.label);
    let store = EmbeddedStore::open(&dir.join("store.sqlite3"), QueueNames::default())
        .expect("store opens");
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.join("journal.sqlite3")).expect("journal opens"),
    ));
    let mut azure = AzureSettings::on_one_host(&sim.base_url());
    azure.arm_write_budget = spec.budget;
    let credential = StaticTokenCredential::new([
        (azure.arm_scope.clone(), sim.token(Audience::Management)),
        (azure.graph_scope.clone(), sim.token(Audience::Graph)),
        (azure.mde_scope.clone(), sim.token(Audience::Mde)),
    ]);
    let clients = AzureClients::with_root_pem(&azure, Arc::new(credential), sim.certificate_pem())
        .expect("clients");
    let context = ExecutorContext::new(
        clients,
        IsolationSettings {
            self_object_ids: vec![Guid::parse(RESPONDER_OID).expect("guid")],
            blast_radius_per_hour: 1_000_000,
            ..IsolationSettings::default()
        },
    );
    let publisher: SharedPublisher = Arc::new(store.clone());
    let worker = Arc::new(
        // The tasks' alerts are made up per task, so the read-back from Defender for Cloud
        // (a listing of the subscription's alerts and a GET per task) is left out of these
        // numbers; the blast-radius budget is set out of reach above.
        Worker::new(journal.clone(), publisher)
            .with_executors(ExecutorRegistry::standard(), context)
            .trusting_alerts()
            .with_instance("bench"),
    );
    let workers = EmbeddedWorkers::new(store.clone(), worker);
    let planned = tasks(spec.tasks, spec.label);
    store.enqueue(&planned).expect("tasks queued");

    let mut result = RunResult::default();
    let (sim_before, responder_before) = cpu_split();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(900);
    // The loop `serve` runs per queue (`EmbeddedWorkers::run`): drain, then poll again.
    loop {
        let report = workers.drain(Queue::Isolation).await.expect("drain");
        result.deliveries += report.outcomes.len();
        result.retried += report.retried;
        result.dead_lettered += report.dead_lettered;
        let left = store
            .counts()
            .expect("counts")
            .into_iter()
            .map(|(_, n)| n)
            .sum::<u64>();
        if left == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    result.wall = started.elapsed();
    let (sim_after, responder_after) = cpu_split();
    result.sim_cpu = sim_after - sim_before;
    result.responder_cpu = responder_after - responder_before;

    for task in &planned {
        match journal.get(&task.message_id).await.ok().flatten() {
            Some(entry) if entry.state == TaskState::Done => result.done += 1,
            Some(entry) if entry.state == TaskState::Failed => result.failed += 1,
            Some(entry) => *result.other.entry(entry.state.to_string()).or_default() += 1,
            None => *result.other.entry("missing".into()).or_default() += 1,
        }
    }
    for request in sim.requests() {
        if request["surface"] == "token" {
            continue;
        }
        result.requests += 1;
        if request["method"] != "GET" {
            result.writes += 1;
        }
        if request["status"] == 429 {
            result.throttled += 1;
        }
    }
    drop(workers);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn main() {
    let count = env_number("BENCH_WORKER_TASKS", 1000.0) as usize;
    let overhead_count = env_number("BENCH_WORKER_OVERHEAD_TASKS", 300.0) as usize;
    let scale = env_number("BENCH_WORKER_SCALE", 1.0).max(0.01);
    let base = std::env::var("BENCH_STORE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());

    // The simulator: its own runtime and threads, so its CPU can be told apart.
    let sim_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(SIM_THREADS)
        .enable_all()
        .build()
        .expect("simulator runtime");
    let sim = Arc::new(
        sim_runtime
            .block_on(Simulator::start(seed(count.max(overhead_count))))
            .expect("simulator starts"),
    );
    let responder = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("responder")
        .enable_all()
        .build()
        .expect("responder runtime");

    let real = BucketLimit::ARM_WRITES;
    let scaled = |factor: f64| BucketLimit {
        capacity: real.capacity,
        refill_per_second: real.refill_per_second * scale * factor,
    };
    let sim_limit = ThrottleLimit {
        capacity: real.capacity as u32,
        refill_per_second: real.refill_per_second * scale,
    };
    // Another caller uses a quarter of the subscription's bucket and had spent half of its
    // burst: ARM answers 429 before the responder's budget runs dry, and every 429 must end
    // in a retry, not a failed task.
    let shared_limit = ThrottleLimit {
        capacity: (real.capacity / 2.0) as u32,
        refill_per_second: real.refill_per_second * scale * 0.75,
    };
    let unlimited = BucketLimit {
        capacity: 1e9,
        refill_per_second: 1e9,
    };
    let specs = [
        RunSpec {
            label: "overhead",
            tasks: overhead_count,
            arm_limit: None,
            budget: unlimited,
        },
        RunSpec {
            label: "budget",
            tasks: count,
            arm_limit: Some(sim_limit),
            budget: scaled(1.0),
        },
        RunSpec {
            label: "shared-subscription",
            tasks: count,
            arm_limit: Some(shared_limit),
            budget: scaled(1.0),
        },
    ];
    println!("== workers: enable_key_vault_firewall tasks (GET, PATCH, GET per task) on the embedded store, SQLite journal, simulator over TLS with zero latency");
    println!("== ARM write bucket: capacity {}, {:.1}/s (ARM's 10/s × scale {scale}); reads 250, {:.1}/s", real.capacity, real.refill_per_second * scale, real.refill_per_second * scale * 2.5);
    println!("== load before: {}", uptime());
    println!();
    println!("| run | tasks | done | failed / other | wall s | tasks/s | ARM writes/s | responder CPU ms/task | simulator CPU ms/task | Azure requests/task | 429s from the simulator | deliveries (retried) |");
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let only = std::env::var("BENCH_WORKER_ONLY").ok();
    for spec in specs
        .iter()
        .filter(|spec| only.as_deref().is_none_or(|label| label == spec.label))
    {
        // On a worker thread of the runtime, as `serve` spawns its queue loops: a future run
        // by `block_on` itself sits on the main thread, and every I/O wake-up would cross
        // from the runtime's thread to it and back.
        let result = responder.block_on({
            let (sim, spec, base) = (sim.clone(), spec.clone(), base.clone());
            async move {
                tokio::spawn(async move { run_one(&sim, &spec, &base).await })
                    .await
                    .expect("the run ends")
            }
        });
        let seconds = result.wall.as_secs_f64();
        let other = if result.other.is_empty() {
            "0".to_string()
        } else {
            format!("{:?}", result.other)
        };
        let description = match spec.label {
            "overhead" => "no throttling, no budget: the responder's own cost".to_string(),
            "budget" => format!(
                "at the ARM write budget ({:.0}/s, simulator's bucket the same)",
                spec.budget.refill_per_second
            ),
            _ => format!(
                "the budget ({:.0}/s) above what ARM grants ({} then {:.2}/s, a second caller on the subscription): its 429s must be retried",
                spec.budget.refill_per_second,
                shared_limit.capacity,
                shared_limit.refill_per_second
            ),
        };
        println!(
            "| {} ({description}) | {} | {} | {} / {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.3} | {:.2} | {} | {} ({}) |",
            spec.label,
            spec.tasks,
            result.done,
            result.failed,
            other,
            seconds,
            result.done as f64 / seconds,
            result.writes as f64 / seconds,
            result.responder_cpu * 1000.0 / spec.tasks as f64,
            result.sim_cpu * 1000.0 / spec.tasks as f64,
            result.requests as f64 / spec.tasks as f64,
            result.throttled,
            result.deliveries,
            result.retried,
        );
        if spec.label == "budget" {
            let ideal =
                (spec.tasks as f64 - real.capacity).max(0.0) / (real.refill_per_second * scale);
            println!(
                "|   the budget's own floor for {} writes: {:.1} s (the first {} at once, then {:.1}/s); drained in {:.1} s = {:.0} % of the budget's rate | | | | | | | | | | | |",
                spec.tasks,
                ideal,
                real.capacity,
                real.refill_per_second * scale,
                seconds,
                if seconds > 0.0 { ideal / seconds * 100.0 } else { 0.0 }
            );
        }
        let unhandled = result.failed + result.other.values().sum::<usize>();
        println!("|   429s left unhandled (tasks not done): {unhandled} | | | | | | | | | | | |");
    }
    println!();
    println!("== load after: {}", uptime());
    drop(sim);
    drop(sim_runtime);
}

fn uptime() -> String {
    std::process::Command::new("uptime")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}
