//! The guest's memory budget: the bytes that outside input may make the guest hold.
//!
//! Every byte whose amount a client decides — partial frames being received, replies waiting
//! to be sent, a job's working memory — is reserved here before it is allocated, and the
//! reservation is given back when the memory is freed. The platform sizes the budget from its
//! RAM, leaving headroom for its own fixed needs (socket buffers, the allocator's
//! fragmentation). When a reservation does not fit, the caller answers `Busy` and keeps
//! serving: the guest never runs out of memory because of what a client sent.
//!
//! Single-threaded by design (the firmware serves all connections from one loop), but the
//! counter is atomic so that a `Worker` stays `Send` for the host-process tests.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
struct Pool {
    limit: usize,
    used: AtomicUsize,
    high_water: AtomicUsize,
}

/// A shared memory budget of `limit` bytes.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Pool>);

/// Bytes held against a [`Budget`]; released when dropped.
#[derive(Debug)]
pub struct Reservation {
    pool: Arc<Pool>,
    bytes: usize,
}

impl Budget {
    /// A budget of `limit` bytes, none used.
    pub fn new(limit: usize) -> Self {
        Budget(Arc::new(Pool {
            limit,
            used: AtomicUsize::new(0),
            high_water: AtomicUsize::new(0),
        }))
    }

    /// The limit in bytes.
    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }

    /// The most bytes ever reserved at once.
    pub fn high_water(&self) -> usize {
        self.0.high_water.load(Ordering::Relaxed)
    }

    /// An empty reservation, to grow later.
    pub fn empty(&self) -> Reservation {
        Reservation {
            pool: self.0.clone(),
            bytes: 0,
        }
    }

    /// Reserves `bytes`, or `None` when they do not fit.
    pub fn try_reserve(&self, bytes: usize) -> Option<Reservation> {
        let mut r = self.empty();
        r.try_grow(bytes).then_some(r)
    }
}

impl Pool {
    fn add(&self, bytes: usize, over_limit_ok: bool) -> bool {
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            let Some(new) = cur.checked_add(bytes) else {
                return false;
            };
            if new > self.limit && !over_limit_ok {
                return false;
            }
            match self
                .used
                .compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.high_water.fetch_max(new, Ordering::Relaxed);
                    return true;
                }
                Err(c) => cur = c,
            }
        }
    }

    fn sub(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Holds `more` bytes more, if they fit the budget.
    pub fn try_grow(&mut self, more: usize) -> bool {
        let ok = self.pool.add(more, false);
        if ok {
            self.bytes += more;
        }
        ok
    }

    /// Makes the reservation exactly `bytes`, even past the limit: for memory that is
    /// already allocated (a reply produced under another reservation), so that the books
    /// stay true and later reservations wait for it to be freed.
    pub fn set(&mut self, bytes: usize) {
        if bytes > self.bytes {
            self.pool.add(bytes - self.bytes, true);
        } else {
            self.pool.sub(self.bytes - bytes);
        }
        self.bytes = bytes;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.sub(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_fit_the_limit_and_are_returned() {
        let b = Budget::new(100);
        let r1 = b.try_reserve(60).unwrap();
        assert!(b.try_reserve(41).is_none());
        let mut r2 = b.try_reserve(40).unwrap();
        assert_eq!(b.used(), 100);
        assert!(!r2.try_grow(1));
        drop(r1);
        assert!(r2.try_grow(10));
        r2.set(150); // already-allocated memory is accounted even past the limit
        assert_eq!(b.used(), 150);
        assert!(b.try_reserve(1).is_none());
        r2.set(5);
        assert_eq!(b.used(), 5);
        drop(r2);
        assert_eq!(b.used(), 0);
        assert_eq!(b.high_water(), 150);
    }
}
