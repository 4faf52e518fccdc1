//! The embedded journal: tables `journal` and `journal_leases` in a SQLite file (by default
//! the embedded store's file), with versioned rows replaced by conditional `UPDATE`s.
//!
//! Several processes may open the same file: every compare-and-set is one statement, and
//! SQLite serialises writers, so exactly one of two racing writers matches the version.
//!
//! Every commit is synced (`synchronous=FULL`) except a claimed run's first write
//! ([`JournalStore::create_claimed`]): that one is committed without a sync of its own, and the
//! sync of the run's next commit, which always comes before the run changes anything outside
//! the journal, makes it durable with that commit (WAL frames are appended in order to one file).
//!
//! The sweeper's queries use indexes, never a scan of recent rows: `journal_by_state` finds
//! the entries in a state, `journal_by_follow_up` (on the `follow_up_due` column, the Unix
//! second a scheduled follow-up is due, `NULL` when none waits) finds the due follow-ups.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use time::OffsetDateTime;

use super::{
    EntryUpdate, JournalEntry, JournalError, JournalStore, Lease, Leased, TaskState, Updated,
    Version,
};
use crate::domain::MessageId;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS journal (
    message_id      TEXT PRIMARY KEY,
    system_alert_id TEXT NOT NULL,
    state           TEXT NOT NULL,
    version         INTEGER NOT NULL,
    received_at     TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    entry           TEXT NOT NULL,
    follow_up_due   INTEGER
);
CREATE INDEX IF NOT EXISTS journal_by_alert ON journal (system_alert_id, received_at);
CREATE INDEX IF NOT EXISTS journal_by_update ON journal (updated_at);
CREATE INDEX IF NOT EXISTS journal_by_state ON journal (state, updated_at);
CREATE TABLE IF NOT EXISTS journal_leases (
    resource      TEXT PRIMARY KEY,
    lease_id      TEXT NOT NULL,
    holder        TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL
);
";

/// The journal in a SQLite file.
#[derive(Clone)]
pub struct SqliteJournal {
    path: PathBuf,
    connection: Arc<Mutex<Db>>,
}

/// The connection, and whether it may still be set to commit without a sync (a claimed
/// create whose restoring of `synchronous=FULL` failed): no other work runs on it until the
/// setting is restored.
struct Db {
    connection: Connection,
    unsynced: bool,
    /// How many writes ran unsynced (for tests).
    unsynced_writes: u64,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteJournal {
    /// Opens (creating when missing) the journal tables in the file at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| {
                JournalError::Storage(format!("cannot create {}: {err}", parent.display()))
            })?;
        }
        let connection = Connection::open(path)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        // The whole schema in one transaction: one sync on a new journal instead of one per
        // statement, none on an existing one.
        connection.execute_batch("BEGIN IMMEDIATE")?;
        let created = connection
            .execute_batch(SCHEMA)
            .map_err(JournalError::from)
            .and_then(|()| add_follow_up_column(&connection));
        match created {
            Ok(()) => connection.execute_batch("COMMIT")?,
            Err(err) => {
                let _ = connection.execute_batch("ROLLBACK");
                return Err(err);
            }
        }
        Ok(SqliteJournal {
            path: path.to_path_buf(),
            connection: Arc::new(Mutex::new(Db {
                connection,
                unsynced: false,
                unsynced_writes: 0,
            })),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection off the async worker threads, every commit synced.
    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        self.on_connection(false, work).await
    }

    /// [`SqliteJournal::with`], `work`'s commits not synced by themselves when `unsynced`
    /// (`synchronous=NORMAL`: durable with the next synced commit). The connection is back to
    /// `synchronous=FULL` before any other work runs on it.
    pub(super) async fn on_connection<T: Send + 'static>(
        &self,
        unsynced: bool,
        work: impl FnOnce(&mut Connection) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let connection = self.connection.clone();
        tokio::task::spawn_blocking(move || {
            let mut db = connection
                .lock()
                .map_err(|_| JournalError::Storage("the journal connection is poisoned".into()))?;
            if db.unsynced {
                db.connection
                    .pragma_update(None, "synchronous", "FULL")
                    .map_err(|err| {
                        JournalError::Storage(format!(
                            "cannot make the journal's commits synced again: {err}"
                        ))
                    })?;
                db.unsynced = false;
            }
            if !unsynced {
                return work(&mut db.connection);
            }
            db.unsynced = true;
            db.unsynced_writes += 1;
            db.connection.pragma_update(None, "synchronous", "NORMAL")?;
            let result = work(&mut db.connection);
            if db
                .connection
                .pragma_update(None, "synchronous", "FULL")
                .is_ok()
            {
                db.unsynced = false;
            }
            result
        })
        .await
        .map_err(|err| JournalError::Storage(format!("journal worker: {err}")))?
    }

    /// Creates `entry` and, when `list_alert`, reads every entry of its alert in the same
    /// transaction (`unsynced`: see [`SqliteJournal::on_connection`]).
    async fn create_entry(
        &self,
        entry: &JournalEntry,
        list_alert: bool,
        unsynced: bool,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        let json = to_json(entry)?;
        let entry = entry.clone();
        self.on_connection(unsynced, move |connection| {
            if !list_alert {
                return Ok((insert(connection, &entry, &json)?, Vec::new()));
            }
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let created = insert(&transaction, &entry, &json)?;
            let entries = alert_entries(&transaction, &entry.system_alert_id)?;
            transaction.commit()?;
            Ok((created, entries))
        })
        .await
    }

    /// How many writes ran unsynced, for tests.
    #[cfg(test)]
    pub(super) fn unsynced_writes(&self) -> u64 {
        self.connection.lock().unwrap().unsynced_writes
    }

    /// The connection's `synchronous` setting now (2: FULL), for tests.
    #[cfg(test)]
    pub(super) fn synchronous(&self) -> i64 {
        let db = self.connection.lock().unwrap();
        db.connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))
            .unwrap()
    }
}

