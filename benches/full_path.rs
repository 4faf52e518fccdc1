//! Full-path benchmark: the release server under loopback load (core 0 serves, core 1 loads), with a floor and a parse-only server as ratios; prints the results table.
//!
//! Run it with `scripts/bench.sh` (or `cargo bench --bench full_path`). Knobs (environment):
//! `BENCH_SECONDS` per measured run (default 3), `BENCH_ALERTS` distinct alerts (default 400),
//! `BENCH_CONCURRENCY` connections at saturation (default 16), `BENCH_KV_CONCURRENCY` for the
//! Key Vault target rows (default 32), `BENCH_OPEN_LOOP_CONNECTIONS` the most connections a
//! fixed-rate row opens (default 64), `BENCH_SERVER` another server binary to measure
//! (default this build's), `BENCH_STORE_DIR` where the
//! durable store goes (default the system temp folder), `ServiceBusConnection` (an
//! `amqp://` URL: adds the broker rows).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::corpus::{self, AlertEvent};
use common::load::{closed_loop, open_loop, Feed, Stats};
use common::requests::{self, Request};

const BUILT_SERVER: &str = env!("CARGO_BIN_EXE_defender-responder");

/// The server under test: this build's binary, or `BENCH_SERVER` (another build of it, e.g.
/// to compare two commits in one run on one machine).
fn server_binary() -> String {
    std::env::var("BENCH_SERVER").unwrap_or_else(|_| BUILT_SERVER.to_string())
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--reference-servers") {
        let floor = args[at + 1].parse().expect("floor port");
        let parse = args[at + 2].parse().expect("parse port");
        let typed = args[at + 3].parse().expect("typed-parse port");
        common::reference::serve(floor, parse, typed);
        return;
    }
    // The load generator takes core 1 (threads made later inherit it); servers get core 0.
    let _ = Command::new("taskset")
        .args(["-cp", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(run());
}

/// A free loopback port.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("free port")
}

/// A server process pinned to core 0 with one tokio worker.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// The `publisher=` field of its first log line, when it logs one.
    publisher: Arc<Mutex<Option<String>>>,
    /// Time from spawn to the first successful readiness probe.
    ready_after: Duration,
    /// Whether it logged that its Service Bus start-up check passed (readiness never waits for it).
    broker_connected: Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    /// A server the run cannot do without: one that does not get ready ends the benchmark.
    fn spawn(program: &str, args: &[&str], port: u16, envs: &[(&str, String)]) -> Server {
        Server::try_spawn(program, args, port, envs)
            .unwrap_or_else(|reason| panic!("{program} {args:?}: {reason}"))
    }

    /// A server that may fail to start (the broker row: a broker without AMQP 1.0); the error
    /// names why: its readiness answer, or its exit status and last warning or error line.
    fn try_spawn(
        program: &str,
        args: &[&str],
        port: u16,
        envs: &[(&str, String)],
    ) -> Result<Server, String> {
        let mut command = Command::new("taskset");
        command
            .args(["-c", "0", program])
            .args(args)
            .env("TOKIO_WORKER_THREADS", "1")
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The publisher is the run's choice, never the shell's: an inherited
        // `ServiceBusConnection` (scripts/bench.sh exports one for the broker rows) would make
        // every row publish to the broker while labelled as the embedded store.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ServiceBusConnection") {
                command.env_remove(name);
            }
        }
        for (name, value) in envs {
            command.env(name, value);
        }
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn server");
        let publisher = Arc::new(Mutex::new(None));
        let last_line = Arc::new(Mutex::new(String::new()));
        // Drain the logs as the Functions host would (a pipe read continuously).
        let stdout = child.stdout.take().expect("stdout");
        let seen = publisher.clone();
        let last = last_line.clone();
        let broker_connected = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let connected = broker_connected.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                // The info lines (one per alert) are never the reason a start failed.
                if line.contains(" ERROR ") || line.contains(" WARN ") {
                    remember_line(&last, &line);
                }
                if line.contains("Service Bus connected") {
                    connected.store(true, std::sync::atomic::Ordering::Relaxed);
                }
                if let Some(at) = line.find("publisher=") {
                    let value: String = line[at + 10..]
                        .trim_start_matches('"')
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    *seen.lock().expect("publisher") = Some(value);
                }
                line.clear();
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let last = last_line.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                remember_line(&last, &line);
                line.clear();
            }
        });
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = Server {
            child,
            addr,
            publisher,
            ready_after: Duration::ZERO,
            broker_connected,
        };
        match wait_ready(&mut server.child, addr, started) {
            Ok(ready_after) => {
                server.ready_after = ready_after;
                Ok(server)
            }
            Err(reason) => {
                drop(server);
                // The log readers finish once the pipes close.
                std::thread::sleep(Duration::from_millis(50));
                let last = last_line.lock().expect("last line").clone();
                // Its own answer says why better than its log does.
                Err(if last.is_empty() || reason.contains("answered") {
                    reason
                } else {
                    format!("{reason}; it logged: {last}")
                })
            }
        }
    }

    /// The publisher its start-up line names. That line is written before the server listens,
    /// but the thread reading the pipe may not have reached it yet: wait for it, up to 2 s.
    fn publisher(&self) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let seen = self.publisher.lock().expect("publisher").clone();
            if seen.is_some() || Instant::now() >= deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits up to 10 s for the Service Bus start-up check to pass; the error is the server's
    /// own readiness answer (a missing queue, a refused password).
    fn wait_broker_connected(&self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .broker_connected
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(match probe_once(self.addr) {
            Some(answer) => format!("no broker connection after 10 s; GET / answered {answer}"),
            None => "no broker connection after 10 s".into(),
        })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The real server's pid (taskset execs, so it is the child's).
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: f64 = fields
            .get(11..13)
            .map(|f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum())
            .unwrap_or(0.0);
        ticks / clock_ticks()
    }

    fn status_kb(&self, key: &str) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse().ok())
            .unwrap_or(0)
    }

    fn stop(self) {
        drop(self);
    }
}

