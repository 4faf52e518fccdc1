//! Test harness: the real app on a temporary embedded store, driven without a network.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use defender_responder::adapters::{EmbeddedStore, Publisher, QueueNames};
use defender_responder::config::Limits;
use defender_responder::domain::Task;
use defender_responder::error::Error;
use defender_responder::pipeline::Pipeline;
use defender_responder::policy::Policy;
use defender_responder::services::Registry;
use defender_responder::state::AppState;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

/// The repository root.
pub(crate) fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fixture file's bytes.
pub(crate) fn fixture(relative: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures").join(relative)).expect("fixture exists")
}

/// A fixture parsed as JSON.
pub(crate) fn fixture_json(relative: &str) -> Value {
    serde_json::from_slice(&fixture(relative)).expect("fixture is JSON")
}

/// A publisher that fails while `failures_left` is above zero, then delegates.
pub(crate) struct FlakyPublisher {
    pub(crate) inner: EmbeddedStore,
    pub(crate) failures_left: AtomicUsize,
    pub(crate) calls: AtomicUsize,
}

#[async_trait::async_trait]
impl Publisher for FlakyPublisher {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Transient("broker unreachable (test)".into()));
        }
        self.inner.publish(tasks).await
    }

    fn name(&self) -> &'static str {
        "flaky"
    }
}

/// The app over a fresh store.
pub(crate) struct TestApp {
    pub(crate) store: EmbeddedStore,
    pub(crate) publisher: Arc<FlakyPublisher>,
    pub(crate) state: AppState,
    _dir: tempfile::TempDir,
}

impl TestApp {
    pub(crate) fn new() -> Self {
        Self::with_policy(Policy::default(), 0)
    }

    pub(crate) fn with_failures(failures: usize) -> Self {
        Self::with_policy(Policy::default(), failures)
    }

    pub(crate) fn with_policy(policy: Policy, failures: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("store.sqlite3"), QueueNames::default()).unwrap();
        let publisher = Arc::new(FlakyPublisher {
            inner: store.clone(),
            failures_left: AtomicUsize::new(failures),
            calls: AtomicUsize::new(0),
        });
        // Without failures to inject, the wiring `serve` uses: one store is the ledger and the
        // publisher (tasks and ledger record in one write). With failures, the flaky publisher
        // in front of it (the path a separate broker takes).
        let shared: defender_responder::adapters::SharedPublisher = if failures == 0 {
            Arc::new(store.clone())
        } else {
            publisher.clone()
        };
        let state = AppState::new(
            Pipeline::new(Registry::standard(), policy),
            shared,
            Arc::new(store.clone()),
        );
        TestApp {
            store,
            publisher,
            state,
            _dir: dir,
        }
    }

    /// Sends one request through the router.
    pub(crate) async fn request(
        &self,
        request: Request<Body>,
    ) -> (StatusCode, Value, axum::http::HeaderMap) {
        let response = defender_responder::app(self.state.clone())
            .oneshot(request)
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        (status, body, headers)
    }

    /// Invokes `DefenderAlert` as the Functions host does, with the event as given.
    pub(crate) async fn invoke(&self, event: Value) -> (StatusCode, Value) {
        let payload = json!({
            "Data": {"event": event},
            "Metadata": {"sys": {"MethodName": "DefenderAlert", "UtcNow": "2025-05-14T07:13:01.0000000Z", "RandGuid": "5b5f3d3c-0000-4000-8000-000000000001"}}
        });
        let request = Request::post("/DefenderAlert")
            .header("content-type", "application/json; charset=utf-8")
            .header(
                "x-azure-functions-invocationid",
                "11111111-2222-3333-4444-555555555555",
            )
            .body(Body::from(payload.to_string()))
            .unwrap();
        let (status, body, _) = self.request(request).await;
        (status, body)
    }

    /// Posts a body to the webhook.
    pub(crate) async fn webhook(
        &self,
        body: Vec<u8>,
        content_type: &str,
        event_type: &str,
    ) -> (StatusCode, Value) {
        let request = Request::post("/api/defender-alerts")
            .header("content-type", content_type)
            .header("aeg-event-type", event_type)
            .body(Body::from(body))
            .unwrap();
        let (status, body, _) = self.request(request).await;
        (status, body)
    }

    /// Message counts per queue: (notification, isolation, rotation).
    pub(crate) fn counts(&self) -> (u64, u64, u64) {
        let counts = self.store.counts().unwrap();
        (counts[0].1, counts[1].1, counts[2].1)
    }
}

