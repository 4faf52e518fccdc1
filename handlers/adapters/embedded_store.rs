//! The embedded default: a durable SQLite store holding the three task queues (idempotent on
//! message id; peek-lock receive, complete, abandon and dead-letter) and the alert ledger.
//!
//! Writes are group-committed: concurrent `enqueue` and `record` calls that arrive while a
//! commit is under way are applied together in the next transaction (each in its own
//! savepoint, so one failing write fails alone) and share its fsync. Every call still
//! returns only once its own write is committed with `synchronous=FULL`.
//!
//! The file is opened through SQLite's `unix-excl` VFS: the first lock this process takes on it
//! is a write lock on the whole lock range, held until the last connection closes, so no other
//! process can read or change the store while it is open, and SQLite keeps the WAL index in
//! heap memory, never in a memory-mapped `-shm` file: a damaged or truncated index file cannot
//! crash the process (SIGBUS). Connections within the process share that lock and index, and a
//! second `EmbeddedStore` on the same file in one process is refused too. One process owns a
//! store file while it runs; other commands read it once that process has stopped.
//!
//! Checkpoints (copying the WAL back into the file) run on a thread of their own, on a second
//! connection, beside the commits instead of inside the commit that crosses SQLite's 1,000-page
//! mark: a write neither waits for the copy nor for the file's fsync. When writes kept coming
//! while it copied, the thread copies the few pages they added once more with the writers held
//! back, so the WAL can start over from its beginning and stays small under sustained load.
//! SQLite's own checkpoint stays as a backstop at a larger size.
//!
//! Every transaction checks, with one `stat`, that the file at the configured path is still
//! the file that is open (same device and inode). When the file or its folder was deleted or
//! replaced, writes fail as retryable until a store is open at that path again (reopened
//! automatically as soon as the path can be created), so no reply claims a write that went
//! to a file nobody can read any more.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::claims::Claims;
use super::{AlertLedger, LedgerEntry, Publisher, QueueNames};
use crate::domain::{AlertStatus, Queue, Task};
use crate::error::Error;

/// The schema of a new store. `seq` only grows: rows are never deleted (a completed message
/// stays as a tombstone), so SQLite's next rowid is already unique and ordered without
/// AUTOINCREMENT's `sqlite_sequence` row, which was rewritten by every insert. The ledger is
/// keyed by the alert id alone (WITHOUT ROWID: one B-tree, not a table and its key index).
///
/// A message id is unique on its queue. It is derived from its alert's id
/// ([`crate::domain::MessageId::derive`]), the message's correlation id, so the unique key
/// `(queue, correlation_id, message_id)` admits exactly the same rows as `(queue, message_id)`
/// while it keeps one alert's tasks side by side in the index: an alert's write touches one
/// index page per queue instead of one random page per task.
///
/// Stores created with the earlier schema (AUTOINCREMENT, a rowid ledger, a lock-token index,
/// the `(queue, message_id)` key) keep their tables; every statement below works on both.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq                INTEGER PRIMARY KEY,
    queue              TEXT NOT NULL,
    message_id         TEXT NOT NULL,
    correlation_id     TEXT NOT NULL,
    subject            TEXT NOT NULL,
    body               TEXT NOT NULL,
    enqueued_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    visible_at         INTEGER NOT NULL DEFAULT 0,
    lock_token         TEXT,
    locked_until       INTEGER NOT NULL DEFAULT 0,
    delivery_count     INTEGER NOT NULL DEFAULT 0,
    dead_letter_reason TEXT,
    completed_at       INTEGER,
    UNIQUE (queue, correlation_id, message_id)
);
CREATE TABLE IF NOT EXISTS alerts (
    system_alert_id TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    planned         INTEGER NOT NULL,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) WITHOUT ROWID;
";

/// Columns of `messages` added for peek-lock delivery; stores created before them gain them
/// on open (existing messages become visible, unlocked, never delivered). A completed message
/// stays as a tombstone (`completed_at`), so a replay of its message id is still a no-op.
const DELIVERY_COLUMNS: &[(&str, &str)] = &[
    ("visible_at", "INTEGER NOT NULL DEFAULT 0"),
    ("lock_token", "TEXT"),
    ("locked_until", "INTEGER NOT NULL DEFAULT 0"),
    ("delivery_count", "INTEGER NOT NULL DEFAULT 0"),
    ("dead_letter_reason", "TEXT"),
    ("completed_at", "INTEGER"),
];

/// A lock token names its row (`seq`), so a lock is found by primary key: the index on
/// `lock_token` that earlier stores have, one more page written per enqueue, is dropped.
///
/// Pending messages are indexed by queue and `seq`, so a receive walks them oldest first and
/// stops after the few it takes. The earlier `(queue, visible_at, seq)` index made SQLite read
/// every visible message of the queue (row and body) and sort them for each receive: with a
/// backlog of thousands that scan was most of the workers' CPU.
const INDEXES: &str = "
DROP INDEX IF EXISTS messages_by_lock;
DROP INDEX IF EXISTS messages_ready;
CREATE INDEX IF NOT EXISTS messages_pending ON messages (queue, seq)
    WHERE dead_letter_reason IS NULL AND completed_at IS NULL;
";

/// Writes (weighted by the rows they add) after which the checkpoint thread copies the WAL
/// back into the file once the store is idle: ~25 alerts of 9 tasks, ~700 WAL pages, so
/// checkpoints cost about as many syncs as SQLite's own every 1,000 pages did.
const CHECKPOINT_WHEN_IDLE: usize = 256;
/// The same, without waiting for the store to be idle: bounds the WAL under sustained load.
const CHECKPOINT_ANYWAY: usize = 512;
/// SQLite's own checkpoint (inside a commit), only reached when the thread cannot keep up or
/// could not be started: 16 MB of WAL.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 4000;
/// The VFS every connection to a store opens the file with: one process-wide lock on the
/// file, the WAL index in heap memory shared by the process's connections.
const VFS: &str = "unix-excl";
/// The WAL size (frames) from which a checkpoint copies what was written during its own copy
/// with the writers held back, so the WAL starts over; below it, the next checkpoint simply
/// carries on. Each frame is a 4 KB page: 4 MB of WAL, SQLite's own default mark.
const CATCH_UP_FRAMES: i64 = 1000;
/// Passes beside the writers after the first, each copying what was written during the one
/// before, while each still finds more than [`HOLD_AT_MOST_FRAMES`] new pages.
const MORE_PASSES: usize = 3;
/// What a checkpoint tries to leave, at most, for its copy with the writers held back.
const HOLD_AT_MOST_FRAMES: i64 = 64;

/// The next messages a receive may take, oldest first: walks `messages_pending` in `seq`
/// order and stops at the limit (no sort of the whole backlog).
const RECEIVE_CANDIDATES: &str = "
SELECT seq, queue, message_id, correlation_id, subject, body, enqueued_at, delivery_count
FROM messages
WHERE queue = ?1 AND dead_letter_reason IS NULL AND completed_at IS NULL
  AND visible_at <= ?2
  AND (lock_token IS NULL OR locked_until <= ?2)
ORDER BY seq LIMIT ?3";

/// The dead-letter reason of a message delivered more often than the maximum.
pub const MAX_DELIVERY_COUNT_EXCEEDED: &str = "MaxDeliveryCountExceeded";

/// One message read back from the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredMessage {
    /// Queue name.
    pub queue: String,
    /// The task's message id.
    pub message_id: String,
    /// The alert's systemAlertId.
    pub correlation_id: String,
    /// The action.
    pub subject: String,
    /// The task as JSON.
    pub body: String,
    /// When it was first enqueued (UTC).
    pub enqueued_at: String,
}

/// Proof that a receiver holds the lock on a message; needed to complete or abandon it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct LockToken(String);

impl LockToken {
    /// The token's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The row it locks: the token is `<seq>.<random hex>`.
    fn seq(&self) -> Option<i64> {
        self.0.split_once('.').and_then(|(seq, _)| seq.parse().ok())
    }
}

/// A message received under a peek-lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReceivedMessage {
    /// The message.
    pub message: StoredMessage,
    /// The lock this receiver holds until `locked_until_ms`.
    pub lock_token: LockToken,
    /// How many times the message has been handed out, this time included (1 on the first).
    pub delivery_count: u32,
    /// When the lock expires and the message becomes visible again (Unix milliseconds).
    pub locked_until_ms: i64,
}

/// A message moved to its queue's dead-letter list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetteredMessage {
    /// The message.
    pub message: StoredMessage,
    /// How many times it was handed out.
    pub delivery_count: u32,
    /// Why it was dead-lettered.
    pub reason: String,
}

/// How the embedded queues hand out messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueOptions {
    /// A message handed out this many times and then abandoned, or whose lock expired, goes to
    /// the dead-letter list instead of being delivered again (Service Bus default: 10).
    pub max_delivery_count: u32,
}

impl Default for QueueOptions {
    fn default() -> Self {
        QueueOptions {
            max_delivery_count: 10,
        }
    }
}

