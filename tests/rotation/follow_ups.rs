//! The grace-window follow-up through the worker, the journal and the sweeper, against the
//! simulator: a rotated secret's old versions are disabled by the sweeper once the (shortened)
//! window ends; a timer that fires twice and two racing sweepers disable them once; a new
//! worker over the same journal (a restart) still does it.

use std::path::Path;
use std::sync::Arc;

use defender_responder::adapters::{EmbeddedStore, QueueNames};
use defender_responder::domain::ids::SecretUri;
use defender_responder::domain::parameters::Parameters;
use defender_responder::domain::task::Task;
use defender_responder::domain::Queue;
use defender_responder::executors::ExecutorRegistry;
use defender_responder::journal::{Journal, SqliteJournal, TaskState};
use defender_responder::workers::sweeper::{self, SweepReport};
use defender_responder::workers::{Settlement, Worker};
use std::time::Duration;

use crate::helpers::*;
use crate::secrets::rotate;

const TIMEOUT: Duration = Duration::from_secs(72 * 3600);

/// A worker over the journal file in `dir` (a new one each call: a restarted instance, or
/// another instance), with a queue store of its own (an embedded store is exclusive).
fn worker(dir: &Path, world: &World, name: &str) -> Worker {
    let store =
        EmbeddedStore::open(&dir.join(format!("{name}.sqlite3")), QueueNames::default()).unwrap();
    let journal = Journal::new(Arc::new(
        SqliteJournal::open(&dir.join("store.journal.sqlite3")).unwrap(),
    ));
    Worker::new(journal, Arc::new(store))
        .with_executors(ExecutorRegistry::standard(), world.ctx.clone())
        .with_instance(name)
}

fn disable(versions: &[&str]) -> Task {
    task(Parameters::DisableSecret {
        secret: SecretUri::parse(DB_PASSWORD).unwrap(),
        versions_read: versions.iter().map(|v| v.to_string()).collect(),
    })
}

async fn process(worker: &Worker, task: &Task) -> Settlement {
    worker
        .process(Queue::Rotation, &serde_json::to_value(task).unwrap())
        .await
}

/// rotate_secret then disable_secret through `worker`: the old versions' disable is scheduled.
async fn rotate_then_schedule_the_disable(worker: &Worker, world: &World) -> Task {
    let rotated = process(worker, &rotate(DB_PASSWORD, &[DB_CURRENT])).await;
    assert!(
        rotated.describe().contains("done and verified"),
        "{rotated:?}"
    );
    let task = disable(&[DB_OLD, DB_CURRENT]);
    let scheduled = process(worker, &task).await;
    assert!(
        scheduled.describe().contains("done and verified"),
        "{scheduled:?}"
    );
    let entry = worker
        .journal()
        .get(&task.message_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.state, TaskState::Done);
    let follow_up = entry.follow_up.expect("the disable waits in the journal");
    let created = world.secret_versions("payments-db-password")[2]["created"]
        .as_i64()
        .unwrap();
    assert_eq!(follow_up.due_at, Some(created + GRACE));
    task
}

fn enabled(world: &World) -> Vec<bool> {
    world
        .secret_versions("payments-db-password")
        .iter()
        .map(|v| v["enabled"].as_bool().unwrap())
        .collect()
}

fn disable_writes(world: &World) -> usize {
    write_summary(&world.sim)
        .iter()
        .filter(|(method, _, path)| method == "PATCH" && path.contains("payments-db-password/"))
        .count()
}

fn done(report: &SweepReport) -> usize {
    report.follow_ups_done.len()
}

