//! The server-wide budget of request-body bytes held in memory, so a burst of large uploads
//! cannot exhaust a small host; the pace a body held under it must keep; and a body read into
//! memory under it.
//!
//! The budget counts memory a body really holds: its reader reserves as bytes arrive (a little
//! ahead, see [`crate::http::body`]), never from a declared `Content-Length`, so uploads that
//! declare much and send little cannot lock every other key out. What bounds such an upload
//! instead is its [`Pace`]: after a grace it must keep an average rate, or it ends with 408.

use std::sync::Mutex;
use std::time::Duration;

/// A server-wide budget of request-body bytes held in memory, so a burst of large uploads
/// cannot exhaust a small host. Reservations are returned when dropped.
pub struct BodyBudget {
    limit: u64,
    used: Mutex<u64>,
    /// How fast a body read under this budget must arrive.
    pub pace: Pace,
}

/// How fast a request body must arrive: any pace during `grace` (`body_grace_ms`), then an
/// average of at least `min_bytes_per_s` (`body_min_bytes_per_s`) counted from the end of the
/// grace, so bytes sent early are credit. A floor on the rate rather than one deadline for
/// every body: a deadline short enough to cut off a trickle quickly would also cut off a large
/// body on a slow link, and one long enough for that body would let a trickle hold a worker
/// for as long. With the floor, a trickle ends soon after the grace whatever it declared, and
/// a real upload may take as long as its size needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pace {
    pub grace: Duration,
    pub min_bytes_per_s: u64,
}

impl Pace {
    /// Whether a body that has delivered `got` bytes `elapsed` after its reading started is
    /// behind the floor.
    pub fn behind(&self, got: u64, elapsed: Duration) -> bool {
        let Some(late) = elapsed.checked_sub(self.grace) else {
            return false;
        };
        let owed = late
            .as_millis()
            .saturating_mul(u128::from(self.min_bytes_per_s))
            / 1000;
        u128::from(got) < owed
    }
}

/// Bytes reserved from a [`BodyBudget`].
pub struct Reservation<'a> {
    budget: &'a BodyBudget,
    pub(crate) held: u64,
}

impl BodyBudget {
    pub fn new(limit: u64, pace: Pace) -> BodyBudget {
        BodyBudget {
            limit,
            used: Mutex::new(0),
            pace,
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

    const PACE: Pace = Pace {
        grace: Duration::from_millis(1000),
        min_bytes_per_s: 100,
    };

    #[test]
    fn pace_allows_anything_in_the_grace_then_wants_the_average() {
        let ms = Duration::from_millis;
        assert!(!PACE.behind(0, ms(999)), "nothing needed during the grace");
        assert!(!PACE.behind(0, ms(1009)), "a byte is owed only after 10 ms");
        assert!(PACE.behind(0, ms(1010)));
        assert!(!PACE.behind(100, ms(2000)), "exactly the floor");
        assert!(PACE.behind(99, ms(2000)));
        assert!(!PACE.behind(500, ms(6000)), "early bytes are credit");
        assert!(PACE.behind(u64::MAX, Duration::MAX), "no overflow");
    }

    #[test]
    fn budget_reserves_and_releases() {
        let b = BodyBudget::new(100, PACE);
        let mut r = b.empty();
        assert!(r.grow_to(60));
        let mut r2 = b.empty();
        assert!(!r2.grow_to(50));
        drop(r);
        assert!(r2.grow_to(50));
        assert_eq!(b.used(), 50);
    }
}
