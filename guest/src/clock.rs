//! The TSC clock and its calibration.
//!
//! The TSC frequency is taken, in this order, from:
//! 1. CPUID leaf 0x15 (TSC/core crystal ratio, SDM Vol. 3B §19.7.3) when it states the crystal
//!    frequency — under TDX the TDX module virtualises it, so a TD needs no legacy timer;
//! 2. a measurement against the 8254 PIT (1.193182 MHz, a known fixed rate): channel 2 is gated
//!    through port 0x61 and counts down a fixed number of ticks while the TSC runs.

/// The 8254 PIT input clock, Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// How the TSC frequency was determined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calibration {
    /// CPUID leaf 0x15.
    Cpuid15,
    /// Measured against the PIT over the given number of PIT ticks.
    Pit { ticks: u32 },
}

/// TSC frequency from CPUID.15H: EAX = denominator, EBX = numerator, ECX = crystal Hz.
/// `None` when any of them is zero (the leaf does not enumerate the frequency).
pub fn tsc_hz_from_cpuid15(eax: u32, ebx: u32, ecx: u32) -> Option<u64> {
    if eax == 0 || ebx == 0 || ecx == 0 {
        return None;
    }
    Some(ecx as u64 * ebx as u64 / eax as u64)
}

/// TSC frequency from `tsc_delta` TSC ticks counted over `pit_ticks` PIT ticks.
pub fn tsc_hz_from_pit(tsc_delta: u64, pit_ticks: u32) -> Option<u64> {
    if pit_ticks == 0 || tsc_delta == 0 {
        return None;
    }
    Some((tsc_delta as u128 * PIT_HZ as u128 / pit_ticks as u128) as u64)
}

/// A calibrated TSC: converts ticks to time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tsc {
    pub hz: u64,
    pub calibration: Calibration,
}

impl Tsc {
    /// Nanoseconds for `ticks` TSC ticks.
    pub fn ticks_to_ns(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000_000 / self.hz.max(1) as u128) as u64
    }
    /// Microseconds for `ticks` TSC ticks.
    pub fn ticks_to_us(&self, ticks: u64) -> u64 {
        (ticks as u128 * 1_000_000 / self.hz.max(1) as u128) as u64
    }
    /// TSC ticks in `us` microseconds (saturating).
    pub fn us_to_ticks(&self, us: u64) -> u64 {
        u64::try_from(us as u128 * self.hz as u128 / 1_000_000).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuid15() {
        // a 25 MHz crystal, ratio 188/2: 2.35 GHz
        assert_eq!(tsc_hz_from_cpuid15(2, 188, 25_000_000), Some(2_350_000_000));
        assert_eq!(tsc_hz_from_cpuid15(2, 188, 0), None);
        assert_eq!(tsc_hz_from_cpuid15(0, 188, 25_000_000), None);
    }

    #[test]
    fn pit() {
        // 10 ms worth of PIT ticks during which a 3 GHz TSC advanced 30 M ticks
        let hz = tsc_hz_from_pit(30_000_000, 11_932).unwrap();
        assert!((hz as i64 - 3_000_000_000).abs() < 200_000, "{hz}");
        assert_eq!(tsc_hz_from_pit(0, 100), None);
        let t = Tsc {
            hz: 2_000_000_000,
            calibration: Calibration::Pit { ticks: 1 },
        };
        assert_eq!(t.ticks_to_ns(3_000), 1_500);
        assert_eq!(t.ticks_to_us(4_000_000), 2_000);
    }
}
