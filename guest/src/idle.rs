//! "Idle means idle": the arithmetic behind halting the vCPU until an interrupt.
//!
//! When the network loop has nothing to do, the firmware (`platform/idle.rs`) arms a one-shot
//! local-APIC timer for the next deadline and halts; a virtio-net MSI-X interrupt (packet
//! received, transmit completed) or the timer wakes it. This module is the host-tested part:
//! the MSI message that targets the boot CPU, the wait plan for a deadline, and the conversions
//! between TSC ticks, microseconds and APIC-timer counts.
//!
//! Sources: SDM Vol. 3A, APIC chapter, "Message Signalled Interrupts" (message address and
//! data register formats) and "APIC Timer" (one-shot and TSC-deadline modes); virtio 1.2
//! §4.1.4.3 (MSI-X vectors of the common configuration) and §4.1.5.1.2 (MSI-X vector
//! configuration).

/// Vector of the local-APIC timer.
pub const VECTOR_TIMER: u8 = 0x40;
/// Vector of the virtio-net MSI-X message (both queues share it).
pub const VECTOR_NET: u8 = 0x41;
/// Vector of the wake-up IPI between vCPUs (work for the APs, a finished job for the boot
/// CPU): its handler only acknowledges it, the woken loop looks for work.
pub const VECTOR_WAKE: u8 = 0x42;
/// The spurious-interrupt vector programmed in the APIC's SVR (its low four bits must be ones
/// on older APICs; 0xFF satisfies every generation).
pub const VECTOR_SPURIOUS: u8 = 0xFF;
/// First vector the remapped 8259 PICs use (IRQ 0..15 → 0x20..0x2F); they stay masked.
pub const VECTOR_PIC_BASE: u8 = 0x20;

/// MSI message address for fixed delivery in physical destination mode (SDM "Message Address
/// Register Format": 0xFEE in bits 31:20, destination APIC ID in bits 19:12, RH = DM = 0).
pub const MSI_ADDRESS_BASE: u64 = 0xFEE0_0000;

/// The longest the firmware halts when no device interrupt can wake it (MSI-X unavailable):
/// the loop then polls every millisecond instead of spinning.
pub const POLL_CAP_US: u64 = 1_000;

/// Why interrupts could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdleError {
    /// CPUID.1:EDX[9] is clear: no local APIC.
    #[error("no local APIC (CPUID.1:EDX.APIC = 0)")]
    NoApic,
    /// The local APIC ID does not fit an MSI's 8-bit destination (no interrupt remapping).
    #[error("APIC ID {0} does not fit an MSI destination (8 bits)")]
    ApicIdTooLarge(u32),
    /// A vector below 0x20 (exceptions) as an interrupt vector.
    #[error("interrupt vector {0:#x} is reserved for exceptions")]
    ReservedVector(u8),
    /// The one-shot timer did not count during calibration.
    #[error("the APIC timer did not count during calibration")]
    TimerCalibration,
}

/// An MSI/MSI-X message: the table entry's address and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    /// Message address (bits 63:0; the high half is 0).
    pub address: u64,
    /// Message data: the vector, fixed delivery, edge triggered.
    pub data: u32,
}

/// The MSI message that delivers `vector` to the CPU with local APIC ID `apic_id` (fixed
/// delivery mode 000b, edge trigger, physical destination).
pub fn msi_message(apic_id: u32, vector: u8) -> Result<MsiMessage, IdleError> {
    if vector < 0x20 {
        return Err(IdleError::ReservedVector(vector));
    }
    if apic_id > 0xFF {
        return Err(IdleError::ApicIdTooLarge(apic_id));
    }
    Ok(MsiMessage {
        address: MSI_ADDRESS_BASE | (apic_id as u64) << 12,
        data: vector as u32,
    })
}

/// How the local-APIC timer measures time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    /// TSC-deadline mode (CPUID.1:ECX[24]): the timer fires when the TSC reaches
    /// IA32_TSC_DEADLINE. No calibration needed.
    TscDeadline,
    /// One-shot mode, divide by 1, counting at `apic_hz` (calibrated against the TSC).
    OneShot {
        /// Timer ticks per second.
        apic_hz: u64,
    },
}

/// What to do for one idle wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The deadline has passed: return at once.
    Expired,
    /// Halt; arm the timer for this TSC value first (`None`: only a device interrupt wakes).
    Halt {
        /// The TSC value to wake at.
        timer_tsc: Option<u64>,
    },
}

/// Plans a wait from `now_tsc` until `deadline_tsc`, never longer than `cap_ticks` when that
/// is given (no device interrupt can wake the CPU, so the timer must).
pub fn plan_wait(now_tsc: u64, deadline_tsc: Option<u64>, cap_ticks: Option<u64>) -> Wait {
    let capped = match (deadline_tsc, cap_ticks) {
        (d, None) => d,
        (None, Some(c)) => Some(now_tsc.saturating_add(c)),
        (Some(d), Some(c)) => Some(d.min(now_tsc.saturating_add(c))),
    };
    match capped {
        Some(d) if d <= now_tsc => Wait::Expired,
        timer_tsc => Wait::Halt { timer_tsc },
    }
}

/// TSC ticks for `us` microseconds at `hz` (saturating).
pub fn us_to_ticks(us: u64, hz: u64) -> u64 {
    u64::try_from(us as u128 * hz as u128 / 1_000_000).unwrap_or(u64::MAX)
}