/// A SQLite file holding the three queues and the alert ledger.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    names: QueueNames,
    options: QueueOptions,
    /// The one connection (the file is held exclusively); `None` while the file is lost.
    db: Mutex<Db>,
    /// Writes waiting for the next group commit.
    group: Mutex<Group>,
    /// Alerts a delivery is handling right now.
    claims: Claims,
    /// Makes every lock token unique within the process.
    tokens: AtomicU64,
    /// Rows written since the last checkpoint (a write counts its rows plus one).
    since_checkpoint: AtomicUsize,
    /// The file `db` has open, numbered by how many files were opened at the path (1 for the
    /// first): read by the checkpoint thread without waiting for a commit.
    open_file: Mutex<Option<(u64, FileIdentity)>>,
    /// The checkpoint thread's connection, to the file of one generation of `db`. Closed with
    /// the store, so the file is free for another process once the store is dropped.
    checkpoint_db: Mutex<Option<Checkpointer>>,
    /// The file's identity in the process-wide set of open stores; unregistered on drop.
    registration: Registration,
    /// Wakes the checkpoint thread; `None` when it could not be started.
    checkpointer: Option<SyncSender<()>>,
    /// Checkpoints run so far, for diagnosis.
    checkpoints: Mutex<CheckpointStats>,
}

/// What the store's checkpoints have done since it was opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Checkpoints run by the checkpoint thread.
    pub count: u64,
    /// WAL pages they copied back into the file.
    pub pages: u64,
    /// The longest one, in microseconds (writes go on meanwhile).
    pub longest_us: u64,
    /// Checkpoints that then copied the pages written meanwhile with the writers held back.
    pub catch_ups: u64,
    /// The longest such hold, in microseconds: the longest a commit waited for a checkpoint.
    pub longest_hold_us: u64,
    /// All such holds together, in microseconds.
    pub hold_us: u64,
    /// WAL pages copied during those holds.
    pub hold_pages: u64,
}

/// A connection of the checkpoint thread, and which of the store's files it is open on.
struct Checkpointer {
    generation: u64,
    connection: Connection,
}

struct Db {
    connection: Option<Connection>,
    /// Device and inode of the open file.
    identity: Option<FileIdentity>,
    /// Whether the loss of the file was already logged (one error line per outage).
    outage_logged: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FileIdentity {
    device: u64,
    inode: u64,
}

impl FileIdentity {
    /// Stands for "no file" where a generation number must be kept.
    const LOST: FileIdentity = FileIdentity {
        device: u64::MAX,
        inode: u64::MAX,
    };
}

/// The store files open in this process. SQLite's process-wide lock keeps other processes
/// out, but a second connection in this process would share it: a second `EmbeddedStore` on
/// one file is refused here instead (two stores would each group-commit and hand out lock
/// tokens on their own).
fn open_files() -> &'static Mutex<HashSet<FileIdentity>> {
    static OPEN: OnceLock<Mutex<HashSet<FileIdentity>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// A file's place in [`open_files`], for as long as a store has it open.
struct Registration(Mutex<Option<FileIdentity>>);

impl Registration {
    /// Registers `identity`; fails when a store in this process already has that file open.
    fn claim(identity: FileIdentity) -> Option<FileIdentity> {
        let mut open = open_files().lock().unwrap_or_else(|e| e.into_inner());
        open.insert(identity).then_some(identity)
    }

    /// Gives the file up (closed, lost or replaced), and takes the next one.
    fn replace(&self, identity: Option<FileIdentity>) {
        let mut held = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut open = open_files().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = held.take() {
            open.remove(&old);
        }
        *held = identity;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.replace(None);
    }
}

/// One row for `messages`: (queue, message id, correlation id, subject, body).
type MessageRow = (String, String, String, &'static str, String);

/// Tasks serialised once, ready for one durable write ([`EmbeddedStore::commit_alert`]).
#[derive(Debug, Default)]
pub struct EncodedTasks {
    rows: Vec<MessageRow>,
}

impl EncodedTasks {
    /// How many tasks.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// What [`EmbeddedStore::commit_alert`] found and did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlertCommit {
    /// The tasks and the ledger record were committed together.
    Committed,
    /// The alert was already planned: nothing was written (a redelivery).
    AlreadyPlanned,
}

/// One write to apply in a group commit.
enum Write {
    /// Rows for `messages`.
    Enqueue(Vec<MessageRow>),
    /// A ledger update.
    Record {
        system_alert_id: String,
        status: &'static str,
        planned: bool,
    },
    /// An alert's tasks and its ledger record in one savepoint; with `unless_planned`, nothing
    /// is written when the ledger already has the alert as planned (the result is then 0).
    Alert {
        rows: Vec<MessageRow>,
        system_alert_id: String,
        status: &'static str,
        planned: bool,
        unless_planned: bool,
    },
}

#[derive(Default)]
struct Group {
    /// Writes for the next commit, each with the slot its caller waits on.
    pending: Vec<(Arc<Slot>, Write)>,
    /// Whether some caller is committing (or has been handed the next commit).
    leader: bool,
}

/// Where one caller waits: for its write's result, or to be handed the next commit. Each
/// caller has its own, so a finished commit wakes exactly the callers it concerns.
#[derive(Default)]
struct Slot {
    state: Mutex<SlotState>,
    ready: Condvar,
}

#[derive(Default)]
struct SlotState {
    result: Option<Result<usize, Error>>,
    lead: bool,
}

impl Slot {
    fn set(&self, update: impl FnOnce(&mut SlotState)) {
        if let Ok(mut state) = self.state.lock() {
            update(&mut state);
        }
        self.ready.notify_one();
    }
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

fn poisoned() -> Error {
    Error::Transient("embedded store lock poisoned".to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

fn identity_of(path: &Path) -> std::io::Result<FileIdentity> {
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(FileIdentity {
            device: metadata.dev(),
            inode: metadata.ino(),
        })
    }
    #[cfg(not(unix))]
    {
        // Windows refuses to delete an open file; the path existing is the check there.
        let _ = metadata;
        Ok(FileIdentity {
            device: 0,
            inode: 0,
        })
    }
}

/// Creates the folder, opens and prepares the file; the error says what failed.
fn connect(path: &Path) -> Result<(Connection, FileIdentity), String> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|err| format!("cannot create the store folder {}: {err}", parent.display()))?;
    }
    let connection = Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS)
        .map_err(|err| format!("cannot open the embedded store {}: {err}", path.display()))?;
    // SQLite has created the file (empty when new); nothing is read or locked yet.
    let identity = identity_of(path)
        .map_err(|err| format!("cannot stat the embedded store {}: {err}", path.display()))?;
    if Registration::claim(identity).is_none() {
        return Err(format!(
            "the embedded store {} is already open in this process",
            path.display()
        ));
    }
    let prepared = prepare(&connection).map_err(|err| match &err {
        rusqlite::Error::SqliteFailure(failure, _)
            if matches!(failure.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
        {
            format!(
                "the embedded store {} is held by another process (a running `defender-responder serve` keeps its store locked; stop it, or point RESPONDER_STORE_PATH at another file): {err}",
                path.display()
            )
        }
        _ => format!("cannot prepare the embedded store {}: {err}", path.display()),
    });
    if let Err(reason) = prepared {
        open_files()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&identity);
        return Err(reason);
    }
    Ok((connection, identity))
}

/// The checkpoint thread's own connection to the file a store has open (`identity`): never
/// creates a file, and fails when the file at the path is another one by now.
fn connect_checkpointer(path: &Path, identity: FileIdentity) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let connection = Connection::open_with_flags_and_vfs(path, flags, VFS)
        .map_err(|err| format!("cannot open a checkpoint connection: {err}"))?;
    let prepared = (|| {
        connection.busy_timeout(Duration::from_secs(5))?;
        // FULL: the checkpoint syncs the WAL before copying and the file before the WAL is reused.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "mmap_size", 0)
    })();
    prepared.map_err(|err| format!("cannot prepare a checkpoint connection: {err}"))?;
    if identity_of(path).ok() != Some(identity) {
        return Err("the store file was replaced".into());
    }
    Ok(connection)
}

