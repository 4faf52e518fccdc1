//! Token buckets that keep the responder under Azure's own throttling limits (ARM writes and
//! deletes per subscription, Defender for Endpoint machine actions per minute).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The size and refill rate of a bucket.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketLimit {
    /// How many calls may go at once after a quiet period.
    pub capacity: f64,
    /// How many calls per second come back.
    pub refill_per_second: f64,
}

impl BucketLimit {
    /// ARM's write bucket per subscription and principal: 200, refilled 10 per second.
    pub const ARM_WRITES: BucketLimit = BucketLimit {
        capacity: 200.0,
        refill_per_second: 10.0,
    };
    /// ARM's delete bucket: 200, refilled 10 per second.
    pub const ARM_DELETES: BucketLimit = BucketLimit {
        capacity: 200.0,
        refill_per_second: 10.0,
    };
    /// Defender for Endpoint machine actions: 100 a minute.
    pub const MDE_ACTIONS: BucketLimit = BucketLimit {
        capacity: 100.0,
        refill_per_second: 100.0 / 60.0,
    };
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets keyed by text (a subscription id, "mde"): `try_take` either takes one token
/// or says how long until one is back.
#[derive(Debug)]
pub struct TokenBuckets {
    limit: BucketLimit,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl TokenBuckets {
    /// Buckets of this size, full at first.
    pub fn new(limit: BucketLimit) -> Self {
        TokenBuckets {
            limit,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit.
    pub fn limit(&self) -> BucketLimit {
        self.limit
    }

    /// Takes a token from `key`'s bucket, or answers how long until one is back.
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        self.try_take_at(key, Instant::now())
    }

    fn try_take_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let limit = self.limit;
        let bucket = buckets.entry(key.to_ascii_lowercase()).or_insert(Bucket {
            tokens: limit.capacity,
            updated: now,
        });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.refill_per_second).min(limit.capacity);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if limit.refill_per_second <= 0.0 {
            Err(Duration::from_secs(3600))
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / limit.refill_per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_empties_then_refills_at_its_rate() {
        let buckets = TokenBuckets::new(BucketLimit {
            capacity: 2.0,
            refill_per_second: 4.0,
        });
        let start = Instant::now();
        assert!(buckets.try_take_at("s1", start).is_ok());
        assert!(buckets.try_take_at("S1", start).is_ok(), "keys ignore case");
        let wait = buckets.try_take_at("s1", start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(250));
        // Another subscription has its own bucket.
        assert!(buckets.try_take_at("s2", start).is_ok());
        assert!(buckets
            .try_take_at("s1", start + Duration::from_millis(260))
            .is_ok());
    }
}
