//! A loopback-only HTTP/1.1 load generator: keep-alive connections, closed loop (saturation)
//! and open loop (fixed rate, latency measured from each request's scheduled time).
//!
//! Every run is bounded by a request count and a deadline, and only connects to 127.0.0.1.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::requests::Request;

/// What a run measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Stats {
    /// Requests answered 2xx.
    pub(crate) ok: u64,
    /// Requests that failed (connection error or non-2xx).
    pub(crate) errors: u64,
    /// Events carried by the answered requests.
    pub(crate) events: u64,
    /// Events the server reported as planned.
    pub(crate) planned: u64,
    /// Events the server reported as duplicates.
    pub(crate) duplicates: u64,
    /// Wall time of the measured window.
    pub(crate) elapsed: Duration,
    /// Latencies in nanoseconds.
    pub(crate) latencies: Vec<u64>,
    /// Requests not sent because the deadline passed (open loop falling behind).
    pub(crate) unsent: u64,
    /// Requests sent (or waiting for a connection) but not answered by the deadline.
    pub(crate) unanswered: u64,
    /// Most connections open at once.
    pub(crate) connections: usize,
}

impl Stats {
    /// Events per second.
    pub(crate) fn rate(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    /// A latency percentile in milliseconds.
    pub(crate) fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        self.latencies.sort_unstable();
        let rank = ((p / 100.0) * (self.latencies.len() - 1) as f64).round() as usize;
        self.latencies[rank] as f64 / 1e6
    }

    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.events += other.events;
        self.planned += other.planned;
        self.duplicates += other.duplicates;
        self.latencies.extend(other.latencies);
    }
}

/// One keep-alive connection.
pub(crate) struct Conn {
    stream: TcpStream,
    read: Vec<u8>,
    send: Vec<u8>,
}

/// What one answer said.
pub(crate) struct Answer {
    /// HTTP status.
    pub(crate) status: u16,
    /// `"outcome":"planned"` occurrences in the body.
    pub(crate) planned: u64,
    /// `"outcome":"duplicate"` occurrences in the body.
    pub(crate) duplicates: u64,
    /// The body.
    pub(crate) body: Vec<u8>,
}