fn prepare(connection: &Connection) -> rusqlite::Result<()> {
    connection.busy_timeout(Duration::from_secs(5))?;
    // The `unix-excl` VFS takes its process-wide lock at the first access, before the WAL is
    // opened: the WAL index then lives in heap memory, never in a memory-mapped `-shm` file.
    let mode: String = connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "journal_mode is {mode}, WAL was requested"
        )));
    }
    // FULL: an acknowledged task survives power loss, not just a crash.
    connection.pragma_update(None, "synchronous", "FULL")?;
    // No memory-mapped reads of the database either: I/O errors stay errors.
    connection.pragma_update(None, "mmap_size", 0)?;
    // The savepoint sub-journal (one per write in a group commit) in memory, not in a
    // temporary file written page by page: the WAL is what makes a commit durable.
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
    // One transaction for the whole schema (one sync on a new store, none on an existing
    // one). The lock is the process's from the first access above, so a second process fails
    // at start-up, not mid-delivery.
    connection.execute_batch("BEGIN EXCLUSIVE")?;
    let created = create_schema(connection);
    match created {
        Ok(()) => connection.execute_batch("COMMIT"),
        Err(err) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

fn create_schema(connection: &Connection) -> rusqlite::Result<()> {
    connection.execute_batch(SCHEMA)?;
    let existing: Vec<String> = connection
        .prepare("SELECT name FROM pragma_table_info('messages')")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    for (column, definition) in DELIVERY_COLUMNS {
        if !existing.iter().any(|name| name == column) {
            connection.execute_batch(&format!(
                "ALTER TABLE messages ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    connection.execute_batch(INDEXES)
}

/// Now as SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` writes it (UTC, milliseconds),
/// computed once per commit instead of by SQL for every row.
fn timestamp_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.millisecond()
    )
}

impl EmbeddedStore {
    /// Opens (creating it and its folder if needed) the store at `path`, with the default
    /// queue options.
    pub fn open(path: &Path, names: QueueNames) -> Result<Self, Error> {
        Self::open_with(path, names, QueueOptions::default())
    }

    /// Opens the store at `path` with the given queue options.
    pub fn open_with(path: &Path, names: QueueNames, options: QueueOptions) -> Result<Self, Error> {
        let (connection, identity) = connect(path).map_err(Error::Config)?;
        let registration = Registration(Mutex::new(Some(identity)));
        // One pending wake-up is enough: the thread checkpoints everything written so far.
        let (wake, woken) = sync_channel(1);
        let inner = Arc::new(Inner {
            path: path.to_path_buf(),
            names,
            options,
            db: Mutex::new(Db {
                connection: Some(connection),
                identity: Some(identity),
                outage_logged: false,
            }),
            open_file: Mutex::new(Some((1, identity))),
            group: Mutex::new(Group::default()),
            claims: Claims::default(),
            tokens: AtomicU64::new(0),
            since_checkpoint: AtomicUsize::new(0),
            checkpoint_db: Mutex::new(None),
            registration,
            checkpointer: Some(wake),
            checkpoints: Mutex::new(CheckpointStats::default()),
        });
        let weak = Arc::downgrade(&inner);
        let spawned = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || checkpoint_loop(weak, woken));
        let inner = match spawned {
            Ok(_) => inner,
            Err(err) => {
                tracing::warn!(error = %err, "No checkpoint thread for the embedded store; SQLite checkpoints inside commits instead.");
                let mut inner = Arc::into_inner(inner).expect("no other handle yet");
                inner.checkpointer = None;
                Arc::new(inner)
            }
        };
        Ok(EmbeddedStore { inner })
    }

    /// What the checkpoint thread has done since the store was opened.
    pub fn checkpoint_stats(&self) -> CheckpointStats {
        self.inner.checkpoint_stats_now()
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `op` on the connection of the file that is at the configured path now, reopening
    /// it first when the file was deleted or replaced; fails (retryable) when the file changed
    /// while `op` ran, since what `op` wrote is then in a file no one will read.
    fn with_connection<T>(
        &self,
        op: impl FnOnce(&mut Connection) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut db = self.inner.db.lock().map_err(|_| poisoned())?;
        self.ensure_current(&mut db)?;
        let connection = db.connection.as_mut().ok_or_else(|| {
            Error::Transient(format!(
                "the embedded store {} is not open",
                self.inner.path.display()
            ))
        })?;
        let result = op(connection)?;
        if identity_of(&self.inner.path).ok() != db.identity {
            self.lose(&mut db, "during a write");
            return Err(Error::Transient(format!(
                "the embedded store {} was deleted or replaced while this write was committed; it is not durable, retry",
                self.inner.path.display()
            )));
        }
        Ok(result)
    }

    fn ensure_current(&self, db: &mut Db) -> Result<(), Error> {
        let path = &self.inner.path;
        if db.connection.is_some() && identity_of(path).ok() == db.identity {
            return Ok(());
        }
        if db.connection.is_some() {
            self.lose(db, "between writes");
        }
        match connect(path) {
            Ok((connection, identity)) => {
                tracing::warn!(
                    store = %path.display(),
                    "Embedded store reopened at its configured path; deliveries are accepted again. \
                     If the old file was deleted, its queued tasks and ledger entries are gone."
                );
                self.inner.registration.replace(Some(identity));
                db.connection = Some(connection);
                db.identity = Some(identity);
                db.outage_logged = false;
                if let Ok(mut open) = self.inner.open_file.lock() {
                    let generation = open.map_or(0, |(generation, _)| generation);
                    *open = Some((generation + 1, identity));
                }
                Ok(())
            }
            Err(reason) => {
                if !db.outage_logged {
                    tracing::error!(
                        store = %path.display(),
                        reason = %reason,
                        "Embedded store unavailable: deliveries are answered as retryable until it can be reopened."
                    );
                    db.outage_logged = true;
                }
                Err(Error::Transient(format!(
                    "the embedded store is unavailable: {reason}"
                )))
            }
        }
    }

    /// Drops the connection to a file that is no longer at the configured path.
    fn lose(&self, db: &mut Db, when: &str) {
        tracing::error!(
            store = %self.inner.path.display(),
            "The embedded store file was deleted or replaced {when}; the open file is abandoned \
             and the store is reopened at its path."
        );
        db.connection = None;
        db.identity = None;
        self.inner.registration.replace(None);
        if let Ok(mut open) = self.inner.open_file.lock() {
            // Keep the count: the next file opened at the path is a new generation.
            *open = open.map(|(generation, _)| (generation, FileIdentity::LOST));
        }
    }

    /// Enqueues tasks in one transaction; tasks whose message id is already on their queue are
    /// skipped. Returns how many were new.
    pub fn enqueue(&self, tasks: &[Task]) -> Result<usize, Error> {
        let encoded = self.encode(tasks)?;
        self.write(Write::Enqueue(encoded.rows))
    }

    /// Serialises tasks into the rows their queues hold: each task once, straight into the
    /// text its row keeps ([`crate::encode`], the bytes serde_json would write).
    pub fn encode(&self, tasks: &[Task]) -> Result<EncodedTasks, Error> {
        let mut rows = Vec::with_capacity(tasks.len());
        for task in tasks {
            // Room for a typical body (2–3 KB), so it is written without growing; a larger
            // one grows as it is written, without making the next ones larger.
            let mut body = String::with_capacity(4096);
            crate::encode::write(&mut body, task).map_err(|err| {
                Error::Permanent(format!(
                    "task {} cannot be serialised: {err}",
                    task.message_id
                ))
            })?;
            rows.push((
                self.inner.names.name(task.queue).to_string(),
                task.message_id.as_str().to_string(),
                task.alert.system_alert_id.clone(),
                task.action.as_str(),
                body,
            ));
        }
        Ok(EncodedTasks { rows })
    }

    /// The one durable write for a handled alert: its tasks (idempotent on message id) and its
    /// ledger record in one savepoint of the next group commit, so both are committed by the
    /// same fsync or neither is. With `unless_planned`, the ledger is read inside that same
    /// transaction and, when the alert is already planned, nothing is written
    /// ([`AlertCommit::AlreadyPlanned`]): the check and the write are one step.
    pub fn commit_alert(
        &self,
        tasks: EncodedTasks,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
        unless_planned: bool,
    ) -> Result<AlertCommit, Error> {
        let written = self.write(Write::Alert {
            rows: tasks.rows,
            system_alert_id: system_alert_id.to_string(),
            status: status.as_str(),
            planned,
            unless_planned,
        })?;
        Ok(if written == 0 {
            AlertCommit::AlreadyPlanned
        } else {
            AlertCommit::Committed
        })
    }

    /// Whether `other` is a handle on this same open store.
    pub fn is_same(&self, other: &EmbeddedStore) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Applies one write in the next group commit and waits until that commit is durable.
    /// The first caller to find no commit under way leads: it takes every pending write,
    /// commits them together and hands each its result; when more writes arrived meanwhile,
    /// it hands the next commit to the first of their callers. The others sleep until their
    /// own result (or the lead) is handed to them: one wake-up per write, not one per commit.
    fn write(&self, write: Write) -> Result<usize, Error> {
        let slot = Arc::new(Slot::default());
        let leads = {
            let mut group = self.inner.group.lock().map_err(|_| poisoned())?;
            group.pending.push((slot.clone(), write));
            !std::mem::replace(&mut group.leader, true)
        };
        if leads {
            self.lead();
        }
        loop {
            let mut state = slot.state.lock().map_err(|_| poisoned())?;
            while state.result.is_none() && !state.lead {
                state = slot.ready.wait(state).map_err(|_| poisoned())?;
            }
            if let Some(result) = state.result.take() {
                return result;
            }
            state.lead = false;
            drop(state);
            self.lead();
        }
    }

    /// Commits every pending write (the caller holds the lead), hands out the results, then
    /// passes the lead on to a waiting caller or gives it up.
    fn lead(&self) {
        let batch = match self.inner.group.lock() {
            Ok(mut group) => std::mem::take(&mut group.pending),
            Err(_) => return,
        };
        let (slots, writes): (Vec<Arc<Slot>>, Vec<Write>) = batch.into_iter().unzip();
        let weight: usize = writes.iter().map(Write::weight).sum();
        let results = self.commit_group(writes);
        for (slot, result) in slots.iter().zip(results) {
            slot.set(|state| state.result = Some(result));
        }
        let mut idle = false;
        if let Ok(mut group) = self.inner.group.lock() {
            match group.pending.first() {
                Some((next, _)) => next.set(|state| state.lead = true),
                None => {
                    group.leader = false;
                    idle = true;
                }
            }
        }
        let written = self
            .inner
            .since_checkpoint
            .fetch_add(weight, Ordering::Relaxed)
            + weight;
        if written >= CHECKPOINT_ANYWAY || (idle && written >= CHECKPOINT_WHEN_IDLE) {
            if let Some(wake) = &self.inner.checkpointer {
                // Full: a wake-up is already pending, and it covers this write too.
                let _ = wake.try_send(());
            }
        }
    }

    /// One transaction for a batch of writes, each in a savepoint so that one failing write
    /// is rolled back alone; if the commit itself fails, every write in it fails. The results
    /// are in the order of the writes.
    fn commit_group(&self, batch: Vec<Write>) -> Vec<Result<usize, Error>> {
        let count = batch.len();
        let outcome = self.with_connection(|connection| {
            let mut transaction = connection.transaction()?;
            let mut results = Vec::with_capacity(batch.len());
            let now = timestamp_now();
            for write in batch {
                let result = match transaction.savepoint() {
                    Ok(mut savepoint) => match apply(&savepoint, &write, &now) {
                        Ok(changed) => savepoint.commit().map(|_| changed).map_err(Error::from),
                        Err(err) => {
                            let _ = savepoint.rollback();
                            Err(err)
                        }
                    },
                    Err(err) => Err(Error::from(err)),
                };
                results.push(result);
            }
            transaction.commit()?;
            Ok(results)
        });
        match outcome {
            Ok(results) => results,
            Err(err) => {
                // The whole group failed (store lost, commit failed): each write fails with it.
                let (kind, reason) = (err.kind(), err.message().to_string());
                (0..count)
                    .map(|_| Err(Error::new(kind, reason.clone())))
                    .collect()
            }
        }
    }

    /// How many messages each queue holds (dead-lettered ones excluded).
    pub fn counts(&self) -> Result<Vec<(String, u64)>, Error> {
        self.with_connection(|connection| {
            let mut counts = Vec::new();
            for queue in Queue::ALL {
                let name = self.inner.names.name(queue);
                let count: u64 = connection.query_row(
                    "SELECT COUNT(*) FROM messages
                     WHERE queue = ?1 AND dead_letter_reason IS NULL AND completed_at IS NULL",
                    params![name],
                    |row| row.get(0),
                )?;
                counts.push((name.to_string(), count));
            }
            Ok(counts)
        })
    }

    /// How many messages of a queue are dead-lettered.
    pub fn dead_letter_count(&self, queue: Queue) -> Result<u64, Error> {
        let name = self.inner.names.name(queue).to_string();
        self.with_connection(|connection| {
            Ok(connection.query_row(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1 AND dead_letter_reason IS NOT NULL",
                params![name],
                |row| row.get(0),
            )?)
        })
    }

    /// The first `limit` messages of a queue, oldest first, without removing or locking them.
    pub fn peek(&self, queue: Queue, limit: usize) -> Result<Vec<StoredMessage>, Error> {
        let name = self.inner.names.name(queue).to_string();
        self.with_connection(|connection| {
            let mut select = connection.prepare_cached(
                "SELECT queue, message_id, correlation_id, subject, body, enqueued_at
                 FROM messages
                 WHERE queue = ?1 AND dead_letter_reason IS NULL AND completed_at IS NULL
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = select.query_map(params![name, limit as i64], stored_message)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(Error::from)
        })
    }

    /// Receives up to `max` messages of a queue under a peek-lock held for `lock`: each is
    /// invisible to other receivers until it is completed, abandoned or its lock expires, and
    /// its delivery count goes up by one. A message already delivered the maximum number of
    /// times is dead-lettered instead of handed out.
    pub fn receive(
        &self,
        queue: Queue,
        max: usize,
        lock: Duration,
    ) -> Result<Vec<ReceivedMessage>, Error> {
        let name = self.inner.names.name(queue).to_string();
        let max_deliveries = self.inner.options.max_delivery_count;
        self.with_connection(|connection| {
            let transaction = connection.transaction()?;
            let now = now_ms();
            let locked_until = now.saturating_add(millis(lock));
            let mut received = Vec::new();
            loop {
                let wanted = max.saturating_sub(received.len());
                if wanted == 0 {
                    break;
                }
                let candidates: Vec<(i64, StoredMessage, u32)> = transaction
                    .prepare_cached(RECEIVE_CANDIDATES)?
                    .query_map(params![name, now, wanted as i64], |row| {
                        Ok((row.get(0)?, stored_message_at(row, 1)?, row.get(7)?))
                    })?
                    .collect::<Result<_, _>>()?;
                if candidates.is_empty() {
                    break;
                }
                for (seq, message, delivered) in candidates {
                    if delivered >= max_deliveries {
                        dead_letter_row(
                            &transaction,
                            seq,
                            &format!(
                                "{MAX_DELIVERY_COUNT_EXCEEDED}: delivered {delivered} times (the maximum is {max_deliveries})"
                            ),
                        )?;
                        continue;
                    }
                    let token = self.new_token(seq, delivered);
                    transaction
                        .prepare_cached(
                            "UPDATE messages SET lock_token = ?2, locked_until = ?3,
                                    delivery_count = delivery_count + 1
                             WHERE seq = ?1",
                        )?
                        .execute(params![seq, token.as_str(), locked_until])?;
                    received.push(ReceivedMessage {
                        message,
                        lock_token: token,
                        delivery_count: delivered + 1,
                        locked_until_ms: locked_until,
                    });
                }
            }
            transaction.commit()?;
            Ok(received)
        })
    }

    /// Completes a received message: it is never delivered again (a tombstone keeps its
    /// message id, so republishing it stays a no-op). Fails when the lock is no longer held: it
    /// expired (the message may be with another receiver now), or the message was already
    /// completed, abandoned or dead-lettered.
    pub fn complete(&self, token: &LockToken) -> Result<(), Error> {
        let seq = token.seq().ok_or_else(|| lock_lost(token))?;
        self.with_connection(|connection| {
            let completed = connection
                .prepare_cached(
                    "UPDATE messages SET completed_at = ?3, lock_token = NULL, locked_until = 0
                     WHERE seq = ?1 AND lock_token = ?2 AND locked_until > ?3",
                )?
                .execute(params![seq, token.as_str(), now_ms()])?;
            if completed == 0 {
                return Err(lock_lost(token));
            }
            Ok(())
        })
    }

    /// Completes several received messages in one transaction (one fsync): as [`Self::complete`]
    /// for each; every message whose lock is still held is completed, and the first whose lock
    /// was lost is then reported as the error.
    pub fn complete_all(&self, tokens: &[LockToken]) -> Result<(), Error> {
        self.with_connection(|connection| {
            let transaction = connection.transaction()?;
            let now = now_ms();
            let mut lost = None;
            for token in tokens {
                // By row (the token names it), like `complete`: there is no lock-token index.
                let completed = match token.seq() {
                    Some(seq) => transaction
                        .prepare_cached(
                            "UPDATE messages SET completed_at = ?3, lock_token = NULL, locked_until = 0
                             WHERE seq = ?1 AND lock_token = ?2 AND locked_until > ?3",
                        )?
                        .execute(params![seq, token.as_str(), now])?,
                    None => 0,
                };
                if completed == 0 && lost.is_none() {
                    lost = Some(token);
                }
            }
            transaction.commit()?;
            lost.map_or(Ok(()), |token| Err(lock_lost(token)))
        })
    }

    /// Gives a received message back: visible again after `delay` (zero: at once), or
    /// dead-lettered when it has been delivered the maximum number of times.
    pub fn abandon(&self, token: &LockToken, delay: Duration) -> Result<(), Error> {
        let max_deliveries = self.inner.options.max_delivery_count;
        self.with_connection(|connection| {
            let transaction = connection.transaction()?;
            let now = now_ms();
            let (seq, delivered) = held(&transaction, token, now)?;
            if delivered >= max_deliveries {
                dead_letter_row(
                    &transaction,
                    seq,
                    &format!(
                        "{MAX_DELIVERY_COUNT_EXCEEDED}: abandoned after {delivered} deliveries (the maximum is {max_deliveries})"
                    ),
                )?;
            } else {
                transaction
                    .prepare_cached(
                        "UPDATE messages SET lock_token = NULL, locked_until = 0, visible_at = ?2
                         WHERE seq = ?1",
                    )?
                    .execute(params![seq, now.saturating_add(millis(delay))])?;
            }
            transaction.commit()?;
            Ok(())
        })
    }

    /// Moves a received message to its queue's dead-letter list with a reason.
    pub fn dead_letter(&self, token: &LockToken, reason: &str) -> Result<(), Error> {
        self.with_connection(|connection| {
            let transaction = connection.transaction()?;
            let (seq, _) = held(&transaction, token, now_ms())?;
            dead_letter_row(&transaction, seq, reason)?;
            transaction.commit()?;
            Ok(())
        })
    }

    /// Extends a held lock by `lock` from now; returns the new expiry (Unix milliseconds).
    pub fn renew_lock(&self, token: &LockToken, lock: Duration) -> Result<i64, Error> {
        let seq = token.seq().ok_or_else(|| lock_lost(token))?;
        self.with_connection(|connection| {
            let now = now_ms();
            let until = now.saturating_add(millis(lock));
            let renewed = connection
                .prepare_cached(
                    "UPDATE messages SET locked_until = ?4
                     WHERE seq = ?1 AND lock_token = ?2 AND locked_until > ?3",
                )?
                .execute(params![seq, token.as_str(), now, until])?;
            if renewed == 0 {
                return Err(lock_lost(token));
            }
            Ok(until)
        })
    }

    /// The first `limit` dead-lettered messages of a queue, oldest first.
    pub fn dead_letters(
        &self,
        queue: Queue,
        limit: usize,
    ) -> Result<Vec<DeadLetteredMessage>, Error> {
        let name = self.inner.names.name(queue).to_string();
        self.with_connection(|connection| {
            let mut select = connection.prepare_cached(
                "SELECT queue, message_id, correlation_id, subject, body, enqueued_at,
                        delivery_count, dead_letter_reason
                 FROM messages WHERE queue = ?1 AND dead_letter_reason IS NOT NULL
                 ORDER BY seq LIMIT ?2",
            )?;
            let rows = select.query_map(params![name, limit as i64], |row| {
                Ok(DeadLetteredMessage {
                    message: stored_message(row)?,
                    delivery_count: row.get(6)?,
                    reason: row.get(7)?,
                })
            })?;
            rows.collect::<Result<Vec<_>, _>>().map_err(Error::from)
        })
    }

    fn new_token(&self, seq: i64, delivered: u32) -> LockToken {
        let serial = self.inner.tokens.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or(0);
        let mut hash = Sha256::new();
        hash.update(format!(
            "{}:{seq}:{delivered}:{serial}:{nanos}",
            std::process::id()
        ));
        LockToken(format!("{seq}.{}", hex::encode(&hash.finalize()[..16])))
    }
}

fn lock_lost(token: &LockToken) -> Error {
    Error::Permanent(format!(
        "lock {} is not held: it expired, or the message was completed, abandoned or dead-lettered",
        token.as_str()
    ))
}

/// The row a valid lock token holds: (seq, delivery count).
fn held(connection: &Connection, token: &LockToken, now: i64) -> Result<(i64, u32), Error> {
    let seq = token.seq().ok_or_else(|| lock_lost(token))?;
    connection
        .prepare_cached(
            "SELECT delivery_count FROM messages
             WHERE seq = ?1 AND lock_token = ?2 AND locked_until > ?3",
        )?
        .query_row(params![seq, token.as_str(), now], |row| row.get(0))
        .optional()?
        .map(|delivered| (seq, delivered))
        .ok_or_else(|| lock_lost(token))
}

/// The checkpoint thread: each wake-up copies the WAL back into the file, between commits.
/// Ends with the store (its last handle dropped closes the channel).
fn checkpoint_loop(store: Weak<Inner>, woken: Receiver<()>) {
    while woken.recv().is_ok() {
        let Some(inner) = store.upgrade() else {
            return;
        };
        inner.checkpoint();
    }
}

impl Inner {
    /// A PASSIVE checkpoint (it never waits for anything) of everything in the WAL now, on the
    /// thread's own connection while commits go on. When the WAL is past [`CATCH_UP_FRAMES`],
    /// the pages written during that copy are copied too, with the writers held back: the next
    /// write then starts the WAL over instead of growing it behind checkpoints that never quite
    /// catch up.
    fn checkpoint(&self) {
        self.checkpoint_then(|| ());
    }

    /// [`Inner::checkpoint`], running `meanwhile` between its copy beside the writers and the
    /// decision to catch up (tests write there, as writers do during a real copy).
    fn checkpoint_then(&self, meanwhile: impl FnOnce()) {
        if self.since_checkpoint.swap(0, Ordering::Relaxed) == 0 {
            return;
        }
        let Ok(mut own) = self.checkpoint_db.lock() else {
            return;
        };
        let Some(generation) = self.checkpoint_connection(&mut own) else {
            return;
        };
        let Some(checkpointer) = own.as_ref() else {
            return;
        };
        let started = Instant::now();
        let mut outcome = wal_checkpoint(&checkpointer.connection);
        meanwhile();
        let mut took = elapsed_us(started);
        let mut hold = None;
        // A WAL this long gets copied to its end now, so that the next write starts it over.
        if let Ok((log, copied)) = outcome {
            if log >= CATCH_UP_FRAMES {
                // First beside the writers: each pass copies what was written during the one
                // before (shorter each time, so less is written during it), until little is
                // left for the copy with the writers held back.
                let mut last = copied;
                let mut started_over = false;
                for _ in 0..MORE_PASSES {
                    let Ok((log, copied)) = wal_checkpoint(&checkpointer.connection) else {
                        break;
                    };
                    if log < last {
                        // A write found the WAL copied and started it over: nothing to hold.
                        started_over = true;
                        break;
                    }
                    let added = copied - last;
                    last = copied;
                    outcome = Ok((log, copied));
                    if added <= HOLD_AT_MOST_FRAMES {
                        break;
                    }
                }
                took = elapsed_us(started);
                if !started_over {
                    if let Ok(db) = self.db.lock() {
                        if self.file_open().map(|open| open.0) == Some(generation)
                            && db.connection.is_some()
                        {
                            let held = Instant::now();
                            outcome = wal_checkpoint(&checkpointer.connection);
                            let pages = outcome.as_ref().map_or(0, |(_, now)| now - last);
                            hold = Some((elapsed_us(held), u64::try_from(pages).unwrap_or(0)));
                        }
                    }
                }
            }
        }
        match outcome {
            Ok((_, pages)) => {
                if let Ok(mut stats) = self.checkpoints.lock() {
                    stats.count += 1;
                    stats.pages += u64::try_from(pages).unwrap_or(0);
                    stats.longest_us = stats.longest_us.max(took);
                    if let Some((hold, pages)) = hold {
                        stats.catch_ups += 1;
                        stats.hold_us += hold;
                        stats.hold_pages += pages;
                        stats.longest_hold_us = stats.longest_hold_us.max(hold);
                    }
                }
            }
            Err(err) => {
                tracing::warn!(store = %self.path.display(), error = %err, "Embedded store checkpoint failed; the next one tries again.");
            }
        }
    }

    /// Makes `own` a connection to the file the store has open now (opening one when the store
    /// reopened its path since); the generation it belongs to, or `None` when the store has no
    /// file open or no connection could be made (the next checkpoint tries again).
    fn checkpoint_connection(&self, own: &mut Option<Checkpointer>) -> Option<u64> {
        let (generation, identity) = self.file_open()?;
        if own.as_ref().map(|c| c.generation) != Some(generation) {
            *own = None;
            match connect_checkpointer(&self.path, identity) {
                Ok(connection) => {
                    *own = Some(Checkpointer {
                        generation,
                        connection,
                    })
                }
                Err(reason) => {
                    tracing::warn!(store = %self.path.display(), reason = %reason, "No checkpoint connection to the embedded store; the next checkpoint tries again.");
                    return None;
                }
            }
        }
        Some(generation)
    }

    fn checkpoint_stats_now(&self) -> CheckpointStats {
        self.checkpoints
            .lock()
            .map(|stats| *stats)
            .unwrap_or_default()
    }

    /// The file open now and its generation, if one is (a lost file is none).
    fn file_open(&self) -> Option<(u64, FileIdentity)> {
        let open = (*self.open_file.lock().ok()?)?;
        (open.1 != FileIdentity::LOST).then_some(open)
    }
}

/// One `PRAGMA wal_checkpoint(PASSIVE)`: the WAL's frames and how many of them are copied.
fn wal_checkpoint(connection: &Connection) -> rusqlite::Result<(i64, i64)> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        Ok((row.get::<_, i64>(1)?, row.get::<_, i64>(2)?))
    })
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

fn dead_letter_row(connection: &Connection, seq: i64, reason: &str) -> Result<(), Error> {
    connection
        .prepare_cached(
            "UPDATE messages SET dead_letter_reason = ?2, lock_token = NULL, locked_until = 0
             WHERE seq = ?1",
        )?
        .execute(params![seq, reason])?;
    Ok(())
}

fn stored_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    stored_message_at(row, 0)
}

fn stored_message_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<StoredMessage> {
    Ok(StoredMessage {
        queue: row.get(first)?,
        message_id: row.get(first + 1)?,
        correlation_id: row.get(first + 2)?,
        subject: row.get(first + 3)?,
        body: row.get(first + 4)?,
        enqueued_at: row.get(first + 5)?,
    })
}

#[async_trait::async_trait]
impl Publisher for EmbeddedStore {
    async fn publish(&self, tasks: &[Task]) -> Result<(), Error> {
        if tasks.is_empty() {
            return Ok(());
        }
        let store = self.clone();
        let tasks = tasks.to_vec();
        // SQLite blocks (fsync); keep it off the async workers.
        tokio::task::spawn_blocking(move || store.enqueue(&tasks))
            .await
            .map_err(|err| Error::Transient(format!("embedded store task failed: {err}")))??;
        Ok(())
    }

    fn name(&self) -> &'static str {
        "embedded"
    }

    fn embedded_store(&self) -> Option<&EmbeddedStore> {
        Some(self)
    }
}