/// Adds `follow_up_due` (and its index) to a journal created before follow-ups were
/// scheduled; such a journal holds none, so nothing needs filling in.
fn add_follow_up_column(connection: &Connection) -> Result<(), JournalError> {
    let has_column = connection
        .prepare("SELECT 1 FROM pragma_table_info('journal') WHERE name = 'follow_up_due'")?
        .exists([])?;
    if !has_column {
        match connection.execute_batch("ALTER TABLE journal ADD COLUMN follow_up_due INTEGER;") {
            // Another process opening the same file added it first.
            Err(err) if err.to_string().contains("duplicate column") => {}
            other => other?,
        }
    }
    connection.execute_batch(
        "CREATE INDEX IF NOT EXISTS journal_by_follow_up ON journal (follow_up_due)
         WHERE follow_up_due IS NOT NULL;",
    )?;
    Ok(())
}

fn entries(
    connection: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<JournalEntry>, JournalError> {
    let mut statement = connection.prepare_cached(sql)?;
    let rows = statement.query_map(params, |row| row.get::<_, String>(0))?;
    rows.map(|row| from_json(&row?)).collect()
}

const INSERT: &str = "INSERT INTO journal (message_id, system_alert_id, state, version, received_at, updated_at, entry, follow_up_due)
     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7) ON CONFLICT (message_id) DO NOTHING";

/// Stores a new entry (encoded as `json`); `None` when the task has one already.
fn insert(
    connection: &Connection,
    entry: &JournalEntry,
    json: &str,
) -> Result<Option<Version>, JournalError> {
    let inserted = connection.prepare_cached(INSERT)?.execute(params![
        entry.message_id.as_str(),
        entry.system_alert_id,
        entry.state.as_str(),
        stamp(entry.received_at),
        stamp(entry.updated_at),
        json,
        entry.follow_up_due()
    ])?;
    Ok((inserted == 1).then(|| Version("1".into())))
}

/// Every entry of an alert, oldest first.
fn alert_entries(connection: &Connection, alert: &str) -> Result<Vec<JournalEntry>, JournalError> {
    entries(
        connection,
        "SELECT entry FROM journal WHERE system_alert_id = ?1 ORDER BY received_at, message_id",
        [alert],
    )
}

