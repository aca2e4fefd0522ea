//! TSC calibration against the 8254 PIT, channel 2 (the classic PC method: gate channel 2
//! through port 0x61, count down in mode 0, watch OUT2 in port 0x61 bit 5).

use crate::arch::cpu::{cpuid, rdtsc};
use crate::arch::io::{inb, outb};
use pupa_guest::clock::{tsc_hz_from_cpuid15, tsc_hz_from_pit, Calibration, Tsc, PIT_HZ};

/// ~5 ms of PIT ticks: accurate to ~0.02 % and cheap at boot.
const CALIBRATION_TICKS: u32 = (PIT_HZ / 200) as u32;
/// Give up if OUT2 never rises (no PIT, e.g. in a TD).
const MAX_POLLS: u32 = 20_000_000;

/// Determine the TSC frequency: CPUID 0x15 when it is enumerated, else the PIT.
pub fn calibrate() -> Option<Tsc> {
    if cpuid(0, 0).eax >= 0x15 {
        let r = cpuid(0x15, 0);
        if let Some(hz) = tsc_hz_from_cpuid15(r.eax, r.ebx, r.ecx) {
            return Some(Tsc {
                hz,
                calibration: Calibration::Cpuid15,
            });
        }
    }
    // SAFETY: ports 0x61 (NMI status/control: gate and speaker bits), 0x43/0x42 (PIT mode and
    // channel 2 counter); channel 2 drives only the speaker, which stays disabled.
    let delta = unsafe {
        let ctl = inb(0x61);
        outb(0x61, (ctl & !0x02) | 0x01); // speaker off, gate on
        outb(0x43, 0xB0); // channel 2, lobyte/hibyte, mode 0, binary
        outb(0x42, (CALIBRATION_TICKS & 0xff) as u8);
        outb(0x42, (CALIBRATION_TICKS >> 8) as u8);
        let t0 = rdtsc();
        let mut polls = 0;
        while inb(0x61) & 0x20 == 0 {
            polls += 1;
            if polls == MAX_POLLS {
                return None;
            }
        }
        let t1 = rdtsc();
        outb(0x61, ctl);
        t1.wrapping_sub(t0)
    };
    let hz = tsc_hz_from_pit(delta, CALIBRATION_TICKS)?;
    Some(Tsc {
        hz,
        calibration: Calibration::Pit {
            ticks: CALIBRATION_TICKS,
        },
    })
}
