//! The embedded default: a durable SQLite queue store (one logical queue per task queue,
//! idempotent on message id) that also keeps the alert ledger. Used when no Service Bus is set.
//!
//! Writes are group-committed: concurrent `enqueue` and `record` calls that arrive while a
//! commit is under way are applied together in the next transaction (each in its own
//! savepoint, so one failing write fails alone) and share its fsync. Every call still
//! returns only once its own write is committed with `synchronous=FULL`. Reads use a second
//! connection, which WAL lets run while a commit is syncing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

use super::{AlertLedger, LedgerEntry, Publisher, QueueNames};
use crate::domain::{AlertStatus, Queue, Task};
use crate::error::Error;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    queue          TEXT NOT NULL,
    message_id     TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    subject        TEXT NOT NULL,
    body           TEXT NOT NULL,
    enqueued_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (queue, message_id)
);
CREATE TABLE IF NOT EXISTS alerts (
    system_alert_id TEXT PRIMARY KEY,
    status          TEXT NOT NULL,
    planned         INTEGER NOT NULL,
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
";

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

/// A SQLite file holding the three queues and the alert ledger.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    names: QueueNames,
    /// Reads: ledger lookups, counts, peeks.
    connection: Mutex<Connection>,
    /// Writes: only the current group leader holds it.
    writer: Mutex<Connection>,
    /// Writes waiting for the next group commit, and the results of finished ones.
    group: Mutex<Group>,
    /// Signalled when a group commit finishes.
    committed: Condvar,
}