impl EmbeddedStore {
    /// What the ledger knows of an alert (a blocking read: call it off the async workers).
    pub fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        let row: Option<(String, bool)> = self.with_connection(|connection| {
            Ok(connection
                .prepare_cached("SELECT status, planned FROM alerts WHERE system_alert_id = ?1")?
                .query_row(params![system_alert_id], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .optional()?)
        })?;
        Ok(row.map(|(status, planned)| LedgerEntry {
            status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Active),
            planned,
        }))
    }

    /// Records an alert's latest status, durably (a blocking commit: call it off the async
    /// workers); `planned` is sticky once true.
    pub fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error> {
        self.write(Write::Record {
            system_alert_id: system_alert_id.to_string(),
            status: status.as_str(),
            planned,
        })
        .map(|_| ())
    }
}

#[async_trait::async_trait]
impl AlertLedger for EmbeddedStore {
    async fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        let (store, id) = (self.clone(), system_alert_id.to_string());
        tokio::task::spawn_blocking(move || EmbeddedStore::lookup(&store, &id))
            .await
            .map_err(|err| Error::Transient(format!("ledger read did not finish: {err}")))?
    }

    async fn record(
        &self,
        system_alert_id: &str,
        status: AlertStatus,
        planned: bool,
    ) -> Result<(), Error> {
        // A durable write waits for its commit (an fsync): keep it off the async workers, or
        // one slow disk stalls every other invocation on that worker.
        let (store, id) = (self.clone(), system_alert_id.to_string());
        tokio::task::spawn_blocking(move || EmbeddedStore::record(&store, &id, status, planned))
            .await
            .map_err(|err| Error::Transient(format!("ledger write did not finish: {err}")))?
    }

    fn claims(&self) -> &Claims {
        &self.inner.claims
    }

    fn name(&self) -> &'static str {
        "embedded"
    }

    fn embedded_store(&self) -> Option<&EmbeddedStore> {
        Some(self)
    }
}

