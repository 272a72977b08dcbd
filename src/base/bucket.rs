//! The token bucket behind every "N per minute" limit, and a bounded table of buckets (one per
//! key, IP, …) for limits whose keys come from outside.
//!
//! A bucket holds up to `capacity` tokens and refills continuously; a request takes one whole
//! token or is told how many seconds until one is there. A table never grows past its size:
//! when a new key arrives at a full table, buckets that have refilled completely are forgotten
//! first (a full bucket says nothing a fresh one would not), then the longest-quiet one.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// How a bucket fills: its capacity and its refill speed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    capacity: f64,
    per_sec: f64,
}

impl Rate {
    /// `n` per minute, with bursts of up to one minute's worth. `n` must not be 0 (callers
    /// treat 0 as "no limit" and skip the bucket).
    pub fn per_minute(n: u32) -> Rate {
        Rate {
            capacity: f64::from(n),
            per_sec: f64::from(n) / 60.0,
        }
    }
}

/// A token bucket: `tokens` refilled continuously up to the rate's capacity.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.capacity,
            updated: now,
        }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_sec).min(rate.capacity);
        self.updated = now;
    }

    /// Takes one token, or answers the seconds until one is available (at least 1).
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), u64> {
        self.refill(rate, now);
        if self.tokens < 1.0 {
            return Err((((1.0 - self.tokens) / rate.per_sec).ceil() as u64).max(1));
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

/// At most `max` buckets, one per key, all filling at the same rate.
#[derive(Debug)]
pub struct Table<K> {
    buckets: HashMap<K, Bucket>,
    max: usize,
}

impl<K: Hash + Eq + Clone> Table<K> {
    pub fn new(max: usize) -> Table<K> {
        Table {
            buckets: HashMap::new(),
            max,
        }
    }

    /// Takes one token from `key`'s bucket (a new key starts full), or answers the seconds
    /// until one is available.
    pub fn take(&mut self, key: &K, rate: Rate, now: Instant) -> Result<(), u64> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max {
            self.make_room(rate, now);
        }
        self.buckets
            .entry(key.clone())
            .or_insert(Bucket::full(rate, now))
            .take(rate, now)
    }

    /// Forgets full buckets, then (if that was not enough) the longest-quiet one, so a flood
    /// of new keys cannot grow the table.
    fn make_room(&mut self, rate: Rate, now: Instant) {
        self.buckets.retain(|_, b| {
            b.refill(rate, now);
            b.tokens < rate.capacity
        });
        if self.buckets.len() >= self.max {
            let oldest = self.buckets.iter().min_by_key(|(_, b)| b.updated);
            if let Some(key) = oldest.map(|(k, _)| k.clone()) {
                self.buckets.remove(&key);
            }
        }
    }

    /// Number of keys with a bucket.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_refills() {
        let rate = Rate::per_minute(3);
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert_eq!(b.take(rate, t0), Ok(()));
        }
        // One token comes back every 20 s.
        assert_eq!(b.take(rate, t0), Err(20));
        assert_eq!(b.take(rate, t0 + Duration::from_secs(15)), Err(5));
        assert_eq!(b.take(rate, t0 + Duration::from_secs(20)), Ok(()));
        // Refilling stops at the capacity.
        let later = t0 + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(b.take(rate, later), Ok(()));
        }
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn table_keeps_keys_apart_and_stays_bounded() {
        let rate = Rate::per_minute(1);
        let now = Instant::now();
        let mut t = Table::new(4);
        assert_eq!(t.take(&"a", rate, now), Ok(()));
        assert_eq!(t.take(&"a", rate, now), Err(60));
        assert_eq!(t.take(&"b", rate, now), Ok(()));
        for k in ["c", "d", "e", "f", "g"] {
            assert!(t.take(&k, rate, now).is_ok());
            assert!(t.len() <= 4, "{}", t.len());
        }
        // Once every bucket has refilled, all of them make way for a new key at once.
        let later = now + Duration::from_secs(120);
        assert!(t.take(&"h", rate, later).is_ok());
        assert_eq!(t.len(), 1);
    }
}
