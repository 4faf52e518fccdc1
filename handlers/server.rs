//! The HTTP server loop: the router served over hyper with the limits `axum::serve` lacks —
//! header, body and idle timeouts, and a cap on the connections served at once.
//!
//! Per connection, one watchdog (on the connection's own task, waking only at the next
//! deadline) closes it when a request header takes longer than the header timeout from its
//! first byte, or when no request comes within the idle timeout of the last response. Request
//! bodies carry their own deadline (the body timeout, from the end of the header): a body that
//! has not fully arrived by then fails to read, and the functions answer 408. Past the
//! connection cap, new connections wait in the listen backlog (`LISTEN_BACKLOG`, not the
//! standard library's 128, which is below the cap) until one closes, so the process
//! never runs out of file descriptors for the store and the broker; while any wait, idle
//! kept-alive connections are closed to make room, so waiting is bounded by the requests in
//! flight, not by the idle timeout.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::Router;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

use crate::config::Limits;

/// How long connections get to finish their requests after shutdown is asked for.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The error a request body read ends with when the body timeout passes first.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {} s", .0.as_secs_f64())]
pub struct BodyTimeout(pub Duration);

/// How many connections the kernel holds for the server before it accepts them: those past the
/// connection cap wait here. A connection that finds the backlog full is dropped, and its
/// client only tries again a second later; the standard library's 128 would do that to a burst
/// of the host's connections well before the cap is reached. The kernel caps it at somaxconn.
pub const LISTEN_BACKLOG: u32 = 1024;

/// Listens on `address` with `LISTEN_BACKLOG` (and `SO_REUSEADDR`, as the standard library sets
/// it); must run inside the tokio runtime.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` under `limits` until `shutdown` completes, then lets open
/// connections finish (bounded) and returns.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let pressure = Arc::new(Pressure::default());
    let (stop, stopped) = watch::channel(false);
    tokio::pin!(shutdown);
    let mut at_cap = false;
    loop {
        // Accept first: a connection is known to be waiting before anyone is asked to make
        // room. Past the cap at most this one connection is held unserved.
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // EMFILE and friends: back off instead of spinning; the cap makes this rare.
                    tracing::warn!(error = %err, "Accepting a connection failed; retrying shortly.");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => {
                at_cap = false;
                slot
            }
            Err(_) => {
                if !at_cap {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "Connection cap reached; new connections wait until one closes."
                    );
                    at_cap = true;
                }
                // Idle kept-alive connections give their slots to the waiting one.
                pressure.waiting.store(true, Ordering::SeqCst);
                pressure.changed.notify_waiters();
                let slot = tokio::select! {
                    _ = &mut shutdown => break,
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                };
                pressure.waiting.store(false, Ordering::SeqCst);
                slot
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let stopped = stopped.clone();
        let pressure = pressure.clone();
        tokio::spawn(async move {
            serve_connection(stream, router, limits, pressure, stopped).await;
            drop(slot);
        });
    }
    let _ = stop.send(true);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, slots.acquire_many(all)).await;
}

/// Whether connections are waiting for a slot; idle ones then close.
#[derive(Default)]
struct Pressure {
    waiting: AtomicBool,
    /// Signalled when `waiting` is set, and when a request ends while it is.
    changed: Notify,
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    pressure: Arc<Pressure>,
    mut stopped: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::new(pressure.clone()));
    let io = TokioIo::new(Tracked {
        inner: stream,
        activity: activity.clone(),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let in_flight = activity.begin();
            let request =
                request.map(|body| Body::new(DeadlineBody::new(body, limits.body_timeout)));
            let router = router.clone();
            async move {
                let response = router.oneshot(request).await;
                drop(in_flight);
                response
            }
        })
    };
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        // The watchdog below bounds headers (and idle time) itself.
        .header_read_timeout(None)
        .serve_connection(io, service);
    tokio::pin!(connection);
    loop {
        // Registered before the verdict, so a signal in between is not missed.
        let signalled = pressure.changed.notified();
        tokio::pin!(signalled);
        signalled.as_mut().enable();
        let wake_at = match activity.verdict(&limits) {
            Verdict::Close(reason) => {
                tracing::debug!(reason, "Connection closed by a server timeout.");
                return;
            }
            Verdict::CheckAt(at) => at,
        };
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(error = %err, "Connection ended with an error.");
                }
                return;
            }
            _ = tokio::time::sleep_until(wake_at.into()) => {}
            _ = &mut signalled => {}
            _ = stopped.changed() => {
                connection.as_mut().graceful_shutdown();
                let _ = tokio::time::timeout(SHUTDOWN_GRACE, connection.as_mut()).await;
                return;
            }
        }
    }
}

