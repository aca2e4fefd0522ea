//! TDX application processors join the vCPU pool (not executed on this development machine:
//! it has no TDX). Every vCPU of a TD enters at the reset vector; vCPUs other than 0 park on
//! the ACPI Multiprocessor Wakeup mailbox (`arch/boot.s` `ap_park64`, halted in
//! TDG.VP.VMCALL<Instruction.HLT>). The boot CPU wakes them one at a time through it
//! (`pupa_guest::tdx::mailbox::wake`: ApicId, WakeupVector, Command = WAKEUP, an IPI to end
//! the halt, then a bounded wait for the acknowledgement) at `arch::tdx_ap`'s wakeup vector,
//! which enters [`super::smp::ap_entry`] on a stack of its own, as on a plain VM.
//!
//! Not with a Linux payload: the hand-over happens before the runtime starts the APs (see
//! `main.rs`), and they stay parked for Linux, which runs on one vCPU.

use pupa_guest::clock::Tsc;
use pupa_guest::idle::VECTOR_TIMER;
use pupa_guest::tdx::mailbox;

use super::smp::{self, AP_STACK, MAX_CPUS, ONLINE_WAIT_US, POOL};
use crate::arch::{apic, tdx_ap};
use crate::println;

/// How long the boot CPU waits for one AP's acknowledgement.
const ACK_WAIT_US: u64 = 100_000;

/// The IPI that ends a parked AP's halt. It stays pending on the AP (RFLAGS.IF = 0 there, and
/// the pool's AP loop never sets it); were it taken, the IDT's APIC handler would EOI it.
const WAKE_VECTOR: u8 = VECTOR_TIMER;

/// Wakes the other `num_vcpus - 1` vCPUs (TDG.VP.INFO NUM_VCPUS, at most [`MAX_CPUS`]) into
/// the pool; returns (vCPUs, vCPUs online with the boot CPU), as `smp::start_plain`. An AP
/// that does not acknowledge is reported and stays parked; the boot carries on. The local
/// APIC must be on (`idle::init`).
pub fn start_aps(tsc: Tsc, num_vcpus: u32) -> (u32, u32) {
    let n = num_vcpus.clamp(1, MAX_CPUS);
    smp::prepare(tsc, n);
    if n == 1 {
        return (1, 1);
    }
    let stacks = smp::ap_stacks(n - 1);
    // SAFETY: under TDX (the Tdx platform's hook); no AP has been woken yet; the stacks are
    // leaked for the APs alone; ap_entry never returns.
    let vector = unsafe { tdx_ap::prepare(smp::ap_entry, stacks, AP_STACK, n - 1) };
    let mailbox = tdx_ap::mailbox();
    for id in smp::other_apic_ids(n - 1) {
        let kick = |id| apic::send_fixed(id, WAKE_VECTOR);
        let wait = |acked: &dyn Fn() -> bool| smp::spin_until(tsc, ACK_WAIT_US, acked);
        if let Err(e) = mailbox::wake(mailbox, id, vector, kick, wait) {
            println!("pupa: tdx: {e}; that vCPU stays parked");
        }
    }
    let online = || POOL.online() as u32;
    smp::spin_until(tsc, ONLINE_WAIT_US, || online() == n - 1);
    (n, 1 + online())
}