/// The events of an Event Grid array fixture.
pub(crate) fn events_of(relative: &str) -> Vec<Value> {
    match fixture_json(relative) {
        Value::Array(events) => events,
        single => vec![single],
    }
}

/// A publisher that counts every message id it is asked to publish, after a pause that
/// widens any race, then stores the tasks.
pub(crate) struct CountingPublisher {
    pub(crate) inner: EmbeddedStore,
    pub(crate) pause: std::time::Duration,
    /// Publish calls begun (counted before the pause).
    pub(crate) started: AtomicUsize,
    pub(crate) published: std::sync::Mutex<std::collections::HashMap<String, usize>>,
}

#[async_trait::async_trait]
impl Publisher for CountingPublisher {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.pause).await;
        {
            let mut published = self.published.lock().unwrap();
            for task in tasks {
                *published
                    .entry(task.message_id.as_str().to_string())
                    .or_default() += 1;
            }
        }
        self.inner.publish(tasks).await
    }

    fn name(&self) -> &'static str {
        "counting"
    }
}

/// The real app served over real TCP on a free port, in this process, under `limits`.
pub(crate) struct LiveServer {
    pub(crate) url: String,
    #[allow(dead_code)]
    pub(crate) address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl LiveServer {
    pub(crate) async fn start(state: AppState, limits: Limits) -> Self {
        // Bound as `serve` binds, with the server's own listen backlog.
        let listener = defender_responder::server::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(defender_responder::server::serve(
            listener,
            defender_responder::app(state),
            limits,
            async move {
                let _ = stopped.await;
            },
        ));
        LiveServer {
            url: format!("http://{address}"),
            address,
            stop: Some(stop),
        }
    }
}

impl Drop for LiveServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The host's invocation payload for one event.
pub(crate) fn invocation(event: &Value) -> Value {
    json!({
        "Data": {"event": event},
        "Metadata": {"sys": {"MethodName": "DefenderAlert", "UtcNow": "2025-05-14T07:13:01Z", "RandGuid": "5b5f3d3c-0000-4000-8000-000000000002"}}
    })
}

/// The handler binary cargo built for these tests.
pub(crate) const BINARY: &str = env!("CARGO_BIN_EXE_defender-responder");

/// The real binary serving on a free port.
pub(crate) struct BinaryServer {
    child: std::process::Child,
    pub(crate) url: String,
    log: std::path::PathBuf,
}

impl BinaryServer {
    /// Starts `serve` with `store` and extra settings; `wrap` runs it through `sh -c` first
    /// (e.g. `ulimit -n 64;`). Logs go to a file next to the store.
    pub(crate) async fn start(
        store: &std::path::Path,
        extra: &[(&str, &str)],
        wrap: Option<&str>,
    ) -> BinaryServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // Outside the store's folder, which some tests delete.
        let log = std::env::temp_dir().join(format!("defender-responder-fault-{port}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = match wrap {
            Some(prefix) => {
                let mut command = std::process::Command::new("sh");
                command.args(["-c", &format!("{prefix} exec \"$0\" serve"), BINARY]);
                command
            }
            None => {
                let mut command = std::process::Command::new(BINARY);
                command.arg("serve");
                command
            }
        };
        command
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("RESPONDER_STORE_PATH", store)
            // These tests look at what intake queued; the workers would take it off the queues.
            .env("RESPONDER_EMBEDDED_WORKERS", "false")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::from(file.try_clone().unwrap()))
            .stderr(std::process::Stdio::from(file));
        for (name, value) in extra {
            command.env(name, value);
        }
        let server = BinaryServer {
            child: command.spawn().unwrap(),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let client = reqwest::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            if client.get(&server.url).send().await.is_ok() {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("the handler did not become ready");
    }

    pub(crate) fn log(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let _ = std::fs::remove_file(&self.log);
        text
    }

    /// Kill -9 and reap; the exit status says whether it was still alive.
    pub(crate) fn kill(mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
