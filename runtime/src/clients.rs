//! Replay protection and per-client ledgers, for the whole life of the guest's keys.
//!
//! Every job names its client (`reply_key`) and carries the client's counter `client_seq`,
//! which must be strictly greater than that of every job the guest accepted from that client
//! (RFC 9180 §9.7.4 leaves replay protection to the application). The guest keeps, per
//! client, the last counter it accepted, so a sealed job the host replays — after one job or
//! after millions — is refused: it can never be run or billed twice.
//!
//! Memory stays bounded: at most `capacity` clients are remembered. When the table is full
//! the client with the *smallest* last counter is forgotten and that counter raises a
//! `floor`; a client the guest does not remember must present a counter above the floor.
//! Every job ever accepted from a forgotten client had a counter at or below the floor, so
//! forgetting never re-opens a replay. Evicting the smallest counter (not the least recently
//! used) keeps the floor as low as possible: a client that sends a huge counter cannot push
//! the floor above everyone else's, since its own entry is the last to go. Clients that use
//! their clock as the counter (as the protocol recommends) are never affected by the floor.

use alloc::collections::{BTreeMap, BTreeSet};

/// What the guest remembers of one client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The last `client_seq` accepted.
    pub last_client_seq: u64,
    /// Receipts signed for this client (the receipt's `seq`).
    pub receipts: u64,
    /// Units billed to this client (the receipt's `total_units`).
    pub total_units: u64,
}

/// A job's counter was already used (or is below what the guest can vouch for).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The client is known and the counter is not above its last one.
    #[error("client_seq {seq} is not above {last}, the last one accepted from this reply key: a replay, or jobs sent out of order")]
    Used {
        /// The job's counter.
        seq: u64,
        /// The last accepted counter.
        last: u64,
    },
    /// The client is not remembered and the counter is not above the floor.
    #[error("client_seq {seq} is not above {floor}, the lowest counter this guest accepts from a reply key it does not remember; use a larger counter (e.g. the clock in ns)")]
    BelowFloor {
        /// The job's counter.
        seq: u64,
        /// The floor.
        floor: u64,
    },
}

/// The bounded table of client ledgers.
#[derive(Debug)]
pub struct ClientTable {
    ledgers: BTreeMap<[u8; 32], Ledger>,
    /// (last_client_seq, key) of every entry: the eviction order.
    by_seq: BTreeSet<(u64, [u8; 32])>,
    floor: u64,
    capacity: usize,
}

impl ClientTable {
    /// An empty table remembering at most `capacity` (at least 1) clients.
    pub fn new(capacity: usize) -> Self {
        ClientTable {
            ledgers: BTreeMap::new(),
            by_seq: BTreeSet::new(),
            floor: 0,
            capacity: capacity.max(1),
        }
    }

    /// Accepts `seq` from `client` if it was never used, and records it.
    pub fn admit(&mut self, client: &[u8; 32], seq: u64) -> Result<(), ReplayError> {
        match self.ledgers.get_mut(client) {
            Some(l) if seq <= l.last_client_seq => Err(ReplayError::Used {
                seq,
                last: l.last_client_seq,
            }),
            Some(l) => {
                self.by_seq.remove(&(l.last_client_seq, *client));
                l.last_client_seq = seq;
                self.by_seq.insert((seq, *client));
                Ok(())
            }
            None if seq <= self.floor => Err(ReplayError::BelowFloor {
                seq,
                floor: self.floor,
            }),
            None => {
                while self.ledgers.len() >= self.capacity {
                    self.evict_lowest();
                }
                let l = Ledger {
                    last_client_seq: seq,
                    ..Ledger::default()
                };
                self.ledgers.insert(*client, l);
                self.by_seq.insert((seq, *client));
                Ok(())
            }
        }
    }

    fn evict_lowest(&mut self) {
        if let Some((seq, key)) = self.by_seq.pop_first() {
            self.ledgers.remove(&key);
            self.floor = self.floor.max(seq);
        }
    }

    /// The ledger of an admitted client.
    pub fn ledger_mut(&mut self, client: &[u8; 32]) -> Option<&mut Ledger> {
        self.ledgers.get_mut(client)
    }

    /// Clients remembered.
    pub fn len(&self) -> usize {
        self.ledgers.len()
    }

    /// Whether no client is remembered.
    pub fn is_empty(&self) -> bool {
        self.ledgers.is_empty()
    }

    /// The lowest counter accepted from an unknown client, minus one.
    pub fn floor(&self) -> u64 {
        self.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_must_increase_per_client() {
        let mut t = ClientTable::new(4);
        t.admit(&[1; 32], 5).unwrap();
        assert_eq!(
            t.admit(&[1; 32], 5),
            Err(ReplayError::Used { seq: 5, last: 5 })
        );
        assert!(t.admit(&[1; 32], 4).is_err());
        t.admit(&[1; 32], 9).unwrap();
        t.admit(&[2; 32], 1).unwrap(); // other clients have their own counters
    }

    #[test]
    fn forgetting_a_client_never_reopens_a_replay() {
        let mut t = ClientTable::new(2);
        t.admit(&[1; 32], 10).unwrap();
        t.admit(&[2; 32], u64::MAX - 1).unwrap(); // a hostile huge counter
        t.admit(&[3; 32], 20).unwrap(); // evicts client 1 (lowest), floor 10
        assert_eq!(t.len(), 2);
        assert_eq!(t.floor(), 10);
        assert_eq!(
            t.admit(&[1; 32], 10),
            Err(ReplayError::BelowFloor { seq: 10, floor: 10 })
        );
        // The huge counter did not raise the floor for everyone.
        t.admit(&[4; 32], 30).unwrap(); // evicts client 3 (20)
        assert_eq!(t.floor(), 20);
        assert!(t.ledger_mut(&[2; 32]).is_some());
    }

    #[test]
    fn replay_after_many_clients_is_refused() {
        let mut t = ClientTable::new(100);
        t.admit(&[0xaa; 32], 1_000).unwrap();
        for i in 0..20_000u32 {
            let mut k = [0u8; 32];
            k[..4].copy_from_slice(&i.to_le_bytes());
            t.admit(&k, 2_000 + u64::from(i)).unwrap();
        }
        assert!(t.len() <= 100);
        assert!(t.admit(&[0xaa; 32], 1_000).is_err());
    }
}