impl Drop for Server {
    /// Servers never outlive the benchmark, even when a run panics.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Keeps a server's last non-empty log line, for the reason a start failed.
fn remember_line(last: &Mutex<String>, line: &str) {
    let line = line.trim();
    if !line.is_empty() {
        *last.lock().expect("last line") = line.chars().take(300).collect();
    }
}

/// Polls `GET /` (blocking, every 100 µs) until it answers 200; bounded at 10 s, and over as
/// soon as the process exits. A server that answers "not ready" is asked every 5 ms, and its
/// last answer is the reason given when it never gets ready.
fn wait_ready(child: &mut Child, addr: SocketAddr, started: Instant) -> Result<Duration, String> {
    let mut last_answer = None;
    while started.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited before it was ready ({status})"));
        }
        let mut pause = Duration::from_micros(100);
        if let Some(answer) = probe_once(addr) {
            if answer.starts_with("200") {
                return Ok(started.elapsed());
            }
            last_answer = Some(answer);
            pause = Duration::from_millis(5);
        }
        std::thread::sleep(pause);
    }
    Err(match last_answer {
        Some(answer) => format!("not ready on {addr} after 10 s; GET / answered {answer}"),
        None => format!("not ready on {addr} after 10 s"),
    })
}

/// One `GET /` on a new connection: the answer's status and the start of its body, or nothing
/// when no answer came.
fn probe_once(addr: SocketAddr) -> Option<String> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(&requests::probe()).ok()?;
    let mut buffer = [0u8; 2048];
    let n = stream.read(&mut buffer).ok()?;
    (n >= 12).then(|| summarize_answer(&buffer[..n]))
}

/// An HTTP answer as its status code and the start of its body.
fn summarize_answer(answer: &[u8]) -> String {
    let text = String::from_utf8_lossy(answer);
    let status = text.get(9..12).unwrap_or("???");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.trim())
        .unwrap_or("");
    format!("{status} {}", body.chars().take(300).collect::<String>())
}

