//! Replay protection: the set of HPKE encapsulated keys (`enc`) of jobs already opened.
//! An `enc` is a fresh X25519 public key per sealed job, so a repeat means a replay (RFC 9180
//! §9.7.4 leaves replay protection to the application). Bounded: the oldest entry is forgotten
//! when the set is full.

use alloc::collections::{BTreeSet, VecDeque};

/// A bounded first-in-first-out set of 32-byte keys.
#[derive(Debug)]
pub struct ReplaySet {
    set: BTreeSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
    capacity: usize,
}

impl ReplaySet {
    /// An empty set remembering at most `capacity` (at least 1) entries.
    pub fn new(capacity: usize) -> Self {
        ReplaySet {
            set: BTreeSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `key` is remembered.
    pub fn contains(&self, key: &[u8; 32]) -> bool {
        self.set.contains(key)
    }

    /// Remembers `key`; false if it was already there.
    pub fn insert(&mut self, key: [u8; 32]) -> bool {
        if !self.set.insert(key) {
            return false;
        }
        self.order.push_back(key);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }

    /// Entries remembered.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_fifo() {
        let mut r = ReplaySet::new(2);
        assert!(r.insert([1; 32]));
        assert!(!r.insert([1; 32]));
        assert!(r.insert([2; 32]));
        assert!(r.insert([3; 32]));
        assert_eq!(r.len(), 2);
        assert!(!r.contains(&[1; 32]) && r.contains(&[2; 32]) && r.contains(&[3; 32]));
    }
}