/// The entry of a task and its version.
fn load(
    connection: &Connection,
    id: &MessageId,
) -> Result<Option<(JournalEntry, i64)>, JournalError> {
    let row: Option<(String, i64)> = connection
        .prepare_cached("SELECT entry, version FROM journal WHERE message_id = ?1")?
        .query_row([id.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    row.map(|(text, version)| Ok((from_json(&text)?, version)))
        .transpose()
}

/// Replaces an entry (encoded as `json`) if its version is still `expected`; whether it did.
fn replace(
    connection: &Connection,
    entry: &JournalEntry,
    json: &str,
    expected: i64,
) -> Result<bool, JournalError> {
    let changed = connection
        .prepare_cached(
            "UPDATE journal SET state = ?1, version = version + 1, updated_at = ?2, entry = ?3,
                 follow_up_due = ?6
             WHERE message_id = ?4 AND version = ?5",
        )?
        .execute(params![
            entry.state.as_str(),
            stamp(entry.updated_at),
            json,
            entry.message_id.as_str(),
            expected,
            entry.follow_up_due()
        ])?;
    Ok(changed == 1)
}

/// A lease that lapses the moment it is taken protects nothing: refused by name.
fn lease_duration(ttl: Duration) -> Result<(), JournalError> {
    if ttl.is_zero() {
        return Err(JournalError::InvalidLease(
            "a lease needs a duration".into(),
        ));
    }
    Ok(())
}

/// A new lease on `resource` for `holder`, lapsing `ttl` after `now`.
fn new_lease(resource: &str, holder: &str, ttl: Duration, now: OffsetDateTime) -> Lease {
    Lease {
        resource: resource.to_string(),
        lease_id: uuid::Uuid::new_v4().to_string(),
        holder: holder.to_string(),
        ttl,
        expires_at: now + ttl,
    }
}

/// Stores `lease`: inserted, or taking over a lapsed one (at `now`); a live lease is left
/// alone. Whether it was stored.
fn acquire(
    connection: &Connection,
    lease: &Lease,
    now: OffsetDateTime,
) -> Result<bool, JournalError> {
    let changed = connection
        .prepare_cached(
            "INSERT INTO journal_leases (resource, lease_id, holder, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (resource) DO UPDATE SET lease_id = excluded.lease_id,
                 holder = excluded.holder, expires_at_ms = excluded.expires_at_ms
             WHERE journal_leases.expires_at_ms <= ?5",
        )?
        .execute(params![
            lease.resource,
            lease.lease_id,
            lease.holder,
            unix_ms(lease.expires_at),
            unix_ms(now)
        ])?;
    Ok(changed == 1)
}

/// Reads the entry, applies `update` and writes it back at the version read, inside an
/// IMMEDIATE transaction (its write lock taken first, so no other writer slips in between the
/// read and the write; a deferred read would fail to upgrade if one did). `Err` holds the
/// updated entry when the version moved on (not written).
fn rewrite(
    transaction: &Connection,
    id: &MessageId,
    update: &EntryUpdate,
) -> Result<Result<JournalEntry, JournalEntry>, JournalError> {
    let (entry, version) =
        load(transaction, id)?.ok_or_else(|| JournalError::NotFound(id.clone()))?;
    let entry = update(entry)?;
    let json = to_json(&entry)?;
    Ok(if replace(transaction, &entry, &json, version)? {
        Ok(entry)
    } else {
        Err(entry)
    })
}

/// Deletes a lease if it is still the one given; how many rows went (0 or 1).
fn release(connection: &Connection, lease: &Lease) -> Result<usize, JournalError> {
    Ok(connection
        .prepare_cached("DELETE FROM journal_leases WHERE resource = ?1 AND lease_id = ?2")?
        .execute(params![lease.resource, lease.lease_id])?)
}

fn to_json(entry: &JournalEntry) -> Result<String, JournalError> {
    serde_json::to_string(entry)
        .map_err(|err| JournalError::Storage(format!("cannot encode an entry: {err}")))
}

fn from_json(text: &str) -> Result<JournalEntry, JournalError> {
    serde_json::from_str(text)
        .map_err(|err| JournalError::Storage(format!("unreadable journal entry: {err}")))
}

fn stamp(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn unix_ms(at: OffsetDateTime) -> i64 {
    (at.unix_timestamp_nanos() / 1_000_000) as i64
}

#[async_trait::async_trait]
impl JournalStore for SqliteJournal {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    async fn create(&self, entry: &JournalEntry) -> Result<Option<Version>, JournalError> {
        Ok(self.create_entry(entry, false, false).await?.0)
    }

    async fn create_listing_alert(
        &self,
        entry: &JournalEntry,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        self.create_entry(entry, true, false).await
    }

    async fn create_claimed(
        &self,
        entry: &JournalEntry,
        list_alert: bool,
    ) -> Result<(Option<Version>, Vec<JournalEntry>), JournalError> {
        self.create_entry(entry, list_alert, true).await
    }

    async fn load(&self, id: &MessageId) -> Result<Option<(JournalEntry, Version)>, JournalError> {
        let id = id.clone();
        self.with(move |connection| {
            load(connection, &id)?
                .map(|(entry, version)| Ok((entry, Version(version.to_string()))))
                .transpose()
        })
        .await
    }

    async fn replace(
        &self,
        entry: &JournalEntry,
        expected: &Version,
    ) -> Result<Option<Version>, JournalError> {
        let json = to_json(entry)?;
        let entry = entry.clone();
        let expected: i64 = expected
            .0
            .parse()
            .map_err(|_| JournalError::Storage(format!("not a SQLite version: {expected}")))?;
        self.with(move |connection| {
            let changed = replace(connection, &entry, &json, expected)?;
            Ok(changed.then(|| Version((expected + 1).to_string())))
        })
        .await
    }

    async fn update(&self, id: &MessageId, update: EntryUpdate) -> Result<Updated, JournalError> {
        self.update_releasing(id, update, &[]).await
    }

    async fn update_releasing(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        leases: &[Lease],
    ) -> Result<Updated, JournalError> {
        let id = id.clone();
        let leases = leases.to_vec();
        self.with(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let entry = match rewrite(&transaction, &id, &update)? {
                Ok(entry) => entry,
                Err(conflict) => return Ok(Updated::Conflict(conflict)),
            };
            for lease in &leases {
                // A lease lost since (lapsed and taken) is someone else's now: left alone.
                if release(&transaction, lease)? == 0 {
                    tracing::warn!(resource = %lease.resource, "lease release failed; it was lost");
                }
            }
            transaction.commit()?;
            Ok(Updated::Written(entry))
        })
        .await
    }

    async fn update_acquiring(
        &self,
        id: &MessageId,
        update: EntryUpdate,
        resources: &[String],
        holder: &str,
        ttl: Duration,
    ) -> Result<(Updated, Leased), JournalError> {
        if !resources.is_empty() {
            lease_duration(ttl)?;
        }
        let id = id.clone();
        let resources = resources.to_vec();
        let holder = holder.to_string();
        self.with(move |connection| {
            // One transaction, one sync: the entry and the leases land together or not at all.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let entry = match rewrite(&transaction, &id, &update)? {
                Ok(entry) => entry,
                Err(conflict) => {
                    return Ok((Updated::Conflict(conflict), Leased::Taken(Vec::new())))
                }
            };
            let now = OffsetDateTime::now_utc();
            let mut taken = Vec::with_capacity(resources.len());
            let mut leased = None;
            for resource in &resources {
                let lease = new_lease(resource, &holder, ttl, now);
                if !acquire(&transaction, &lease, now)? {
                    // Held by another run: none of this write's leases is kept.
                    for lease in &taken {
                        release(&transaction, lease)?;
                    }
                    leased = Some(Leased::Busy(resource.clone()));
                    break;
                }
                taken.push(lease);
            }
            transaction.commit()?;
            Ok((
                Updated::Written(entry),
                leased.unwrap_or(Leased::Taken(taken)),
            ))
        })
        .await
    }

    async fn for_alert(&self, system_alert_id: &str) -> Result<Vec<JournalEntry>, JournalError> {
        let alert = system_alert_id.to_string();
        self.with(move |connection| alert_entries(connection, &alert))
            .await
    }

    async fn recent(&self, limit: usize) -> Result<Vec<JournalEntry>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |connection| {
            let mut statement = connection.prepare_cached(
                "SELECT entry FROM journal ORDER BY updated_at DESC, message_id LIMIT ?1",
            )?;
            let rows = statement.query_map([limit], |row| row.get::<_, String>(0))?;
            rows.map(|row| from_json(&row?)).collect()
        })
        .await
    }

    async fn in_state(&self, state: TaskState) -> Result<Vec<JournalEntry>, JournalError> {
        if !super::INDEXED_STATES.contains(&state) {
            return Ok(Vec::new());
        }
        self.with(move |connection| {
            entries(
                connection,
                "SELECT entry FROM journal WHERE state = ?1 ORDER BY updated_at, message_id",
                [state.as_str()],
            )
        })
        .await
    }

    async fn follow_ups_due(
        &self,
        now: i64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, JournalError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with(move |connection| {
            entries(
                connection,
                "SELECT entry FROM journal WHERE follow_up_due IS NOT NULL AND follow_up_due <= ?1
                 ORDER BY follow_up_due, message_id LIMIT ?2",
                params![now, limit],
            )
        })
        .await
    }

    async fn acquire_lease(
        &self,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>, JournalError> {
        lease_duration(ttl)?;
        let now = OffsetDateTime::now_utc();
        let lease = new_lease(resource, holder, ttl, now);
        self.with(move |connection| Ok(acquire(connection, &lease, now)?.then_some(lease)))
            .await
    }

    async fn renew_lease(&self, lease: &Lease) -> Result<Lease, JournalError> {
        let now = OffsetDateTime::now_utc();
        let mut renewed = lease.clone();
        renewed.expires_at = now + lease.ttl;
        let row = renewed.clone();
        let changed = self
            .with(move |connection| {
                // A lapsed lease nobody took since is still ours to renew (as with Blob leases).
                Ok(connection
                    .prepare_cached(
                        "UPDATE journal_leases SET expires_at_ms = ?1 WHERE resource = ?2 AND lease_id = ?3",
                    )?
                    .execute(params![unix_ms(row.expires_at), row.resource, row.lease_id])?)
            })
            .await?;
        if changed == 1 {
            Ok(renewed)
        } else {
            Err(JournalError::LeaseLost(lease.resource.clone()))
        }
    }

    async fn release_lease(&self, lease: &Lease) -> Result<(), JournalError> {
        let row = lease.clone();
        let changed = self
            .with(move |connection| release(connection, &row))
            .await?;
        if changed == 1 {
            Ok(())
        } else {
            Err(JournalError::LeaseLost(lease.resource.clone()))
        }
    }
}