impl Write {
    /// How much it adds to the WAL, roughly: its rows, plus one for the commit's own pages.
    fn weight(&self) -> usize {
        match self {
            Write::Enqueue(rows) | Write::Alert { rows, .. } => rows.len() + 1,
            Write::Record { .. } => 1,
        }
    }
}

/// Applies one write inside the group's transaction (`now`: the commit's timestamp); returns
/// the rows it changed.
fn apply(connection: &Connection, write: &Write, now: &str) -> Result<usize, Error> {
    match write {
        Write::Enqueue(rows) => insert_rows(connection, rows, now),
        Write::Record {
            system_alert_id,
            status,
            planned,
        } => record_row(connection, system_alert_id, status, *planned, now),
        Write::Alert {
            rows,
            system_alert_id,
            status,
            planned,
            unless_planned,
        } => {
            if *unless_planned && is_planned(connection, system_alert_id)? {
                return Ok(0);
            }
            insert_rows(connection, rows, now)?;
            // The record always changes one row, so a committed alert never reports 0.
            record_row(connection, system_alert_id, status, *planned, now)
        }
    }
}

fn insert_rows(connection: &Connection, rows: &[MessageRow], now: &str) -> Result<usize, Error> {
    let mut insert = connection.prepare_cached(
        "INSERT OR IGNORE INTO messages
            (queue, message_id, correlation_id, subject, body, enqueued_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut added = 0;
    for (queue, message_id, correlation_id, subject, body) in rows {
        added += insert.execute(params![
            queue,
            message_id,
            correlation_id,
            subject,
            body,
            now
        ])?;
    }
    Ok(added)
}

fn record_row(
    connection: &Connection,
    system_alert_id: &str,
    status: &str,
    planned: bool,
    now: &str,
) -> Result<usize, Error> {
    Ok(connection
        .prepare_cached(
            "INSERT INTO alerts (system_alert_id, status, planned, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (system_alert_id) DO UPDATE SET
                status = excluded.status,
                planned = MAX(alerts.planned, excluded.planned),
                updated_at = excluded.updated_at",
        )?
        .execute(params![system_alert_id, status, planned, now])?)
}

fn is_planned(connection: &Connection, system_alert_id: &str) -> Result<bool, Error> {
    Ok(connection
        .prepare_cached("SELECT planned FROM alerts WHERE system_alert_id = ?1")?
        .query_row(params![system_alert_id], |row| row.get::<_, bool>(0))
        .optional()?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Action, AlertRef};

    fn task(target: &str) -> Task {
        let alert = AlertRef::sample("sys-1");
        Task::example(&alert, Action::RotateSecret, &["KV-4a"], target, "read")
    }

    #[test]
    fn enqueue_is_idempotent_on_message_id_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/store.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        assert_eq!(store.enqueue(&[task("a"), task("b")]).unwrap(), 2);
        assert_eq!(store.enqueue(&[task("a"), task("b")]).unwrap(), 0);
        drop(store);
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        assert_eq!(
            store.counts().unwrap(),
            vec![
                ("notification".into(), 0),
                ("isolation".into(), 0),
                ("rotation".into(), 2)
            ]
        );
        let peeked = store.peek(Queue::Rotation, 10).unwrap();
        assert_eq!(peeked[0].subject, "rotate_secret");
        assert_eq!(peeked[0].correlation_id, "sys-1");
        let body: Task = serde_json::from_str(&peeked[0].body).unwrap();
        assert_eq!(body, task("a"));
    }

    #[test]
    fn concurrent_writes_are_group_committed_each_with_its_own_result() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("g.sqlite3"), QueueNames::default()).unwrap();
        let threads: Vec<_> = (0..16)
            .map(|n| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let fresh = store.enqueue(&[task(&format!("t{n}"))]).unwrap();
                    let again = store.enqueue(&[task(&format!("t{n}"))]).unwrap();
                    store
                        .record(&format!("a{n}"), AlertStatus::Active, true)
                        .unwrap();
                    (fresh, again)
                })
            })
            .collect();
        for thread in threads {
            assert_eq!(thread.join().unwrap(), (1, 0));
        }
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 16));
        for n in 0..16 {
            assert!(store.lookup(&format!("a{n}")).unwrap().unwrap().planned);
        }
    }

    #[test]
    fn an_alert_is_one_write_and_a_planned_alert_is_not_written_again() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("a.sqlite3"), QueueNames::default()).unwrap();
        let tasks = store.encode(&[task("t1"), task("t2")]).unwrap();
        assert_eq!(tasks.len(), 2);
        let first = store
            .commit_alert(tasks, "sys-1", AlertStatus::Active, true, true)
            .unwrap();
        assert_eq!(first, AlertCommit::Committed);
        assert!(store.lookup("sys-1").unwrap().unwrap().planned);
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 2));
        // The stored body is the task's JSON, serialised once.
        let body = &store.peek(Queue::Rotation, 1).unwrap()[0].body;
        assert_eq!(body, &serde_json::to_string(&task("t1")).unwrap());

        // A redelivery planned again: the check inside the write finds it planned.
        let again = store.encode(&[task("t3")]).unwrap();
        let second = store
            .commit_alert(again, "sys-1", AlertStatus::Active, true, true)
            .unwrap();
        assert_eq!(second, AlertCommit::AlreadyPlanned);
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 2));

        // Without the check (a status update), the write goes in and `planned` stays sticky.
        let update = store.encode(&[task("t4")]).unwrap();
        let third = store
            .commit_alert(update, "sys-1", AlertStatus::Resolved, false, false)
            .unwrap();
        assert_eq!(third, AlertCommit::Committed);
        let entry = store.lookup("sys-1").unwrap().unwrap();
        assert_eq!((entry.status, entry.planned), (AlertStatus::Resolved, true));
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 3));
    }

    #[test]
    fn the_ledger_keeps_planned_sticky() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("s.sqlite3"), QueueNames::default()).unwrap();
        assert_eq!(store.lookup("a").unwrap(), None);
        store.record("a", AlertStatus::Active, true).unwrap();
        store.record("a", AlertStatus::Resolved, false).unwrap();
        assert_eq!(
            store.lookup("a").unwrap(),
            Some(LedgerEntry {
                status: AlertStatus::Resolved,
                planned: true
            })
        );
    }

    fn store_in(dir: &Path, options: QueueOptions) -> EmbeddedStore {
        EmbeddedStore::open_with(&dir.join("q.sqlite3"), QueueNames::default(), options).unwrap()
    }

    const LONG: Duration = Duration::from_secs(60);

    #[test]
    fn racing_receivers_get_different_messages_and_complete_removes_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path(), QueueOptions::default());
        let tasks: Vec<Task> = (0..40).map(|n| task(&format!("t{n}"))).collect();
        store.enqueue(&tasks).unwrap();
        let receivers: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        let batch = store.receive(Queue::Rotation, 3, LONG).unwrap();
                        if batch.is_empty() {
                            return got;
                        }
                        for message in batch {
                            assert_eq!(message.delivery_count, 1);
                            store.complete(&message.lock_token).unwrap();
                            got.push(message.message.message_id);
                        }
                    }
                })
            })
            .collect();
        let mut all: Vec<String> = receivers
            .into_iter()
            .flat_map(|receiver| receiver.join().unwrap())
            .collect();
        all.sort();
        let before = all.len();
        all.dedup();
        assert_eq!(before, 40, "every message delivered");
        assert_eq!(all.len(), 40, "no message delivered twice");
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 0));
        // A completed message id stays known: republishing it is still a no-op.
        assert_eq!(store.enqueue(&tasks).unwrap(), 0);
        assert!(store.receive(Queue::Rotation, 10, LONG).unwrap().is_empty());
    }

    #[test]
    fn an_expired_lock_makes_the_message_visible_again_and_the_stale_token_fails() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path(), QueueOptions::default());
        store.enqueue(&[task("a")]).unwrap();
        let first = store
            .receive(Queue::Rotation, 10, Duration::from_millis(50))
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            store.receive(Queue::Rotation, 10, LONG).unwrap().is_empty(),
            "locked: invisible to other receivers"
        );
        std::thread::sleep(Duration::from_millis(80));
        let second = store.receive(Queue::Rotation, 10, LONG).unwrap();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].message, first[0].message);
        assert_eq!(second[0].delivery_count, first[0].delivery_count + 1);
        assert_ne!(second[0].lock_token, first[0].lock_token);

        let err = store.complete(&first[0].lock_token).unwrap_err();
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("is not held"), "{err}");
        assert!(store.abandon(&first[0].lock_token, Duration::ZERO).is_err());
        store.complete(&second[0].lock_token).unwrap();
        assert!(
            store.complete(&second[0].lock_token).is_err(),
            "completing twice fails"
        );
    }

    #[test]
    fn complete_all_completes_every_held_message_and_reports_a_lost_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path(), QueueOptions::default());
        store.enqueue(&[task("a"), task("b"), task("c")]).unwrap();
        let got = store.receive(Queue::Rotation, 3, LONG).unwrap();
        store.complete(&got[0].lock_token).unwrap();
        let tokens: Vec<LockToken> = got.iter().map(|m| m.lock_token.clone()).collect();
        let err = store.complete_all(&tokens).unwrap_err();
        assert!(err.to_string().contains("is not held"), "{err}");
        assert!(store.receive(Queue::Rotation, 10, LONG).unwrap().is_empty());
        assert!(
            store.complete(&got[2].lock_token).is_err(),
            "the held ones were completed all the same"
        );
        store.complete_all(&[]).unwrap();
    }

    #[test]
    fn abandon_hands_the_message_back_after_its_delay_and_renew_extends_a_lock() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(dir.path(), QueueOptions::default());
        store.enqueue(&[task("a"), task("b")]).unwrap();
        let got = store.receive(Queue::Rotation, 1, LONG).unwrap();
        store.abandon(&got[0].lock_token, Duration::ZERO).unwrap();
        let again = store.receive(Queue::Rotation, 1, LONG).unwrap();
        assert_eq!(again[0].message, got[0].message, "oldest first, at once");
        assert_eq!(again[0].delivery_count, 2);
        store
            .abandon(&again[0].lock_token, Duration::from_secs(3600))
            .unwrap();
        let next = store.receive(Queue::Rotation, 10, LONG).unwrap();
        assert_eq!(next.len(), 1, "the delayed message stays hidden");
        assert_ne!(next[0].message, got[0].message);
        let until = store.renew_lock(&next[0].lock_token, LONG).unwrap();
        assert!(until >= next[0].locked_until_ms);
    }

    #[test]
    fn a_message_past_its_max_delivery_count_is_dead_lettered() {
        let dir = tempfile::tempdir().unwrap();
        let store = store_in(
            dir.path(),
            QueueOptions {
                max_delivery_count: 2,
            },
        );
        store.enqueue(&[task("poison"), task("fine")]).unwrap();
        // Delivery 1 abandoned, delivery 2 left to expire: the third is never handed out.
        let one = store.receive(Queue::Rotation, 1, LONG).unwrap();
        store.abandon(&one[0].lock_token, Duration::ZERO).unwrap();
        let two = store
            .receive(Queue::Rotation, 1, Duration::from_millis(30))
            .unwrap();
        assert_eq!(two[0].delivery_count, 2);
        std::thread::sleep(Duration::from_millis(50));
        let three = store.receive(Queue::Rotation, 10, LONG).unwrap();
        assert_eq!(three.len(), 1);
        assert_ne!(three[0].message, one[0].message, "only the healthy one");
        let dead = store.dead_letters(Queue::Rotation, 10).unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message, one[0].message);
        assert_eq!(dead[0].delivery_count, 2);
        assert!(dead[0].reason.starts_with(MAX_DELIVERY_COUNT_EXCEEDED));
        // Abandoning the last allowed delivery dead-letters at once; so does dead_letter.
        store.abandon(&three[0].lock_token, Duration::ZERO).unwrap();
        let four = store.receive(Queue::Rotation, 1, LONG).unwrap();
        assert_eq!(four[0].delivery_count, 2);
        store.abandon(&four[0].lock_token, Duration::ZERO).unwrap();
        assert_eq!(store.dead_letters(Queue::Rotation, 10).unwrap().len(), 2);
        assert_eq!(store.dead_letter_count(Queue::Rotation).unwrap(), 2);
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 0));
        store.enqueue(&[task("manual")]).unwrap();
        let manual = store.receive(Queue::Rotation, 1, LONG).unwrap();
        store
            .dead_letter(&manual[0].lock_token, "target gone")
            .unwrap();
        assert_eq!(
            store.dead_letters(Queue::Rotation, 10).unwrap()[2].reason,
            "target gone"
        );
    }

    #[test]
    fn a_store_from_before_peek_lock_gains_the_delivery_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL,
                   message_id TEXT NOT NULL, correlation_id TEXT NOT NULL, subject TEXT NOT NULL,
                   body TEXT NOT NULL, enqueued_at TEXT NOT NULL DEFAULT 'then',
                   UNIQUE (queue, message_id));
                 INSERT INTO messages (queue, message_id, correlation_id, subject, body)
                   VALUES ('rotation', 'm1', 'sys-1', 'rotate_secret', '{}');",
            )
            .unwrap();
        }
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        let got = store.receive(Queue::Rotation, 10, LONG).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].message.message_id, "m1");
        assert_eq!(got[0].delivery_count, 1);
    }

    /// The schema every store had before lock tokens named their row: AUTOINCREMENT, a rowid
    /// ledger with its key index, an index on `lock_token`.
    const SCHEMA_BEFORE_SEQ_TOKENS: &str = "
        CREATE TABLE messages (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, message_id TEXT NOT NULL,
            correlation_id TEXT NOT NULL, subject TEXT NOT NULL, body TEXT NOT NULL,
            enqueued_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
            visible_at INTEGER NOT NULL DEFAULT 0, lock_token TEXT,
            locked_until INTEGER NOT NULL DEFAULT 0, delivery_count INTEGER NOT NULL DEFAULT 0,
            dead_letter_reason TEXT, completed_at INTEGER, UNIQUE (queue, message_id));
        CREATE TABLE alerts (
            system_alert_id TEXT PRIMARY KEY, status TEXT NOT NULL, planned INTEGER NOT NULL,
            updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));
        CREATE INDEX messages_by_lock ON messages (lock_token);
        CREATE INDEX messages_ready ON messages (queue, visible_at, seq)
            WHERE dead_letter_reason IS NULL AND completed_at IS NULL;";

    #[test]
    fn a_store_made_by_the_earlier_schema_opens_and_keeps_its_messages_and_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("earlier.sqlite3");
        let kept = task("kept");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch("PRAGMA journal_mode=WAL;").unwrap();
            old.execute_batch(SCHEMA_BEFORE_SEQ_TOKENS).unwrap();
            old.execute(
                "INSERT INTO messages (queue, message_id, correlation_id, subject, body)
                 VALUES ('rotation', ?1, 'sys-1', 'rotate_secret', ?2)",
                params![
                    kept.message_id.as_str(),
                    serde_json::to_string(&kept).unwrap()
                ],
            )
            .unwrap();
            // A message locked by the process that had the store before: its token is of
            // the earlier form and no receiver holds it any more.
            old.execute(
                "INSERT INTO messages (queue, message_id, correlation_id, subject, body,
                                       lock_token, locked_until, delivery_count)
                 VALUES ('rotation', 'locked', 'sys-1', 'rotate_secret', '{}',
                         '0123456789abcdef0123456789abcdef', 1, 1)",
                [],
            )
            .unwrap();
            old.execute(
                "INSERT INTO alerts (system_alert_id, status, planned) VALUES ('sys-1', 'Active', 1)",
                [],
            )
            .unwrap();
        }
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        // The ledger and the message ids are what they were.
        assert!(store.lookup("sys-1").unwrap().unwrap().planned);
        assert_eq!(
            store.enqueue(std::slice::from_ref(&kept)).unwrap(),
            0,
            "a known message id"
        );
        assert_eq!(store.enqueue(&[task("new")]).unwrap(), 1);
        store.record("sys-1", AlertStatus::Resolved, false).unwrap();
        let entry = store.lookup("sys-1").unwrap().unwrap();
        assert_eq!((entry.status, entry.planned), (AlertStatus::Resolved, true));
        let tasks = store.encode(&[task("again")]).unwrap();
        assert_eq!(
            store
                .commit_alert(tasks, "sys-1", AlertStatus::Active, true, true)
                .unwrap(),
            AlertCommit::AlreadyPlanned
        );
        // Oldest first: the kept one, the one whose old lock expired, then the new one; each
        // completes with the new tokens.
        let got = store.receive(Queue::Rotation, 10, LONG).unwrap();
        let ids: Vec<&str> = got.iter().map(|m| m.message.message_id.as_str()).collect();
        assert_eq!(
            ids,
            vec![
                kept.message_id.as_str(),
                "locked",
                task("new").message_id.as_str()
            ]
        );
        assert_eq!(got[1].delivery_count, 2);
        for message in &got {
            store.renew_lock(&message.lock_token, LONG).unwrap();
            store.complete(&message.lock_token).unwrap();
        }
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 0));
        assert_eq!(
            store.enqueue(&[kept]).unwrap(),
            0,
            "a tombstone still counts"
        );
        drop(store);
        let check = Connection::open(&path).unwrap();
        let lock_index: i64 = check
            .query_row(
                "SELECT COUNT(*) FROM sqlite_schema WHERE name = 'messages_by_lock'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(lock_index, 0, "the lock-token index is dropped");
        assert_eq!(
            receive_plan(&check),
            "SEARCH messages USING INDEX messages_pending (queue=?)",
            "the earlier ready index is replaced"
        );
    }

    /// SQLite's plan for a receive's candidate query.
    fn receive_plan(connection: &Connection) -> String {
        connection
            .prepare(&format!("EXPLAIN QUERY PLAN {RECEIVE_CANDIDATES}"))
            .unwrap()
            .query_map(params!["rotation", 0, 8], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join(" | ")
    }

    #[test]
    fn a_receive_walks_the_pending_index_in_order_and_sorts_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plan.sqlite3");
        drop(EmbeddedStore::open(&path, QueueNames::default()).unwrap());
        let check = Connection::open(&path).unwrap();
        // No "USE TEMP B-TREE FOR ORDER BY": a receive reads the few rows it takes, not the
        // whole backlog of the queue.
        assert_eq!(
            receive_plan(&check),
            "SEARCH messages USING INDEX messages_pending (queue=?)"
        );
    }

    #[test]
    fn a_new_store_keys_seq_and_the_ledger_without_extra_tables() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        store.enqueue(&[task("a"), task("b")]).unwrap();
        store.record("sys-1", AlertStatus::Active, true).unwrap();
        let got = store.receive(Queue::Rotation, 1, LONG).unwrap();
        let (seq, _) = got[0].lock_token.as_str().split_once('.').unwrap();
        assert_eq!(seq, "1", "the token names the row it locks");
        // A token that names another row, or none, holds nothing.
        let forged = LockToken(format!("2.{}", &got[0].lock_token.as_str()[2..]));
        assert!(store.complete(&forged).is_err());
        assert!(store.complete(&LockToken("garbage".into())).is_err());
        store.complete(&got[0].lock_token).unwrap();
        let peeked = store.peek(Queue::Rotation, 1).unwrap();
        assert!(peeked[0].enqueued_at.ends_with('Z') && peeked[0].enqueued_at.len() == 24);
        drop(store);
        let check = Connection::open(&path).unwrap();
        let names: Vec<String> = check
            .prepare("SELECT name FROM sqlite_schema ORDER BY name")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !names.iter().any(|name| name == "sqlite_sequence"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|name| name == "messages_by_lock"),
            "{names:?}"
        );
        // The unique key leads with the queue and the alert: an alert's tasks sit together.
        let key: Vec<String> = check
            .prepare(
                "SELECT ii.name FROM pragma_index_list('messages') AS il,
                        pragma_index_info(il.name) AS ii
                 WHERE il.origin = 'u' ORDER BY ii.seqno",
            )
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(key, ["queue", "correlation_id", "message_id"]);
    }

    #[test]
    fn the_checkpoint_thread_copies_the_wal_back_between_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("c.sqlite3"), QueueNames::default()).unwrap();
        for n in 0..CHECKPOINT_WHEN_IDLE {
            store.enqueue(&[task(&format!("t{n}"))]).unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.checkpoint_stats().count == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let stats = store.checkpoint_stats();
        assert!(stats.count >= 1 && stats.pages > 0, "{stats:?}");
        assert_eq!(
            store.counts().unwrap()[2],
            ("rotation".into(), CHECKPOINT_WHEN_IDLE as u64)
        );
    }

    #[test]
    fn the_wal_index_lives_in_memory_and_the_file_is_held_exclusively() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        store.enqueue(&[task("a")]).unwrap();
        store.record("a", AlertStatus::Active, true).unwrap();
        let shm = dir.path().join("x.sqlite3-shm");
        assert!(!shm.exists(), "no memory-mapped WAL index file");
        // A stray, truncated index file is never mapped: writes go on.
        std::fs::write(&shm, b"").unwrap();
        store.enqueue(&[task("b")]).unwrap();
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 2));
        // Another process is kept out by SQLite's lock (tests/functions/end_to_end.rs); a
        // second store in this process, which would share that lock, is refused by name.
        let err = EmbeddedStore::open(&path, QueueNames::default()).unwrap_err();
        assert!(
            err.to_string().contains("already open in this process"),
            "{err}"
        );
        drop(store);
        EmbeddedStore::open(&path, QueueNames::default()).expect("free again once dropped");
    }

    /// The WAL's frames and how many are copied, asked on the store's own connection.
    fn wal_state(store: &EmbeddedStore) -> (i64, i64) {
        store
            .with_connection(|connection| Ok(wal_checkpoint(connection)?))
            .unwrap()
    }

    #[test]
    fn a_checkpoint_runs_beside_a_commit_instead_of_waiting_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("c.sqlite3"), QueueNames::default()).unwrap();
        for n in 0..10 {
            store.enqueue(&[task(&format!("t{n}"))]).unwrap();
        }
        // A commit under way holds the store's connection for as long as it takes.
        let commit = store.inner.db.lock().unwrap();
        let inner = store.inner.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let checkpointing = std::thread::spawn(move || {
            inner.checkpoint();
            let _ = done.send(inner.checkpoint_stats_now());
        });
        let stats = finished.recv_timeout(Duration::from_secs(10));
        drop(commit);
        checkpointing.join().unwrap();
        let stats = stats.expect("the checkpoint finished while the commit held the connection");
        assert_eq!((stats.count, stats.catch_ups), (1, 0), "{stats:?}");
        assert!(stats.pages > 0, "{stats:?}");
    }

    #[test]
    fn a_wal_a_write_already_started_over_holds_no_writer_back() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(&dir.path().join("w.sqlite3"), QueueNames::default()).unwrap();
        // One write of fat tasks: past CATCH_UP_FRAMES, but light enough that the store does
        // not wake its checkpoint thread, so this test decides when checkpoints run.
        let fat = "x".repeat(24_000);
        let tasks: Vec<Task> = (0..200).map(|n| task(&format!("{fat}{n}"))).collect();
        store.enqueue(&tasks).unwrap();
        let writer = store.clone();
        // The copy took everything, so this write starts the WAL over.
        store
            .inner
            .checkpoint_then(|| assert_eq!(writer.enqueue(&[task("meanwhile")]).unwrap(), 1));
        let stats = store.checkpoint_stats();
        assert_eq!((stats.count, stats.catch_ups), (1, 0), "{stats:?}");
        let (frames, _) = wal_state(&store);
        assert!(frames < 50, "the WAL started over: {frames} frames");
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 201));
    }

    #[test]
    fn what_was_written_during_a_copy_is_copied_beside_the_writers_before_they_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        let fat = "x".repeat(24_000);
        let tasks: Vec<Task> = (0..200).map(|n| task(&format!("{fat}{n}"))).collect();
        store.enqueue(&tasks).unwrap();
        // A reader's snapshot keeps the first copy from passing it, so the next write is left
        // for later, as a write during the copy is. It is far more than a hold should copy:
        // the next pass beside the writers takes it.
        let reader = connect_checkpointer(&path, identity_of(&path).unwrap()).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader
            .query_row("SELECT count(*) FROM alerts", [], |row| row.get(0))
            .unwrap();
        let more: Vec<Task> = (0..30).map(|n| task(&format!("{fat}m{n}"))).collect();
        store.enqueue(&more).unwrap();
        store
            .inner
            .checkpoint_then(|| reader.execute_batch("COMMIT").unwrap());
        let stats = store.checkpoint_stats();
        assert_eq!(stats.catch_ups, 1, "{stats:?}");
        assert!(
            stats.hold_pages <= HOLD_AT_MOST_FRAMES as u64,
            "the hold copied {} pages: {stats:?}",
            stats.hold_pages
        );
        // Everything is in the file now, so the next write starts the WAL from its beginning
        // (a WAL behind its checkpoints grows instead).
        store.enqueue(&[task("after")]).unwrap();
        let (frames, _) = wal_state(&store);
        assert!(frames < 50, "the WAL started over: {frames} frames");
        assert_eq!(store.counts().unwrap()[2], ("rotation".into(), 231));
    }

    #[test]
    fn a_deleted_store_folder_fails_retryable_until_it_can_be_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("state");
        let path = folder.join("store.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        store.enqueue(&[task("before")]).unwrap();

        std::fs::remove_dir_all(&folder).unwrap();
        // The path cannot be created (a file is where the folder was): retryable, nothing lost.
        std::fs::write(&folder, b"not a folder").unwrap();
        let err = store.enqueue(&[task("during")]).unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(store.lookup("x").unwrap_err().is_retryable());
        let err = store.record("x", AlertStatus::Active, true).unwrap_err();
        assert!(err.is_retryable(), "{err}");

        // Creatable again: the next write reopens a store at the path and lands in it.
        std::fs::remove_file(&folder).unwrap();
        assert_eq!(store.enqueue(&[task("after")]).unwrap(), 1);
        store.record("x", AlertStatus::Active, true).unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        let ids: Vec<String> = reopened
            .peek(Queue::Rotation, 10)
            .unwrap()
            .into_iter()
            .map(|m| m.message_id)
            .collect();
        assert_eq!(ids, vec![task("after").message_id.as_str().to_string()]);
        assert!(reopened.lookup("x").unwrap().unwrap().planned);
    }

    #[test]
    fn a_store_file_replaced_under_a_connection_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.sqlite3");
        let store = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        store.enqueue(&[task("one")]).unwrap();
        std::fs::remove_file(&path).unwrap();
        let _ = std::fs::remove_file(dir.path().join("store.sqlite3-wal"));
        store.enqueue(&[task("two")]).unwrap();
        drop(store);
        let reopened = EmbeddedStore::open(&path, QueueNames::default()).unwrap();
        assert_eq!(
            reopened.counts().unwrap()[2],
            ("rotation".into(), 1),
            "the write after the deletion is in the file at the path"
        );
    }
}
