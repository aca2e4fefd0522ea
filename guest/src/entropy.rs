//! Entropy from the CPU's random number instructions, with retries and health tests.
//!
//! RDSEED (the conditioned entropy source, NIST SP 800-90B/C) is preferred; RDRAND (the DRBG
//! output) is the fallback. Both may fail transiently (CF=0): the Intel DRNG software guide
//! (§5.2.1) recommends up to 10 retries for RDRAND; RDSEED may fail more often under load, so it
//! is retried longer with PAUSE. On every 64-bit output a continuous health test runs: the
//! repetition-count test of NIST SP 800-90B §4.4.1 with cutoff 2 (two equal consecutive 64-bit
//! outputs have probability 2^-64), and a check for all-zero / all-ones words, the failure mode
//! of known-broken RDRAND implementations (e.g. AMD family 15h/16h after resume returning
//! 0xFFFF_FFFF_FFFF_FFFF). A failure is reported, never papered over.

/// The CPU instructions, as thin accessors (the firmware implements them; tests mock them).
pub trait HwRng {
    /// Whether RDSEED / RDRAND exist (CPUID.(7,0):EBX[18], CPUID.1:ECX[30]).
    fn has_rdseed(&self) -> bool;
    fn has_rdrand(&self) -> bool;
    /// One attempt; `None` when the instruction reported failure (CF = 0).
    fn rdseed64(&mut self) -> Option<u64>;
    fn rdrand64(&mut self) -> Option<u64>;
    /// A spin-loop hint between retries.
    fn pause(&mut self) {}
}

/// Which instruction produced the entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Rdseed,
    Rdrand,
}

/// Why no entropy could be produced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntropyError {
    /// The CPU has neither RDSEED nor RDRAND.
    NoHardwareRng,
    /// The instruction kept failing after all retries.
    RetriesExhausted(Source),
    /// The output failed a health test (the stuck value is reported).
    HealthTestFailed(Source, u64),
}

impl core::fmt::Display for EntropyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EntropyError::NoHardwareRng => write!(f, "the CPU has neither RDSEED nor RDRAND"),
            EntropyError::RetriesExhausted(s) => write!(f, "{s:?} failed on every retry"),
            EntropyError::HealthTestFailed(s, v) => {
                write!(f, "{s:?} output failed the health test (value {v:#018x})")
            }
        }
    }
}

/// RDRAND retries (Intel DRNG guide §5.2.1).
pub const RDRAND_RETRIES: u32 = 10;
/// RDSEED retries, each after a PAUSE.
pub const RDSEED_RETRIES: u32 = 1000;

/// Counters for the boot report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub words: u64,
    pub retries: u64,
}

/// A health-tested entropy source over [`HwRng`].
pub struct Entropy<R: HwRng> {
    rng: R,
    source: Source,
    last: Option<u64>,
    pub stats: Stats,
}

impl<R: HwRng> Entropy<R> {
    /// Pick RDSEED if present, else RDRAND; run a first health-tested draw.
    pub fn new(rng: R) -> Result<Self, EntropyError> {
        let source = if rng.has_rdseed() {
            Source::Rdseed
        } else if rng.has_rdrand() {
            Source::Rdrand
        } else {
            return Err(EntropyError::NoHardwareRng);
        };
        let mut e = Entropy {
            rng,
            source,
            last: None,
            stats: Stats::default(),
        };
        e.next_u64()?;
        Ok(e)
    }

    /// The instruction in use.
    pub fn source(&self) -> Source {
        self.source
    }

    /// One health-tested 64-bit word.
    pub fn next_u64(&mut self) -> Result<u64, EntropyError> {
        let (retries, src) = match self.source {
            Source::Rdseed => (RDSEED_RETRIES, Source::Rdseed),
            Source::Rdrand => (RDRAND_RETRIES, Source::Rdrand),
        };
        for _ in 0..retries {
            let v = match src {
                Source::Rdseed => self.rng.rdseed64(),
                Source::Rdrand => self.rng.rdrand64(),
            };
            match v {
                Some(v) => {
                    if v == 0 || v == u64::MAX || self.last == Some(v) {
                        return Err(EntropyError::HealthTestFailed(src, v));
                    }
                    self.last = Some(v);
                    self.stats.words += 1;
                    return Ok(v);
                }
                None => {
                    self.stats.retries += 1;
                    self.rng.pause();
                }
            }
        }
        Err(EntropyError::RetriesExhausted(src))
    }

    /// Fill `buf` with health-tested entropy.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<(), EntropyError> {
        for chunk in buf.chunks_mut(8) {
            let w = self.next_u64()?.to_le_bytes();
            chunk.copy_from_slice(&w[..chunk.len()]);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    struct Mock {
        seed: bool,
        rand: bool,
        out: VecDeque<Option<u64>>,
    }
    impl HwRng for Mock {
        fn has_rdseed(&self) -> bool {
            self.seed
        }
        fn has_rdrand(&self) -> bool {
            self.rand
        }
        fn rdseed64(&mut self) -> Option<u64> {
            assert!(self.seed, "rdseed used without support");
            self.out.pop_front().unwrap_or(None)
        }
        fn rdrand64(&mut self) -> Option<u64> {
            assert!(self.rand, "rdrand used without support");
            self.out.pop_front().unwrap_or(None)
        }
    }

    fn mock(seed: bool, rand: bool, out: &[Option<u64>]) -> Mock {
        Mock {
            seed,
            rand,
            out: out.iter().copied().collect(),
        }
    }

    #[test]
    fn prefers_rdseed_and_retries() {
        let mut e =
            Entropy::new(mock(true, true, &[None, None, Some(5), Some(6), Some(7)])).unwrap();
        assert_eq!(e.source(), Source::Rdseed);
        assert_eq!(e.stats.retries, 2);
        let mut b = [0u8; 12];
        e.fill(&mut b).unwrap();
        assert_eq!(&b[..8], &6u64.to_le_bytes());
        assert_eq!(&b[8..], &7u64.to_le_bytes()[..4]);
    }

    #[test]
    fn rdrand_fallback_and_exhaustion() {
        let e = Entropy::new(mock(false, true, &[Some(1)])).unwrap();
        assert_eq!(e.source(), Source::Rdrand);
        let fails = [None; RDRAND_RETRIES as usize];
        assert_eq!(
            Entropy::new(mock(false, true, &fails)).err(),
            Some(EntropyError::RetriesExhausted(Source::Rdrand))
        );
        assert_eq!(
            Entropy::new(mock(false, false, &[])).err(),
            Some(EntropyError::NoHardwareRng)
        );
    }

    #[test]
    fn health_tests() {
        assert_eq!(
            Entropy::new(mock(false, true, &[Some(u64::MAX)])).err(),
            Some(EntropyError::HealthTestFailed(Source::Rdrand, u64::MAX))
        );
        assert_eq!(
            Entropy::new(mock(true, false, &[Some(0)])).err(),
            Some(EntropyError::HealthTestFailed(Source::Rdseed, 0))
        );
        let mut e = Entropy::new(mock(false, true, &[Some(42), Some(42)])).unwrap();
        assert_eq!(
            e.next_u64(),
            Err(EntropyError::HealthTestFailed(Source::Rdrand, 42))
        );
    }
}