/// One row of the results table.
struct Row {
    name: String,
    stats: Option<Stats>,
    cpu_us_per_event: f64,
    cpu_share: f64,
    note: String,
}

async fn saturate(
    server: &Server,
    feed: &Feed,
    seconds: u64,
    concurrency: usize,
) -> (Stats, f64, f64) {
    // Warm-up: connections, allocator, SQLite page cache.
    let _ = closed_loop(
        server.addr,
        feed,
        concurrency,
        Duration::from_millis(500),
        1_000_000,
    )
    .await;
    let cpu_before = server.cpu_seconds();
    let stats = closed_loop(
        server.addr,
        feed,
        concurrency,
        Duration::from_secs(seconds),
        10_000_000,
    )
    .await;
    let cpu = server.cpu_seconds() - cpu_before;
    let per_event = cpu * 1e6 / stats.events.max(1) as f64;
    (stats.clone(), per_event, cpu / stats.elapsed.as_secs_f64())
}

/// The most connections a fixed-rate row opens to the server: the Functions host, too, calls
/// its handler over a bounded pool, so a late request waits for a connection (and its wait
/// counts in its latency) instead of opening one more.
const OPEN_LOOP_CONNECTIONS: u64 = 64;

async fn fixed_rate(server: &Server, feed: &Feed, rate: f64, seconds: u64) -> (Stats, f64, f64) {
    let cpu_before = server.cpu_seconds();
    let connections = env_number("BENCH_OPEN_LOOP_CONNECTIONS", OPEN_LOOP_CONNECTIONS) as usize;
    let stats = open_loop(
        server.addr,
        feed,
        rate,
        Duration::from_secs(seconds),
        connections,
    )
    .await;
    let cpu = server.cpu_seconds() - cpu_before;
    let per_event = cpu * 1e6 / stats.events.max(1) as f64;
    (stats.clone(), per_event, cpu / stats.elapsed.as_secs_f64())
}

/// Sends a few requests and checks the server plans them (unique ids, no rejects).
async fn sanity(server: &Server, feed: &Feed, requests: usize) -> Result<(), String> {
    let stats = closed_loop(
        server.addr,
        feed,
        1,
        Duration::from_secs(5),
        requests as u64,
    )
    .await;
    if stats.errors > 0 || stats.planned != stats.events {
        return Err(format!(
            "sanity: {} requests, {} events, {} planned, {} duplicates, {} errors",
            stats.ok, stats.events, stats.planned, stats.duplicates, stats.errors
        ));
    }
    Ok(())
}

fn fsync_cost(dir: &Path) -> (f64, f64) {
    let path = dir.join("fsync-probe.bin");
    let mut file = std::fs::File::create(&path).expect("fsync probe");
    let block = vec![7u8; 4096];
    let mut times = Vec::new();
    for _ in 0..200 {
        file.write_all(&block).expect("write");
        let at = Instant::now();
        file.sync_data().expect("fdatasync");
        times.push(at.elapsed().as_secs_f64() * 1e6);
    }
    let _ = std::fs::remove_file(&path);
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

fn filesystem_of(dir: &Path) -> String {
    Command::new("findmnt")
        .args(["-no", "FSTYPE,SOURCE", "-T"])
        .arg(dir)
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" on ")
        })
        .unwrap_or_else(|_| "unknown".into())
}