impl Conn {
    /// Connects to a loopback address.
    pub(crate) async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        assert!(
            addr.ip().is_loopback(),
            "load generator targets loopback only"
        );
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            read: Vec::with_capacity(64 * 1024),
            send: Vec::with_capacity(64 * 1024),
        })
    }

    /// Sends a request (ids patched from `base`) and reads the whole answer.
    pub(crate) async fn call(&mut self, request: &Request, base: u64) -> std::io::Result<Answer> {
        self.send.clear();
        self.send.extend_from_slice(&request.bytes);
        request.patch(&mut self.send, base);
        self.stream.write_all(&self.send).await?;
        self.read_answer().await
    }

    /// Sends raw bytes and reads the answer.
    pub(crate) async fn call_raw(&mut self, bytes: &[u8]) -> std::io::Result<Answer> {
        self.stream.write_all(bytes).await?;
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> std::io::Result<Answer> {
        self.read.clear();
        let (head_end, length) = loop {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.read.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&self.read, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.read[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                break (end + 4, length);
            }
        };
        while self.read.len() < head_end + length {
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.read.extend_from_slice(&chunk[..n]);
        }
        let status = std::str::from_utf8(&self.read[9..12])
            .ok()
            .and_then(|code| code.parse().ok())
            .unwrap_or(0);
        let body = self.read[head_end..head_end + length].to_vec();
        Ok(Answer {
            status,
            planned: count(&body, b"\"outcome\":\"planned\""),
            duplicates: count(&body, b"\"outcome\":\"duplicate\""),
            body,
        })
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

fn count(haystack: &[u8], needle: &[u8]) -> u64 {
    haystack
        .windows(needle.len())
        .filter(|window| *window == needle)
        .count() as u64
}

/// Where requests come from: the templates in turn, ids from a counter shared by all runs.
#[derive(Clone)]
pub(crate) struct Feed {
    requests: Arc<Vec<Request>>,
    next: Arc<AtomicUsize>,
    ids: Arc<AtomicU64>,
    /// `(first base, count)`: reuse ids already sent and planned (redeliveries, duplicates).
    pub(crate) repeat: Option<(u64, u64)>,
}

impl Feed {
    /// A feed over `requests`, taking ids (in steps of 100: batch slots) from `ids`.
    pub(crate) fn new(requests: Vec<Request>, ids: Arc<AtomicU64>) -> Feed {
        Feed {
            requests: Arc::new(requests),
            next: Arc::new(AtomicUsize::new(0)),
            ids,
            repeat: None,
        }
    }

    fn take(&self) -> (&Request, u64) {
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        let request = &self.requests[index % self.requests.len()];
        let base = match self.repeat {
            Some((first, count)) => first + (index as u64 % count) * 100,
            None => self.ids.fetch_add(100, Ordering::Relaxed),
        };
        (request, base)
    }
}

async fn one(conn: &mut Conn, feed: &Feed, stats: &mut Stats, due: Instant) -> bool {
    let (request, base) = feed.take();
    match conn.call(request, base).await {
        Ok(answer) if (200..300).contains(&answer.status) => {
            stats.ok += 1;
            stats.events += request.events;
            stats.planned += answer.planned;
            stats.duplicates += answer.duplicates;
            stats.latencies.push(due.elapsed().as_nanos() as u64);
            true
        }
        Ok(_) => {
            stats.errors += 1;
            true
        }
        Err(_) => {
            stats.errors += 1;
            false
        }
    }
}

/// Closed loop: `concurrency` connections each send the next request as soon as the previous
/// answer arrives, for `duration` or `max_requests`, whichever comes first.
pub(crate) async fn closed_loop(
    addr: SocketAddr,
    feed: &Feed,
    concurrency: usize,
    duration: Duration,
    max_requests: u64,
) -> Stats {
    let started = Instant::now();
    let deadline = started + duration;
    let budget = Arc::new(AtomicU64::new(max_requests));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let feed = feed.clone();
        let budget = budget.clone();
        tasks.push(tokio::spawn(async move {
            let mut stats = Stats::default();
            let Ok(mut conn) = Conn::connect(addr).await else {
                stats.errors += 1;
                return stats;
            };
            while Instant::now() < deadline && budget.fetch_sub(1, Ordering::Relaxed) > 0 {
                let due = Instant::now();
                if !one(&mut conn, &feed, &mut stats, due).await {
                    match Conn::connect(addr).await {
                        Ok(fresh) => conn = fresh,
                        Err(_) => break,
                    }
                }
            }
            stats
        }));
    }
    let mut total = Stats {
        connections: concurrency,
        ..Stats::default()
    };
    for task in tasks {
        if let Ok(stats) = task.await {
            total.merge(stats);
        }
    }
    total.elapsed = started.elapsed();
    total
}

async fn wait_until(due: Instant) {
    loop {
        let now = Instant::now();
        if now >= due {
            return;
        }
        if due - now > Duration::from_micros(1500) {
            tokio::time::sleep_until((due - Duration::from_millis(1)).into()).await;
        } else {
            // The load generator has its own core: spin (while serving I/O) for precise pacing.
            tokio::task::yield_now().await;
        }
    }
}

/// Open loop: requests scheduled at a fixed `rate` for `duration`; each latency runs from the
/// scheduled send time (no coordinated omission). Connections are reused from a pool and
/// opened on demand when all are busy, up to `max_connections` (like the Functions host's own
/// bounded pool to its handler); a request due while all of them are busy waits for one, and
/// that wait counts in its latency. Without the bound, a server falling behind would be sent
/// a new connection per late request until its listen backlog overflows, and the run would
/// measure the kernel's SYN retransmissions (1 s, 3 s) instead of the server's queue.
pub(crate) async fn open_loop(
    addr: SocketAddr,
    feed: &Feed,
    rate: f64,
    duration: Duration,
    max_connections: usize,
) -> Stats {
    let max_connections = max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let pool: Arc<Mutex<Vec<Conn>>> = Arc::new(Mutex::new(Vec::new()));
    let warm = max_connections.min(16);
    for _ in 0..warm {
        if let Ok(conn) = Conn::connect(addr).await {
            pool.lock().expect("pool").push(conn);
        }
    }
    let opened = Arc::new(AtomicUsize::new(warm));
    let total_requests = (rate * duration.as_secs_f64()).round() as u64;
    let started = Instant::now() + Duration::from_millis(5);
    let hard_deadline = started + duration + Duration::from_secs(5);
    let results: Arc<Mutex<Stats>> = Arc::new(Mutex::new(Stats::default()));
    let mut tasks = Vec::with_capacity(total_requests as usize);
    let mut unsent = 0;
    for k in 0..total_requests {
        let due = started + Duration::from_secs_f64(k as f64 / rate);
        wait_until(due).await;
        if Instant::now() > hard_deadline {
            unsent = total_requests - k;
            break;
        }
        let (pool, results, feed, opened, slots) = (
            pool.clone(),
            results.clone(),
            feed.clone(),
            opened.clone(),
            slots.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let conn = pool.lock().expect("pool").pop();
            let conn = match conn {
                Some(conn) => Some(conn),
                None => {
                    opened.fetch_add(1, Ordering::Relaxed);
                    Conn::connect(addr).await.ok()
                }
            };
            let mut stats = Stats::default();
            let Some(mut conn) = conn else {
                stats.errors += 1;
                results.lock().expect("results").merge(stats);
                return;
            };
            let keep = one(&mut conn, &feed, &mut stats, due).await;
            results.lock().expect("results").merge(stats);
            if keep {
                pool.lock().expect("pool").push(conn);
            }
        }));
    }
    let mut unanswered = 0;
    for task in tasks {
        if tokio::time::timeout_at(hard_deadline.into(), task)
            .await
            .is_err()
        {
            unanswered += 1;
        }
    }
    let elapsed = started.elapsed();
    let mut stats = std::mem::take(&mut *results.lock().expect("results"));
    stats.elapsed = elapsed;
    stats.unsent = unsent;
    stats.unanswered = unanswered;
    stats.connections = opened.load(Ordering::Relaxed);
    stats
}