/// One write to apply in a group commit.
enum Write {
    /// Rows for `messages`: (queue, message id, correlation id, subject, body).
    Enqueue(Vec<(String, String, String, &'static str, String)>),
    /// A ledger update.
    Record {
        system_alert_id: String,
        status: &'static str,
        planned: bool,
    },
}

#[derive(Default)]
struct Group {
    next_ticket: u64,
    pending: Vec<(u64, Write)>,
    results: HashMap<u64, Result<usize, Error>>,
    leader: bool,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Opens (creating it and its folder if needed) the store at `path`.
    pub fn open(path: &Path, names: QueueNames) -> Result<Self, Error> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                Error::Config(format!(
                    "cannot create the store folder {}: {err}",
                    parent.display()
                ))
            })?;
        }
        let open = || {
            Connection::open(path).map_err(|err| {
                Error::Config(format!(
                    "cannot open the embedded store {}: {err}",
                    path.display()
                ))
            })
        };
        let prepare_error = |err: rusqlite::Error| {
            Error::Config(format!(
                "cannot prepare the embedded store {}: {err}",
                path.display()
            ))
        };
        let writer = open()?;
        writer
            .busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|_| writer.pragma_update(None, "journal_mode", "WAL"))
            // FULL: an acknowledged task survives power loss, not just a crash.
            .and_then(|_| writer.pragma_update(None, "synchronous", "FULL"))
            .and_then(|_| writer.execute_batch(SCHEMA))
            .map_err(prepare_error)?;
        let reader = open()?;
        reader
            .busy_timeout(std::time::Duration::from_secs(5))
            .and_then(|_| reader.pragma_update(None, "synchronous", "FULL"))
            .map_err(prepare_error)?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                names,
                connection: Mutex::new(reader),
                writer: Mutex::new(writer),
                group: Mutex::new(Group::default()),
                committed: Condvar::new(),
            }),
        })
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn connection(&self) -> Result<MutexGuard<'_, Connection>, Error> {
        self.inner
            .connection
            .lock()
            .map_err(|_| Error::Transient("embedded store lock poisoned".to_string()))
    }

    /// Enqueues tasks in one transaction; tasks whose message id is already on their queue are
    /// skipped. Returns how many were new.
    pub fn enqueue(&self, tasks: &[Task]) -> Result<usize, Error> {
        let mut rows = Vec::with_capacity(tasks.len());
        for task in tasks {
            let body = serde_json::to_string(task).map_err(|err| {
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
        self.write(Write::Enqueue(rows))
    }

    /// Applies one write in the next group commit and waits until that commit is durable.
    /// The first caller to find no commit under way leads: it takes every pending write,
    /// commits them together and hands each its result; the others wait for theirs.
    fn write(&self, write: Write) -> Result<usize, Error> {
        let poisoned = || Error::Transient("embedded store lock poisoned".to_string());
        let mut group = self.inner.group.lock().map_err(|_| poisoned())?;
        let ticket = group.next_ticket;
        group.next_ticket += 1;
        group.pending.push((ticket, write));
        loop {
            if let Some(result) = group.results.remove(&ticket) {
                return result;
            }
            if !group.leader {
                group.leader = true;
                let batch = std::mem::take(&mut group.pending);
                drop(group);
                let results = self.commit_group(batch);
                group = self.inner.group.lock().map_err(|_| poisoned())?;
                group.leader = false;
                group.results.extend(results);
                self.inner.committed.notify_all();
                continue;
            }
            group = self.inner.committed.wait(group).map_err(|_| poisoned())?;
        }
    }

    /// One transaction for a batch of writes, each in a savepoint so that one failing write
    /// is rolled back alone; if the commit itself fails, every write in it fails.
    fn commit_group(&self, batch: Vec<(u64, Write)>) -> Vec<(u64, Result<usize, Error>)> {
        let fail_all = |batch: Vec<(u64, Write)>, err: &dyn std::fmt::Display| {
            batch
                .into_iter()
                .map(|(ticket, _)| {
                    (
                        ticket,
                        Err(Error::Transient(format!("embedded store: {err}"))),
                    )
                })
                .collect()
        };
        let mut connection = match self.inner.writer.lock() {
            Ok(connection) => connection,
            Err(_) => return fail_all(batch, &"writer lock poisoned"),
        };
        let mut transaction = match connection.transaction() {
            Ok(transaction) => transaction,
            Err(err) => return fail_all(batch, &err),
        };
        let mut results = Vec::with_capacity(batch.len());
        for (ticket, write) in batch {
            let result = match transaction.savepoint() {
                Ok(mut savepoint) => match apply(&savepoint, &write) {
                    Ok(changed) => savepoint.commit().map(|_| changed).map_err(Error::from),
                    Err(err) => {
                        let _ = savepoint.rollback();
                        Err(err)
                    }
                },
                Err(err) => Err(Error::from(err)),
            };
            results.push((ticket, result));
        }
        match transaction.commit() {
            Ok(()) => results,
            Err(err) => results
                .into_iter()
                .map(|(ticket, result)| {
                    let failed = match result {
                        Ok(_) => Error::Transient(format!("embedded store: {err}")),
                        Err(own) => own,
                    };
                    (ticket, Err(failed))
                })
                .collect(),
        }
    }

    /// How many messages each queue holds.
    pub fn counts(&self) -> Result<Vec<(String, u64)>, Error> {
        let connection = self.connection()?;
        let mut counts = Vec::new();
        for queue in Queue::ALL {
            let name = self.inner.names.name(queue);
            let count: u64 = connection.query_row(
                "SELECT COUNT(*) FROM messages WHERE queue = ?1",
                params![name],
                |row| row.get(0),
            )?;
            counts.push((name.to_string(), count));
        }
        Ok(counts)
    }

    /// The first `limit` messages of a queue, oldest first, without removing them.
    pub fn peek(&self, queue: Queue, limit: usize) -> Result<Vec<StoredMessage>, Error> {
        let connection = self.connection()?;
        let mut select = connection.prepare_cached(
            "SELECT queue, message_id, correlation_id, subject, body, enqueued_at
             FROM messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows =
            select.query_map(params![self.inner.names.name(queue), limit as i64], |row| {
                Ok(StoredMessage {
                    queue: row.get(0)?,
                    message_id: row.get(1)?,
                    correlation_id: row.get(2)?,
                    subject: row.get(3)?,
                    body: row.get(4)?,
                    enqueued_at: row.get(5)?,
                })
            })?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Error::from)
    }
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
}

impl AlertLedger for EmbeddedStore {
    fn lookup(&self, system_alert_id: &str) -> Result<Option<LedgerEntry>, Error> {
        let connection = self.connection()?;
        let row: Option<(String, bool)> = connection
            .prepare_cached("SELECT status, planned FROM alerts WHERE system_alert_id = ?1")?
            .query_row(params![system_alert_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        Ok(row.map(|(status, planned)| LedgerEntry {
            status: AlertStatus::parse(&status).unwrap_or(AlertStatus::Active),
            planned,
        }))
    }

    fn record(
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

/// Applies one write inside the group's transaction; returns the rows it changed.
fn apply(connection: &Connection, write: &Write) -> Result<usize, Error> {
    match write {
        Write::Enqueue(rows) => {
            let mut insert = connection.prepare_cached(
                "INSERT OR IGNORE INTO messages (queue, message_id, correlation_id, subject, body)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut added = 0;
            for (queue, message_id, correlation_id, subject, body) in rows {
                added +=
                    insert.execute(params![queue, message_id, correlation_id, subject, body])?;
            }
            Ok(added)
        }
        Write::Record {
            system_alert_id,
            status,
            planned,
        } => Ok(connection
            .prepare_cached(
                "INSERT INTO alerts (system_alert_id, status, planned) VALUES (?1, ?2, ?3)
                 ON CONFLICT (system_alert_id) DO UPDATE SET
                    status = excluded.status,
                    planned = MAX(alerts.planned, excluded.planned),
                    updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            )?
            .execute(params![system_alert_id, status, planned])?),
    }
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
}