fn store_dir(base: &Path, name: &str) -> PathBuf {
    let dir = base.join(format!("defender-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("store dir");
    dir
}

fn summarize_sizes(alerts: &[AlertEvent]) -> String {
    let mut sizes: Vec<usize> = alerts.iter().map(|alert| alert.bytes).collect();
    sizes.sort_unstable();
    let mean = sizes.iter().sum::<usize>() / sizes.len();
    let types: std::collections::BTreeSet<&str> = alerts
        .iter()
        .map(|alert| alert.alert_type.as_str())
        .collect();
    let fixtures: std::collections::BTreeSet<&str> =
        alerts.iter().map(|alert| alert.fixture.as_str()).collect();
    format!(
        "{} alerts from {} fixtures, {} alert types; event size min {:.1} KB, median {:.1} KB, mean {:.1} KB, max {:.1} KB",
        alerts.len(),
        fixtures.len(),
        types.len(),
        sizes[0] as f64 / 1024.0,
        sizes[sizes.len() / 2] as f64 / 1024.0,
        mean as f64 / 1024.0,
        sizes[sizes.len() - 1] as f64 / 1024.0
    )
}

fn mean_body(requests: &[Request]) -> f64 {
    requests.iter().map(|r| r.body_len).sum::<usize>() as f64 / requests.len() as f64 / 1024.0
}

/// The broker's own send rate, from an independent AMQP 1.0 client (python-qpid-proton).
fn broker_raw_rate(url: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/amqp_send_rate.py");
    let output = Command::new("taskset")
        .args(["-c", "1", "python3"])
        .arg(script)
        .args([url, "20000", "2048"])
        .output();
    match output {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => format!(
            "n/a ({})",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("client failed")
        ),
        Err(err) => format!("n/a ({err})"),
    }
}

async fn run() {
    let seconds = env_number("BENCH_SECONDS", 3);
    let alert_count = env_number("BENCH_ALERTS", 400) as usize;
    let concurrency = env_number("BENCH_CONCURRENCY", 16) as usize;
    let server_path = server_binary();
    let program = server_path.as_str();
    let base = std::env::var("BENCH_STORE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir());

    let alerts = corpus::generate(alert_count);
    let corpus_line = summarize_sizes(&alerts);
    let objects: Vec<Request> = alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| requests::invocation(alert, false, i))
        .collect();
    let strings: Vec<Request> = alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| requests::invocation(alert, true, i))
        .collect();
    let event_grid: Vec<AlertEvent> = alerts
        .iter()
        .filter(|alert| alert.event.get("eventType").is_some())
        .cloned()
        .collect();
    let batches: Vec<Request> = event_grid
        .chunks(10)
        .filter(|c| c.len() == 10)
        .map(requests::batch)
        .collect();
    // The target's shape: distinct Key Vault alerts of 9 KB that each plan 9 tasks.
    let key_vault_alerts = corpus::key_vault(40, 9 * 1024, 9);
    assert!(
        !key_vault_alerts.is_empty(),
        "no Key Vault fixture plans 9 tasks at 9 KB"
    );
    let key_vault_requests: Vec<Request> = key_vault_alerts
        .iter()
        .enumerate()
        .map(|(i, alert)| requests::invocation(alert, false, i))
        .collect();
    let kv_concurrency = env_number("BENCH_KV_CONCURRENCY", 32) as usize;
    let ids = Arc::new(AtomicU64::new(1));
    let key_vault_feed = Feed::new(key_vault_requests.clone(), ids.clone());
    let object_feed = Feed::new(objects.clone(), ids.clone());
    let string_feed = Feed::new(strings, ids.clone());
    let batch_feed = Feed::new(batches.clone(), ids.clone());

    // Start -> ready, five cold starts, each on a fresh store.
    let mut starts = Vec::new();
    let mut idle_rss = 0;
    for attempt in 0..5 {
        let dir = store_dir(&base, &format!("start{attempt}"));
        let server = Server::spawn(
            program,
            &["serve"],
            free_port(),
            &[(
                "RESPONDER_STORE_PATH",
                dir.join("store.sqlite3").display().to_string(),
            )],
        );
        starts.push(server.ready_after.as_secs_f64() * 1e3);
        if attempt == 4 {
            std::thread::sleep(Duration::from_millis(300));
            idle_rss = server.status_kb("VmRSS:");
        }
        server.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }
    starts.sort_by(f64::total_cmp);

    let mut rows: Vec<Row> = Vec::new();

    // Floor and parse-only, same axum, same runtime settings, same core.
    let (floor_port, parse_port, typed_port) = (free_port(), free_port(), free_port());
    let me = std::env::current_exe().expect("bench executable");
    let mut floor_server = Server::spawn(
        &me.display().to_string(),
        &[
            "--reference-servers",
            &floor_port.to_string(),
            &parse_port.to_string(),
            &typed_port.to_string(),
        ],
        floor_port,
        &[],
    );
    let (floor, floor_cpu, floor_share) =
        saturate(&floor_server, &object_feed, seconds, concurrency).await;
    floor_server.addr = SocketAddr::from(([127, 0, 0, 1], parse_port));
    let (parse, parse_cpu, parse_share) =
        saturate(&floor_server, &object_feed, seconds, concurrency).await;
    floor_server.addr = SocketAddr::from(([127, 0, 0, 1], typed_port));
    let (typed, typed_cpu, typed_share) =
        saturate(&floor_server, &key_vault_feed, seconds, kv_concurrency).await;
    let typed_rate = typed.rate();
    let reference_rss = floor_server.status_kb("VmHWM:");
    floor_server.stop();
    let floor_rate = floor.rate();
    rows.push(Row {
        name: "floor: same axum server, no parsing".into(),
        stats: Some(floor),
        cpu_us_per_event: floor_cpu,
        cpu_share: floor_share,
        note: String::new(),
    });
    rows.push(Row {
        name: "parse-only: invocation + decode_event".into(),
        stats: Some(parse),
        cpu_us_per_event: parse_cpu,
        cpu_share: parse_share,
        note: String::new(),
    });

    rows.push(Row {
        name: format!(
            "typed-parse reference: Key Vault 9 KB alerts, typed structs + 9-task plan, no store ({kv_concurrency} connections)"
        ),
        stats: Some(typed),
        cpu_us_per_event: typed_cpu,
        cpu_share: typed_share,
        note: String::new(),
    });

    // The full path on a durable store.
    let dir = store_dir(&base, "full");
    let store_path = dir.join("store.sqlite3");
    let (fsync_p50, fsync_p99) = fsync_cost(&dir);
    let server = Server::spawn(
        program,
        &["serve"],
        free_port(),
        &[("RESPONDER_STORE_PATH", store_path.display().to_string())],
    );
    if let Err(problem) = sanity(&server, &object_feed, 20).await {
        panic!("{problem}");
    }
    // The rows below are the embedded store's: refuse to label another publisher's numbers so.
    match server.publisher().as_deref() {
        Some("embedded") => {}
        Some(other) => {
            panic!("the full-path server publishes with `{other}`, not the embedded store")
        }
        None => panic!("the full-path server logged no `publisher=` start-up line within 2 s"),
    }
    let first_base = ids.load(std::sync::atomic::Ordering::Relaxed);
    let (object_sat, cpu, share) = saturate(&server, &object_feed, seconds, concurrency).await;
    let saturation = object_sat.rate();
    rows.push(Row {
        name: "full path, event object, saturation".into(),
        stats: Some(object_sat),
        cpu_us_per_event: cpu,
        cpu_share: share,
        note: String::new(),
    });
    let (key_vault, kv_cpu, kv_share) =
        saturate(&server, &key_vault_feed, seconds, kv_concurrency).await;
    let key_vault_rate = key_vault.rate();
    let key_vault_ratio = key_vault_rate / typed_rate;
    rows.push(Row {
        name: format!(
            "full path, Key Vault 9 KB alerts (9 tasks each), saturation ({kv_concurrency} connections)"
        ),
        stats: Some(key_vault),
        cpu_us_per_event: kv_cpu,
        cpu_share: kv_share,
        note: format!("{key_vault_ratio:.2}× the typed-parse reference"),
    });
    let half = key_vault_rate / 2.0;
    let (stats, cpu, share) = fixed_rate(&server, &key_vault_feed, half, seconds).await;
    rows.push(Row {
        name: format!(
            "full path, Key Vault 9 KB alerts, fixed 50% of their saturation ({half:.0}/s)"
        ),
        stats: Some(stats),
        cpu_us_per_event: cpu,
        cpu_share: share,
        note: String::new(),
    });
    let (stats, cpu, share) = saturate(&server, &string_feed, seconds, concurrency).await;
    rows.push(Row {
        name: "full path, event as JSON string, saturation".into(),
        stats: Some(stats),
        cpu_us_per_event: cpu,
        cpu_share: share,
        note: String::new(),
    });
    let (stats, cpu, share) = saturate(&server, &batch_feed, seconds, concurrency.min(4)).await;
    rows.push(Row {
        name: "full path, webhook batches of 10, saturation".into(),
        stats: Some(stats),
        cpu_us_per_event: cpu,
        cpu_share: share,
        note: "events/s; latency per batch".into(),
    });
    // Redeliveries: ids of alerts already planned in the runs above.
    let sent = (ids.load(std::sync::atomic::Ordering::Relaxed) - first_base) / 100;
    let mut redelivery = object_feed.clone();
    redelivery.repeat = Some((first_base, sent.clamp(1, 2_000)));
    let (stats, cpu, share) = saturate(&server, &redelivery, seconds, concurrency).await;
    rows.push(Row {
        name: "full path, redeliveries (duplicates: no plan, no publish)".into(),
        stats: Some(stats),
        cpu_us_per_event: cpu,
        cpu_share: share,
        note: "labelled: not new alerts".into(),
    });
    for percent in [10.0, 50.0, 80.0] {
        let rate = saturation * percent / 100.0;
        let (stats, cpu, share) = fixed_rate(&server, &object_feed, rate, seconds).await;
        rows.push(Row {
            name: format!("full path, object, fixed {percent:.0}% of saturation ({rate:.0}/s)"),
            stats: Some(stats),
            cpu_us_per_event: cpu,
            cpu_share: share,
            note: String::new(),
        });
    }
    let peak_rss = server.status_kb("VmHWM:");
    let store_bytes = std::fs::metadata(&store_path).map(|m| m.len()).unwrap_or(0);
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);

    // Profile aid, not a durability option: the same path with the store on tmpfs (fsync free).
    if Path::new("/dev/shm").is_dir() {
        let dir = store_dir(Path::new("/dev/shm"), "tmpfs");
        let server = Server::spawn(
            program,
            &["serve"],
            free_port(),
            &[(
                "RESPONDER_STORE_PATH",
                dir.join("store.sqlite3").display().to_string(),
            )],
        );
        let (stats, cpu, share) = saturate(&server, &object_feed, seconds, concurrency).await;
        rows.push(Row {
            name: "full path, object, store on tmpfs (no real fsync: diagnosis only)".into(),
            stats: Some(stats),
            cpu_us_per_event: cpu,
            cpu_share: share,
            note: "not durable".into(),
        });
        server.stop();
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Through the broker, when one is configured.
    let broker = std::env::var("ServiceBusConnection")
        .ok()
        .filter(|url| !url.is_empty());
    let mut broker_raw = "n/a (ServiceBusConnection not set)".to_string();
    if let Some(url) = &broker {
        let dir = store_dir(&base, "broker");
        let started = Server::try_spawn(
            program,
            &["serve"],
            free_port(),
            &[
                (
                    "RESPONDER_STORE_PATH",
                    dir.join("store.sqlite3").display().to_string(),
                ),
                ("ServiceBusConnection", url.clone()),
            ],
        );
        let not_measured = |note: String| Row {
            name: "full path, object, publishing to the AMQP broker".into(),
            stats: None,
            cpu_us_per_event: f64::NAN,
            cpu_share: f64::NAN,
            note,
        };
        match started {
            // A broker that refuses the server (no AMQP 1.0, say) costs this row, not the table.
            Err(reason) => rows.push(not_measured(format!(
                "n/a (server did not start: {reason})"
            ))),
            Ok(server) => {
                let publisher = server.publisher().unwrap_or_default();
                if publisher.is_empty() || publisher == "embedded" {
                    rows.push(not_measured("n/a (publisher not built)".into()));
                } else if let Err(reason) = server.wait_broker_connected() {
                    rows.push(not_measured(format!("n/a ({reason})")));
                } else {
                    let (stats, cpu, share) =
                        saturate(&server, &object_feed, seconds, concurrency).await;
                    rows.push(Row {
                        name: format!(
                            "full path, object, publishing to the AMQP broker ({publisher})"
                        ),
                        stats: Some(stats),
                        cpu_us_per_event: cpu,
                        cpu_share: share,
                        note: String::new(),
                    });
                }
                server.stop();
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        broker_raw = broker_raw_rate(url);
    }

    // The table.
    println!();
    println!("| run | events/s | % of floor | server CPU µs/event | server CPU use | p50 ms | p99 ms | p99.9 ms | planned | duplicates | errors | note |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for row in &mut rows {
        match &mut row.stats {
            Some(stats) => {
                let rate = stats.rate();
                let mut note = row.note.clone();
                if stats.unsent > 0 {
                    note = format!("{note} {} unsent", stats.unsent);
                }
                if stats.unanswered > 0 {
                    note = format!("{note} {} unanswered by the deadline", stats.unanswered);
                }
                println!(
                    "| {} | {:.0} | {:.0}% | {:.1} | {:.0}% | {:.2} | {:.2} | {:.2} | {} | {} | {} | {} |",
                    row.name, rate, 100.0 * rate / floor_rate, row.cpu_us_per_event, 100.0 * row.cpu_share,
                    stats.percentile_ms(50.0), stats.percentile_ms(99.0), stats.percentile_ms(99.9),
                    stats.planned, stats.duplicates, stats.errors, note.trim()
                );
            }
            None => println!("| {} | {} | | | | | | | | | | |", row.name, row.note),
        }
    }
    println!("| AMQP broker raw send rate (python-qpid-proton, 2 KB durable messages) | {broker_raw} | | | | | | | | | | |");
    println!();
    let binary_size = std::fs::metadata(program).map(|m| m.len()).unwrap_or(0);
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| start → ready (first 200 on GET /), 5 cold starts | median {:.1} ms, max {:.1} ms |",
        starts[2], starts[4]
    );
    println!(
        "| idle RSS (ready + 300 ms) | {:.1} MB |",
        idle_rss as f64 / 1024.0
    );
    println!(
        "| peak RSS (VmHWM after all full-path runs) | {:.1} MB |",
        peak_rss as f64 / 1024.0
    );
    println!(
        "| reference servers' peak RSS | {:.1} MB |",
        reference_rss as f64 / 1024.0
    );
    println!(
        "| binary size (release, stripped) | {:.2} MB ({binary_size} bytes) |",
        binary_size as f64 / 1048576.0
    );
    println!(
        "| store | {} on {} ; {:.1} MB after the runs |",
        store_path.display(),
        filesystem_of(&base),
        store_bytes as f64 / 1048576.0
    );
    println!("| fdatasync of 4 KB in the store's folder | p50 {fsync_p50:.0} µs, p99 {fsync_p99:.0} µs |");
    println!("| corpus | {corpus_line} |");
    println!(
        "| Key Vault target corpus | {} distinct 9-task Key Vault alerts, mean {:.1} KB |",
        key_vault_alerts.len(),
        key_vault_alerts.iter().map(|a| a.bytes).sum::<usize>() as f64
            / key_vault_alerts.len() as f64
            / 1024.0
    );
    println!(
        "| full path ÷ typed-parse reference (Key Vault 9 KB, same run) | {key_vault_rate:.0} / {typed_rate:.0} = {key_vault_ratio:.2} |"
    );
    println!("| request bodies (host shape carries the event and Metadata.data) | object form mean {:.1} KB; batches of 10 mean {:.1} KB |", mean_body(&objects), mean_body(&batches));
    println!("| load | {seconds} s per run after 0.5 s warm-up; {concurrency} connections at saturation (4 for batches), at most {} on a fixed-rate row; server `taskset -c 0` + TOKIO_WORKER_THREADS=1, load generator on core 1 |", env_number("BENCH_OPEN_LOOP_CONNECTIONS", OPEN_LOOP_CONNECTIONS));
}
