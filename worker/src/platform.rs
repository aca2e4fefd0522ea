//! The worker's entropy and clock: the OS's randomness (`getrandom`: the `getrandom(2)`
//! system call) and the monotonic clock (`Instant`).

use std::time::Instant;

use pupa_runtime::{Clock, Entropy, EntropyFailure};

/// The operating system's randomness.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyFailure> {
        getrandom::fill(buf).map_err(|_| EntropyFailure("getrandom(2) failed"))
    }
}

/// Nanoseconds since the worker started, from the monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock(Instant);

impl MonotonicClock {
    /// A clock whose zero is now.
    pub fn start() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}
