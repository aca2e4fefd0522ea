//! Idle means idle: with nothing to do, the vCPU halts until an interrupt — the NIC's MSI-X
//! (a packet received, a transmission completed) or the local-APIC timer armed for the next
//! deadline — instead of spinning on its devices.
//!
//! [`init`] (once, before the NIC): silences the 8259 PICs, switches the local APIC on
//! (x2APIC when CPUID offers it: always under TDX; xAPIC MMIO otherwise), and picks the timer:
//! TSC-deadline mode when CPUID.1:ECX[24] says so, else one-shot mode calibrated against the
//! TSC. The NIC driver then asks [`msi_message`] where to send its interrupts and reports with
//! [`device_interrupts_armed`] that it did.
//!
//! [`halt_until`] (from the network loop, when an iteration did nothing): arms the timer and
//! halts with interrupts enabled for the halt only:
//! - plain VM and SEV-SNP: `STI; HLT; CLI` (race-free: an interrupt that arrived after the
//!   loop's last poll is pending in the APIC and ends the HLT at once). Under SEV-ES/SNP HLT is
//!   an automatic exit, not a #VC (AMD APM Vol. 2, SEV-ES "Types of Exits"; Linux's #VC
//!   handler has no HLT case and its SEV-ES/SNP guests idle with `sti; hlt` too; the hypervisor
//!   reads the guest's interrupt mask from the VMCB's interrupt state, not from RFLAGS);
//! - TDX: HLT would raise #VE; instead TDG.VP.VMCALL<Instruction.HLT> with "interrupts blocked"
//!   = 0 is called directly, with IF still clear (Linux `tdx_safe_halt`): the VMM returns when
//!   an interrupt is pending — including one that arrived before the call — and
//!   `STI; NOP; CLI` then takes it.
//!
//! Which of the two is the platform's choice ([`Platform::halt`]), as is whether there is an
//! 8259 pair to mask and whether the APIC must be an x2APIC ([`Platform::interrupts`]).
//!
//! The handlers only EOI (arch::interrupts): after a wake-up the loop polls as before, so the
//! work per wake-up is one loop iteration. If anything here is unavailable (no APIC, no
//! MSI-X), the guest keeps working: without an APIC [`halt_until`] returns at once (the loop
//! polls, as it always did); without device interrupts the halt is capped at
//! [`POLL_CAP_US`](pupa_guest::idle::POLL_CAP_US), so the loop polls every millisecond.

use core::sync::atomic::{AtomicBool, Ordering};

use pupa_guest::clock::Tsc;
use pupa_guest::idle::{
    self, apic_timer_hz, deadline_us_to_tsc, oneshot_count, plan_wait, IdleError, MsiMessage,
    TimerMode, Wait, POLL_CAP_US, VECTOR_PIC_BASE, VECTOR_SPURIOUS, VECTOR_TIMER,
};
use spin::Once;

use super::{Interrupts, Platform};
use crate::arch::apic::{self, Mode, Timer};
use crate::arch::cpu::{cpuid, rdtsc};
use crate::arch::pic;

/// CPUID.1:EDX[9]: local APIC present.
const CPUID_1_EDX_APIC: u32 = 1 << 9;
/// CPUID.1:ECX[21]: x2APIC.
const CPUID_1_ECX_X2APIC: u32 = 1 << 21;
/// CPUID.1:ECX[24]: TSC-deadline timer.
const CPUID_1_ECX_TSC_DEADLINE: u32 = 1 << 24;
/// Calibration window of the one-shot timer: 2 ms of TSC.
const CALIBRATION_US: u64 = 2_000;

struct Idle {
    mode: Mode,
    tsc_hz: u64,
    timer: TimerMode,
    apic_id: u32,
    platform: &'static dyn Platform,
}

static IDLE: Once<Idle> = Once::new();
/// The NIC's MSI-X is programmed and its queues raise interrupts.
static DEVICE_IRQ: AtomicBool = AtomicBool::new(false);

/// Sets up interrupts for idling (see the module doc) and prints what was chosen. `tsc` is the
/// calibrated clock the network loop reads; `platform` halts and says which interrupt
/// hardware exists. Call once, after the TEE setup and before the NIC's `init`. On failure the
/// guest polls as before.
pub fn init(tsc: Tsc, platform: &'static dyn Platform) {
    let ints = platform.interrupts();
    match setup(tsc, ints, platform) {
        Ok(i) => {
            let halt = if ints.x2apic_only {
                "TDVMCALL HLT"
            } else {
                "sti; hlt"
            };
            let (mode, id) = (i.mode.name(), i.apic_id);
            match i.timer {
                TimerMode::TscDeadline => {
                    crate::println!("pupa: idle halt ({halt}, {mode} id {id}, tsc-deadline timer)")
                }
                TimerMode::OneShot { apic_hz } => crate::println!(
                    "pupa: idle halt ({halt}, {mode} id {id}, one-shot timer at {} kHz)",
                    apic_hz / 1000
                ),
            }
        }
        Err(e) => crate::println!("pupa: idle: {e}; the guest polls instead of halting"),
    }
}

