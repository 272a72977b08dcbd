//! The server-wide budget of request-body bytes held in memory, so a burst of large uploads
//! cannot exhaust a small host, and a body read into memory under it.

use std::sync::Mutex;

/// A server-wide budget of request-body bytes held in memory, so a burst of large uploads
/// cannot exhaust a small host. Reservations are returned when dropped.
pub struct BodyBudget {
    limit: u64,
    used: Mutex<u64>,
}

/// Bytes reserved from a [`BodyBudget`].
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    pub(crate) held: u64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> BodyBudget {
        BodyBudget {
            limit,
            used: Mutex::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, u64> {
        crate::base::sync::lock(&self.used)
    }

    pub fn empty(&self) -> Reservation<'_> {
        Reservation {
            budget: self,
            held: 0,
        }
    }

    /// Bytes currently reserved.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        *self.lock()
    }
}

impl Reservation<'_> {
    /// Grows this reservation to at least `total` bytes; false if the budget cannot cover it.
    pub fn grow_to(&mut self, total: u64) -> bool {
        if total <= self.held {
            return true;
        }
        let mut used = self.budget.lock();
        let extra = total - self.held;
        if *used + extra > self.budget.limit {
            return false;
        }
        *used += extra;
        self.held = total;
        true
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let mut used = self.budget.lock();
        *used = used.saturating_sub(self.held);
    }
}

/// A request body read into memory, with the budget it holds.
pub struct Body<'a> {
    pub bytes: Vec<u8>,
    pub reservation: Reservation<'a>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_reserves_and_releases() {
        let b = BodyBudget::new(100);
        let mut r = b.empty();
        assert!(r.grow_to(60));
        let mut r2 = b.empty();
        assert!(!r2.grow_to(50));
        drop(r);
        assert!(r2.grow_to(50));
        assert_eq!(b.used(), 50);
    }
}