/// What a connection is doing, in milliseconds since it opened (+1, so 0 means "none").
struct Activity {
    opened: Instant,
    pressure: Arc<Pressure>,
    in_flight: AtomicUsize,
    /// When the last response finished (or the connection opened).
    idle_since: AtomicU64,
    /// When the first byte of the next request arrived; 0 while none has.
    request_started: AtomicU64,
    /// Whether a request was answered: only kept-alive connections make room under the cap,
    /// never one that has not been served yet.
    served: AtomicBool,
}

enum Verdict {
    Close(&'static str),
    CheckAt(Instant),
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        activity.in_flight.fetch_sub(1, Ordering::SeqCst);
        activity.request_started.store(0, Ordering::SeqCst);
        activity.idle_since.store(activity.now(), Ordering::SeqCst);
        activity.served.store(true, Ordering::SeqCst);
        if activity.pressure.waiting.load(Ordering::SeqCst) {
            // This connection is idle now: let its watchdog give the slot away.
            activity.pressure.changed.notify_waiters();
        }
    }
}

impl Activity {
    fn new(pressure: Arc<Pressure>) -> Self {
        Activity {
            opened: Instant::now(),
            pressure,
            in_flight: AtomicUsize::new(0),
            idle_since: AtomicU64::new(1),
            request_started: AtomicU64::new(0),
            served: AtomicBool::new(false),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX / 2) + 1
    }

    fn at(&self, mark: u64, after: Duration) -> Instant {
        self.opened + Duration::from_millis(mark.saturating_sub(1)) + after
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.request_started.store(0, Ordering::SeqCst);
        InFlight(self.clone())
    }

    fn bytes_read(&self) {
        if self.in_flight.load(Ordering::SeqCst) == 0
            && self.request_started.load(Ordering::SeqCst) == 0
        {
            self.request_started.store(self.now(), Ordering::SeqCst);
        }
    }

    fn verdict(&self, limits: &Limits) -> Verdict {
        let now = Instant::now();
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            // The body carries its own deadline; the handler's work is not bounded here.
            return Verdict::CheckAt(now + limits.header_timeout.min(limits.idle_timeout));
        }
        let started = self.request_started.load(Ordering::SeqCst);
        if started == 0
            && self.served.load(Ordering::SeqCst)
            && self.pressure.waiting.load(Ordering::SeqCst)
        {
            return Verdict::Close("idle while other connections wait for a slot");
        }
        let (deadline, reason) = if started != 0 {
            (
                self.at(started, limits.header_timeout),
                "request header not received within the header timeout",
            )
        } else {
            (
                self.at(self.idle_since.load(Ordering::SeqCst), limits.idle_timeout),
                "no request within the idle timeout",
            )
        };
        if now >= deadline {
            Verdict::Close(reason)
        } else {
            Verdict::CheckAt(deadline)
        }
    }
}

/// The TCP stream, noting when a request's first byte arrives.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration) -> Self {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(timeout)),
            timeout,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        // The deadline first: a body trickling in byte by byte is always "ready".
        if this.deadline.as_mut().poll(cx).is_ready() && !this.inner.is_end_stream() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))));
        }
        Pin::new(&mut this.inner)
            .poll_frame(cx)
            .map(|frame| frame.map(|result| result.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
