//! A lease held for the length of some work: renewed in the background at a third of its
//! duration, released when the work ends, lapsing on its own if the holder dies.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tokio::task::JoinHandle;

use super::{JournalError, Lease, SharedJournalStore};

/// A lease on a resource that stays held while this value lives (or until renewal fails).
pub struct HeldLease {
    store: SharedJournalStore,
    lease: Arc<Mutex<Lease>>,
    lost: Arc<AtomicBool>,
    stop: watch::Sender<bool>,
    renewer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HeldLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldLease")
            .field("lost", &self.is_lost())
            .finish_non_exhaustive()
    }
}

impl HeldLease {
    /// Takes the lease on `resource` and keeps renewing it; `None` while someone else holds it.
    pub async fn acquire(
        store: SharedJournalStore,
        resource: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<HeldLease>, JournalError> {
        let Some(lease) = store.acquire_lease(resource, holder, ttl).await? else {
            return Ok(None);
        };
        Ok(Some(HeldLease::hold(store, lease)))
    }

    /// Keeps renewing a lease already taken (by [`JournalStore::update_acquiring`], in the
    /// write that took it) until it is released or stopped.
    ///
    /// [`JournalStore::update_acquiring`]: super::JournalStore::update_acquiring
    pub fn hold(store: SharedJournalStore, lease: Lease) -> HeldLease {
        let ttl = lease.ttl;
        let lease = Arc::new(Mutex::new(lease));
        let lost = Arc::new(AtomicBool::new(false));
        let (stop, mut stopped) = watch::channel(false);
        let renewer = tokio::spawn({
            let store = store.clone();
            let lease = lease.clone();
            let lost = lost.clone();
            async move {
                let period = ttl / 3;
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return,
                        _ = tokio::time::sleep(period) => {}
                    }
                    let mut held = lease.lock().await;
                    match store.renew_lease(&held).await {
                        Ok(renewed) => *held = renewed,
                        Err(err) => {
                            tracing::warn!(resource = %held.resource, error = %err, "lease renewal failed; the work must stop");
                            lost.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                }
            }
        });
        HeldLease {
            store,
            lease,
            lost,
            stop,
            renewer: Some(renewer),
        }
    }

    /// Whether a renewal failed: another holder may have the resource now, so the work must
    /// not write any more.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The lease as last renewed.
    pub async fn lease(&self) -> Lease {
        self.lease.lock().await.clone()
    }

    /// Stops renewing and gives the lease back.
    pub async fn release(self) -> Result<(), JournalError> {
        let store = self.store.clone();
        let lease = self.stop().await?;
        store.release_lease(&lease).await
    }

    /// Stops renewing and hands the lease over, still held, to be given back in a write of its
    /// own ([`crate::journal::Journal::finish_releasing`]); [`JournalError::LeaseLost`] when
    /// a renewal failed.
    pub async fn stop(mut self) -> Result<Lease, JournalError> {
        let _ = self.stop.send(true);
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.await;
        }
        let lease = self.lease.lock().await.clone();
        if self.is_lost() {
            return Err(JournalError::LeaseLost(lease.resource));
        }
        Ok(lease)
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        // Not released (a panic, an early return): stop renewing; the lease lapses by itself.
        if let Some(renewer) = self.renewer.take() {
            renewer.abort();
        }
    }
}
