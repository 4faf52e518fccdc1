//! In-flight claims on alerts: one delivery of an alert plans and publishes at a time; copies
//! that arrive meanwhile wait for its outcome instead of publishing the plan again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::Error;

type Slots = Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>;

/// The alerts some delivery is handling right now, in this process.
///
/// A claim is held from the ledger lookup until the ledger records the outcome, so checking
/// "planned before?" and publishing the plan are one atomic step per alert. Claims live in
/// memory: a crash drops them with the deliveries that held them, and the platform's
/// redelivery claims afresh.
#[derive(Clone, Debug, Default)]
pub struct Claims {
    slots: Slots,
}

/// Holds the claim on one alert until dropped; dropping hands it to the next waiting copy.
#[derive(Debug)]
pub struct ClaimGuard {
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
    slot: Arc<tokio::sync::Mutex<()>>,
    key: String,
    slots: Slots,
}

impl Claims {
    /// Claims `key`, waiting up to `wait` while another delivery holds it (waiters are served
    /// in arrival order). Past `wait` the answer is a retryable error, never a silent go-ahead.
    pub async fn claim(&self, key: &str, wait: Duration) -> Result<ClaimGuard, Error> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| Error::Transient("claim table lock poisoned".into()))?;
            slots.entry(key.to_string()).or_default().clone()
        };
        let guard = self.make_guard(key, slot.clone());
        match tokio::time::timeout(wait, slot.lock_owned()).await {
            Ok(held) => {
                let mut guard = guard;
                guard.held = Some(held);
                Ok(guard)
            }
            // Dropping `guard` (never held) tidies the slot.
            Err(_) => Err(Error::Transient(format!(
                "alert {key} is being handled by another delivery that has not finished within {} s; retry",
                wait.as_secs_f64()
            ))),
        }
    }

    fn make_guard(&self, key: &str, slot: Arc<tokio::sync::Mutex<()>>) -> ClaimGuard {
        ClaimGuard {
            held: None,
            slot,
            key: key.to_string(),
            slots: self.slots.clone(),
        }
    }

    /// How many alerts are claimed or waited for (tests and diagnostics).
    pub fn len(&self) -> usize {
        self.slots.lock().map(|slots| slots.len()).unwrap_or(0)
    }

    /// Whether no alert is claimed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        drop(self.held.take());
        if let Ok(mut slots) = self.slots.lock() {
            // The table's copy and ours: nobody else waits, so the slot goes.
            if Arc::strong_count(&self.slot) == 2 {
                slots.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn one_holder_at_a_time_and_the_table_empties() {
        let claims = Claims::default();
        let inside = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (claims, inside, most) = (claims.clone(), inside.clone(), most.clone());
                tokio::spawn(async move {
                    let _guard = claims.claim("a", Duration::from_secs(10)).await.unwrap();
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    inside.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 1);
        assert!(claims.is_empty());
    }

    #[tokio::test]
    async fn a_waiter_past_its_bound_gets_a_retryable_error() {
        let claims = Claims::default();
        let _held = claims.claim("a", Duration::from_secs(1)).await.unwrap();
        let err = claims
            .claim("a", Duration::from_millis(20))
            .await
            .unwrap_err();
        assert!(err.is_retryable(), "{err}");
        assert!(claims.claim("b", Duration::from_millis(20)).await.is_ok());
    }
}
