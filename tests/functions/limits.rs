//! The server's bounds over raw TCP: slow headers, stalled bodies and idle keep-alives are
//! closed, the connection cap holds, oversize batches are refused, and a heavy invocation
//! does not stall the readiness probe.

use std::time::{Duration, Instant};

use defender_responder::config::Limits;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{events_of, invocation, LiveServer, TestApp};

/// Far longer than any bound below: waiting this long means "never".
const NEVER: Duration = Duration::from_secs(10);

fn quick() -> Limits {
    Limits {
        header_timeout: Duration::from_millis(300),
        body_timeout: Duration::from_millis(300),
        idle_timeout: Duration::from_millis(300),
        ..Limits::default()
    }
}

/// Reads until the server closes the connection; panics if it does not within [`NEVER`].
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buffer = [0u8; 4096];
    let deadline = Instant::now() + NEVER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(Ok(n)) => got.extend_from_slice(&buffer[..n]),
            Err(_) => panic!(
                "the server kept the connection open for {NEVER:?}; got {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
}

#[tokio::test]
async fn a_slow_header_is_cut_off() {
    let app = TestApp::new();
    let server = LiveServer::start(app.state.clone(), quick()).await;
    // Half a header, then nothing.
    let mut stalled = TcpStream::connect(server.address).await.unwrap();
    stalled
        .write_all(b"POST /api/defender-alerts HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    read_until_closed(&mut stalled).await;
    // A header trickled in byte by byte is cut off too: the bound runs from its first byte.
    let mut trickle = TcpStream::connect(server.address).await.unwrap();
    let writer = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nHost: t\r\nX-Slow: ".iter().cycle() {
            if trickle.write_all(&[*byte]).await.is_err() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    });
    let closed = tokio::time::timeout(NEVER, writer).await;
    assert!(
        matches!(closed, Ok(Ok(true))),
        "the trickled header was not cut off"
    );
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_on_both_routes() {
    let app = TestApp::new();
    let server = LiveServer::start(app.state.clone(), quick()).await;
    for route in ["/api/defender-alerts", "/DefenderAlert"] {
        let mut stream = TcpStream::connect(server.address).await.unwrap();
        let head = format!(
            "POST {route} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"id\":"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let reply = read_until_closed(&mut stream).await;
        assert!(reply.starts_with("HTTP/1.1 408"), "{route}: {reply}");
        assert!(reply.contains("did not arrive within"), "{route}: {reply}");
    }
    assert_eq!(app.counts(), (0, 0, 0));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_its_reply() {
    let app = TestApp::new();
    let server = LiveServer::start(app.state.clone(), quick()).await;
    let mut stream = TcpStream::connect(server.address).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut stream).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    // A connection that never sends anything is closed as well.
    let mut silent = TcpStream::connect(server.address).await.unwrap();
    assert_eq!(read_until_closed(&mut silent).await, "");
}

/// `count` connections stopped mid-header: busy, not idle, for the whole (10 s) header timeout,
/// so each holds a slot.
async fn hold_mid_header(server: &LiveServer, count: usize) -> Vec<TcpStream> {
    let mut holders = Vec::with_capacity(count);
    for _ in 0..count {
        let mut holder = TcpStream::connect(server.address).await.unwrap();
        holder
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n")
            .await
            .unwrap();
        holders.push(holder);
    }
    holders
}

#[tokio::test]
async fn past_the_connection_cap_new_connections_wait_for_a_free_slot() {
    let app = TestApp::new();
    let limits = Limits {
        max_connections: 4,
        ..Limits::default()
    };
    let server = LiveServer::start(app.state.clone(), limits).await;
    let mut holders = hold_mid_header(&server, 4).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let client = reqwest::Client::new();
    let waiting = tokio::spawn({
        let url = server.url.clone();
        async move { client.get(&url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !waiting.is_finished(),
        "a fifth connection was served while four held every slot"
    );
    holders.pop();
    let status = tokio::time::timeout(NEVER, waiting).await.unwrap().unwrap();
    assert_eq!(status.unwrap(), 200);
}

#[tokio::test]
async fn a_burst_past_the_cap_and_past_the_standard_backlog_waits_and_is_served() {
    let app = TestApp::new();
    let limits = Limits {
        max_connections: 4,
        ..Limits::default()
    };
    let server = LiveServer::start(app.state.clone(), limits).await;
    let holders = hold_mid_header(&server, 4).await;
    // Every slot is busy, so these wait in the kernel's accept queue. With the standard
    // library's backlog of 128 the kernel drops the SYNs past it, and the client retries only
    // after a second: a handshake that takes that long is a connection the backlog refused.
    let mut waiting = Vec::new();
    for i in 0..300 {
        let connected = tokio::time::timeout(
            Duration::from_millis(700),
            TcpStream::connect(server.address),
        )
        .await
        .unwrap_or_else(|_| panic!("connection {i} past the cap found the listen backlog full"));
        waiting.push(connected.unwrap());
    }
    // The last of the burst is served once the others leave.
    let mut last = waiting.pop().unwrap();
    drop(waiting);
    drop(holders);
    last.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut last).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
}

#[tokio::test]
async fn idle_kept_alive_connections_give_their_slots_to_waiting_ones() {
    let app = TestApp::new();
    let limits = Limits {
        max_connections: 4,
        // Far longer than the test: only the cap can close these.
        idle_timeout: Duration::from_secs(600),
        ..Limits::default()
    };
    let server = LiveServer::start(app.state.clone(), limits).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        let mut connection = TcpStream::connect(server.address).await.unwrap();
        connection
            .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .await
            .unwrap();
        let mut buffer = [0u8; 1024];
        assert!(connection.read(&mut buffer).await.unwrap() > 0);
        idle.push(connection);
    }
    // Each fresh client takes a slot from an idle one and then idles itself.
    for _ in 0..8 {
        let client = reqwest::Client::new();
        let reply = tokio::time::timeout(NEVER, client.get(&server.url).send())
            .await
            .expect("a waiting connection was not served while idle ones held the slots")
            .unwrap();
        assert_eq!(reply.status(), 200);
    }
}

#[tokio::test]
async fn a_batch_of_more_events_than_event_grid_sends_is_refused_with_413() {
    let app = TestApp::new();
    // 1 MiB of 540,000 tiny invalid events.
    let body = format!("[{}]", vec!["0"; 540_000].join(","));
    assert!(body.len() <= defender_responder::decode::MAX_BODY_BYTES);
    let (status, reply) = app
        .webhook(body.into_bytes(), "application/json", "Notification")
        .await;
    assert_eq!(status, 413, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("at most 5000"),
        "{reply}"
    );
}

#[tokio::test]
async fn the_reply_to_a_full_batch_of_bad_events_stays_small_and_counts_every_event() {
    let app = TestApp::new();
    let max = defender_responder::decode::MAX_EVENTS_PER_DELIVERY;
    let body = format!("[{}]", vec!["0"; max].join(","));
    let request = axum::http::Request::post("/api/defender-alerts")
        .header("content-type", "application/json")
        .header("aeg-event-type", "Notification")
        .body(axum::body::Body::from(body))
        .unwrap();
    let response = tower::ServiceExt::oneshot(defender_responder::app(app.state.clone()), request)
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert!(bytes.len() < 32 * 1024, "reply of {} bytes", bytes.len());
    let reply: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(reply["counts"], json!({"rejected": max}));
    assert_eq!(reply["events"].as_array().unwrap().len(), 100);
    assert_eq!(reply["events_omitted"], max - 100);
    assert!(reply["events"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("not an object"));
}

/// A Key Vault alert naming `objects` secrets, padded to about `bytes`.
fn heavy_alert(objects: usize, bytes: usize) -> Value {
    let mut event = events_of("alerts/keyvault-KV_ListGetAnomaly-egwfa.json").remove(0);
    let uris: Vec<String> = (0..objects)
        .map(|n| format!("https://kv-contoso-payments.vault.azure.net/secrets/s{n}"))
        .collect();
    event["data"]["ExtendedProperties"]["Target"] = json!(uris.join(","));
    let size = event.to_string().len();
    event["data"]["Description"] = json!("x".repeat(bytes.saturating_sub(size)));
    event
}

#[test]
fn the_readiness_probe_answers_while_a_4_mb_invocation_is_planned() {
    let app = TestApp::new();
    // The server on one async worker: any CPU work left on it would stall every request.
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let state = app.state.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let server = LiveServer::start(state, Limits::default()).await;
            address_tx.send(server.address).unwrap();
            std::future::pending::<()>().await;
        });
    });
    let address = address_rx.recv().unwrap();
    let payload = invocation(&heavy_alert(20_000, 4 * 1024 * 1024 - 4096)).to_string();
    assert!(payload.len() > 4_000_000 && payload.len() <= 4 * 1024 * 1024);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST /DefenderAlert HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            payload.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(payload.as_bytes()).await.unwrap();
        let started = Instant::now();
        let heavy = tokio::spawn(async move {
            let mut buffer = [0u8; 64];
            let _ = stream.read(&mut buffer).await;
            started.elapsed()
        });
        // Past the body read: the server is decoding and planning now.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let client = reqwest::Client::new();
        let probe = Instant::now();
        let ready = tokio::time::timeout(NEVER, client.get(format!("http://{address}/")).send())
            .await
            .expect("the probe was not answered")
            .unwrap();
        let probe = probe.elapsed();
        assert_eq!(ready.status(), 200);
        let heavy = heavy.await.unwrap();
        eprintln!("probe answered in {probe:?} while the invocation took {heavy:?}");
        // Not a speed target: a probe stuck behind the planning waits about as long as it.
        assert!(
            probe * 4 < heavy,
            "the probe waited {probe:?} of the invocation's {heavy:?}: planning blocked the runtime"
        );
    });
}