fn apic_mode_of(ints: Interrupts) -> Mode {
    if ints.x2apic_only || cpuid(1, 0).ecx & CPUID_1_ECX_X2APIC != 0 {
        Mode::X2Apic
    } else {
        Mode::XApic
    }
}

fn setup(
    tsc: Tsc,
    ints: Interrupts,
    platform: &'static dyn Platform,
) -> Result<&'static Idle, IdleError> {
    let leaf1 = cpuid(1, 0);
    if leaf1.edx & CPUID_1_EDX_APIC == 0 {
        return Err(IdleError::NoApic);
    }
    // TDX has no 8259 (the TDX module only virtualises the x2APIC); elsewhere it must be
    // masked before the first STI.
    if ints.legacy_pic {
        pic::mask_all(VECTOR_PIC_BASE);
    }
    let mode = apic_mode_of(ints);
    let apic_id = apic::enable(mode, VECTOR_SPURIOUS);
    let timer = if leaf1.ecx & CPUID_1_ECX_TSC_DEADLINE != 0 {
        apic::set_timer(Timer::TscDeadline, VECTOR_TIMER, false);
        TimerMode::TscDeadline
    } else {
        let apic_hz = calibrate(tsc.hz)?;
        apic::set_timer(Timer::OneShot, VECTOR_TIMER, false);
        TimerMode::OneShot { apic_hz }
    };
    Ok(IDLE.call_once(|| Idle {
        mode,
        tsc_hz: tsc.hz,
        timer,
        apic_id,
        platform,
    }))
}

/// Measures the one-shot timer's rate (divide by 1) against the TSC, with the timer masked.
fn calibrate(tsc_hz: u64) -> Result<u64, IdleError> {
    apic::set_timer(Timer::OneShot, VECTOR_TIMER, true);
    let window = idle::us_to_ticks(CALIBRATION_US, tsc_hz);
    apic::start_count(u32::MAX);
    let t0 = rdtsc();
    let mut t1 = t0;
    while t1.wrapping_sub(t0) < window {
        core::hint::spin_loop();
        t1 = rdtsc();
    }
    let left = apic::current_count();
    apic::start_count(0);
    let counted = u32::MAX.wrapping_sub(left) as u64;
    apic_timer_hz(counted, t1.wrapping_sub(t0), tsc_hz).ok_or(IdleError::TimerCalibration)
}

/// The message the NIC's MSI-X entry must send to wake this CPU on `vector`, or `None` if
/// [`init`] did not succeed (then the NIC stays without interrupts).
pub fn msi_message(vector: u8) -> Option<MsiMessage> {
    let i = IDLE.get()?;
    idle::msi_message(i.apic_id, vector).ok()
}

/// The NIC driver reports that its queues now interrupt on the vector [`msi_message`] gave.
pub fn device_interrupts_armed() {
    DEVICE_IRQ.store(true, Ordering::Release);
}

/// Halts until an interrupt or until the loop's clock (`Tsc::ticks_to_us(rdtsc())` of the
/// `tsc` given to [`init`]) reaches `deadline_us`; returns at once if it already has or if an
/// interrupt is already pending. `None`: no deadline (a device interrupt wakes). Interrupts
/// are enabled only for the halt itself; the caller then polls its devices.
pub fn halt_until(deadline_us: Option<u64>) {
    let Some(i) = IDLE.get() else {
        core::hint::spin_loop();
        return;
    };
    let now = rdtsc();
    let deadline = deadline_us.map(|us| deadline_us_to_tsc(us, i.tsc_hz));
    // Without device interrupts only the timer can wake the CPU: bound the halt.
    let cap =
        (!DEVICE_IRQ.load(Ordering::Acquire)).then(|| idle::us_to_ticks(POLL_CAP_US, i.tsc_hz));
    match plan_wait(now, deadline, cap) {
        Wait::Expired => return,
        Wait::Halt { timer_tsc } => arm(i, now, timer_tsc),
    }
    i.platform.halt();
}

/// Arms the timer for `at` (TSC), or leaves it unarmed for `None`. A timer armed by an earlier
/// call that has not fired yet may still fire: that only wakes the loop once more.
fn arm(i: &Idle, now: u64, at: Option<u64>) {
    let Some(at) = at else { return };
    match i.timer {
        TimerMode::TscDeadline => apic::set_tsc_deadline(at),
        TimerMode::OneShot { apic_hz } => {
            apic::start_count(oneshot_count(at.saturating_sub(now), i.tsc_hz, apic_hz))
        }
    }
}
