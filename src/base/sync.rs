//! Locking shared state.
//!
//! A handler panic is caught per request (the server answers 500 and the worker lives on), so a
//! mutex can be poisoned by a request that died while holding it. The state behind our mutexes
//! is counters, tables and caches that each critical section leaves consistent at every step
//! (no section does I/O or calls out while holding a lock), so the value is still good: we take
//! it rather than let one panic turn every later request into another panic.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the value even if a panicking thread poisoned it (see above).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_still_yields_its_value() {
        let m = Mutex::new(1);
        let _ = std::thread::scope(|s| {
            s.spawn(|| {
                let _g = m.lock().unwrap();
                panic!("poison it");
            })
            .join()
        });
        assert!(m.is_poisoned());
        *lock(&m) += 1;
        assert_eq!(*lock(&m), 2);
    }
}