/// The TSC value at which the microsecond clock `ticks * 10^6 / hz` (the clock the network
/// loop reads) reaches `us`.
pub fn deadline_us_to_tsc(us: u64, hz: u64) -> u64 {
    // Round up: the clock reads `us` only once the TSC has reached ceil(us * hz / 10^6).
    u64::try_from((us as u128 * hz as u128).div_ceil(1_000_000)).unwrap_or(u64::MAX)
}

/// The initial count that makes a one-shot timer at `apic_hz` fire `tsc_ticks` TSC ticks from
/// now (TSC at `tsc_hz`), in 1..=u32::MAX (a count of 0 would disarm the timer; longer waits
/// are cut to the counter's range and the caller's loop simply waits again).
pub fn oneshot_count(tsc_ticks: u64, tsc_hz: u64, apic_hz: u64) -> u32 {
    let c = tsc_ticks as u128 * apic_hz as u128 / tsc_hz.max(1) as u128;
    c.clamp(1, u32::MAX as u128) as u32
}

/// The APIC timer's frequency from a calibration: it counted down `apic_ticks` while the TSC
/// (at `tsc_hz`) advanced `tsc_ticks`.
pub fn apic_timer_hz(apic_ticks: u64, tsc_ticks: u64, tsc_hz: u64) -> Option<u64> {
    if apic_ticks == 0 || tsc_ticks == 0 {
        return None;
    }
    u64::try_from(apic_ticks as u128 * tsc_hz as u128 / tsc_ticks as u128).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msi_messages() {
        assert_eq!(
            msi_message(0, VECTOR_NET),
            Ok(MsiMessage {
                address: 0xFEE0_0000,
                data: 0x41
            })
        );
        assert_eq!(msi_message(3, 0x40).unwrap().address, 0xFEE0_3000);
        assert_eq!(msi_message(255, 0x40).unwrap().address, 0xFEEF_F000);
        assert_eq!(msi_message(256, 0x40), Err(IdleError::ApicIdTooLarge(256)));
        assert_eq!(msi_message(0, 0x1F), Err(IdleError::ReservedVector(0x1F)));
    }

    #[test]
    fn waits() {
        assert_eq!(plan_wait(100, Some(100), None), Wait::Expired);
        assert_eq!(plan_wait(100, Some(99), None), Wait::Expired);
        assert_eq!(
            plan_wait(100, Some(150), None),
            Wait::Halt {
                timer_tsc: Some(150)
            }
        );
        assert_eq!(plan_wait(100, None, None), Wait::Halt { timer_tsc: None });
        // no device interrupt: the cap bounds the halt
        assert_eq!(
            plan_wait(100, None, Some(10)),
            Wait::Halt {
                timer_tsc: Some(110)
            }
        );
        assert_eq!(
            plan_wait(100, Some(150), Some(10)),
            Wait::Halt {
                timer_tsc: Some(110)
            }
        );
        assert_eq!(
            plan_wait(100, Some(105), Some(10)),
            Wait::Halt {
                timer_tsc: Some(105)
            }
        );
        assert_eq!(
            plan_wait(u64::MAX - 1, None, Some(10)),
            Wait::Halt {
                timer_tsc: Some(u64::MAX)
            }
        );
    }

    #[test]
    fn conversions() {
        // 2.5 GHz TSC
        let hz = 2_500_000_000;
        assert_eq!(us_to_ticks(1_000, hz), 2_500_000);
        assert_eq!(us_to_ticks(u64::MAX, hz), u64::MAX);
        // the deadline in TSC ticks reads back as the same microsecond on the loop's clock
        let to_us = |t: u64| (t as u128 * 1_000_000 / hz as u128) as u64;
        for us in [0u64, 1, 7, 999_999, 123_456_789] {
            let t = deadline_us_to_tsc(us, hz);
            assert_eq!(to_us(t), us);
            assert!(t == 0 || to_us(t - 1) < us);
        }
        // a 3 GHz TSC, an odd frequency: still exact at the boundary
        let hz = 2_999_999_999;
        let to_us = |t: u64| (t as u128 * 1_000_000 / hz as u128) as u64;
        for us in [1u64, 333, 1_000_001] {
            let t = deadline_us_to_tsc(us, hz);
            assert_eq!(to_us(t), us);
            assert!(to_us(t - 1) < us);
        }
    }

    #[test]
    fn oneshot_counts() {
        // 1 ms of a 2 GHz TSC on a 1 GHz APIC timer (QEMU's and KVM's default bus clock)
        assert_eq!(
            oneshot_count(2_000_000, 2_000_000_000, 1_000_000_000),
            1_000_000
        );
        // never 0 (that disarms), never beyond the 32-bit counter
        assert_eq!(oneshot_count(0, 2_000_000_000, 1_000_000_000), 1);
        assert_eq!(
            oneshot_count(u64::MAX, 2_000_000_000, 1_000_000_000),
            u32::MAX
        );
        // 25 MHz crystal clock (TDX's virtual APIC bus)
        assert_eq!(oneshot_count(2_000_000, 2_000_000_000, 25_000_000), 25_000);
    }

    #[test]
    fn calibration() {
        // 1 ms: the timer counted 1,000,000 while a 2.5 GHz TSC advanced 2,500,000
        assert_eq!(
            apic_timer_hz(1_000_000, 2_500_000, 2_500_000_000),
            Some(1_000_000_000)
        );
        assert_eq!(apic_timer_hz(0, 2_500_000, 2_500_000_000), None);
        assert_eq!(apic_timer_hz(5, 0, 2_500_000_000), None);
    }
}