#[tokio::test]
async fn the_sweeper_disables_the_old_versions_once_the_grace_window_ends() {
    let world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(dir.path(), &world, "w1");
    let task = rotate_then_schedule_the_disable(&worker, &world).await;

    world.sim.clear_requests();
    let early = sweeper::sweep(&worker, TIMEOUT).await.unwrap();
    assert_eq!(done(&early), 0, "{early:?}");
    assert_eq!(enabled(&world), [true, true, true]);
    assert_eq!(disable_writes(&world), 0);

    world.advance(GRACE + 1);
    let due = sweeper::sweep(&worker, TIMEOUT).await.unwrap();
    assert_eq!(
        due.follow_ups_done,
        [format!("{}:disable_secret_versions", task.message_id)]
    );
    assert_eq!(
        enabled(&world),
        [false, false, true],
        "the old two disabled"
    );
    assert_eq!(disable_writes(&world), 2);

    // The timer fires again (or the host redelivers the tick): nothing more happens.
    let again = sweeper::sweep(&worker, TIMEOUT).await.unwrap();
    assert_eq!(again, SweepReport::default());
    assert_eq!(disable_writes(&world), 2);
    // The task's message delivered again does not schedule it a second time.
    let redelivered = process(&worker, &task).await;
    assert!(
        redelivered.describe().contains("nothing more to do"),
        "{redelivered:?}"
    );
    world.advance(GRACE + 1);
    assert_eq!(done(&sweeper::sweep(&worker, TIMEOUT).await.unwrap()), 0);

    let entry = worker
        .journal()
        .get(&task.message_id)
        .await
        .unwrap()
        .unwrap();
    assert!(entry.follow_up.is_none(), "nothing left to do");
    let note = entry.history.last().unwrap().note.clone().unwrap();
    assert!(
        note.starts_with("follow-up disable_secret_versions done: PATCH"),
        "{note}"
    );
    assert!(note.contains(DB_OLD), "{note}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sweepers_racing_disable_the_versions_once() {
    let world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let first = worker(dir.path(), &world, "instance-a");
    let second = worker(dir.path(), &world, "instance-b");
    rotate_then_schedule_the_disable(&first, &world).await;
    world.advance(GRACE + 1);
    world.sim.clear_requests();
    let (a, b) = tokio::join!(
        tokio::spawn({
            let first = first.clone();
            async move { sweeper::sweep(&first, TIMEOUT).await.unwrap() }
        }),
        tokio::spawn({
            let second = second.clone();
            async move { sweeper::sweep(&second, TIMEOUT).await.unwrap() }
        }),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(done(&a) + done(&b), 1, "{a:?} {b:?}");
    assert_eq!(disable_writes(&world), 2, "each old version disabled once");
    assert_eq!(enabled(&world), [false, false, true]);
}

#[tokio::test]
async fn a_restarted_instance_still_runs_the_follow_up_from_the_journal() {
    let world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let task = {
        let before = worker(dir.path(), &world, "before-restart");
        rotate_then_schedule_the_disable(&before, &world).await
    };
    world.advance(GRACE + 1);
    let after = worker(dir.path(), &world, "after-restart");
    let swept = sweeper::sweep(&after, TIMEOUT).await.unwrap();
    assert_eq!(
        swept.follow_ups_done,
        [format!("{}:disable_secret_versions", task.message_id)]
    );
    assert_eq!(enabled(&world), [false, false, true]);
}

#[tokio::test]
async fn a_transient_failure_is_retried_later_and_the_step_then_runs() {
    let world = world().await;
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(dir.path(), &world, "w1");
    let task = rotate_then_schedule_the_disable(&worker, &world).await;
    world.advance(GRACE + 1);
    world.fault(serde_json::json!({
        "method": "PATCH", "path": "/secrets/payments-db-password/*",
        "fault": {"kind": "status", "status": 503}
    }));
    let failed = sweeper::sweep(&worker, TIMEOUT).await.unwrap();
    assert_eq!(failed.follow_ups_retried.len(), 1, "{failed:?}");
    assert_eq!(enabled(&world), [true, true, true]);
    let entry = worker
        .journal()
        .get(&task.message_id)
        .await
        .unwrap()
        .unwrap();
    let scheduled = entry.follow_up.unwrap();
    let retry_at = scheduled.due_at.unwrap();
    assert!(retry_at > world.now(), "tried again later, not at once");
    assert!(scheduled.error.is_some());
    assert_eq!(done(&sweeper::sweep(&worker, TIMEOUT).await.unwrap()), 0);
    world.sim.clear_faults();
    world.advance(retry_at - world.now());
    let later = sweeper::sweep(&worker, TIMEOUT).await.unwrap();
    assert_eq!(done(&later), 1, "{later:?}");
    assert_eq!(enabled(&world), [false, false, true]);
}
