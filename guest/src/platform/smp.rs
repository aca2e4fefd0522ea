//! The other vCPUs: started at boot, they run the jobs' kernels with the boot CPU through the
//! work pool [`POOL`] (`pupa_guest::pool`), while the boot CPU keeps the network and the
//! sessions. Plain VMs start them with INIT-SIPI-SIPI (`arch::smp`), SNP with AP creation
//! (`snp_ap`); TDX does not yet.

use pupa_guest::clock::Tsc;
use pupa_guest::pool::{self, Pool};

use super::fw_cfg;
use crate::arch::cpu::rdtsc;

/// Bytes of each AP's stack (the boot stack's size).
pub const AP_STACK: u64 = 128 << 10;
/// The most vCPUs started.
pub const MAX_CPUS: u32 = 64;
/// How long the boot CPU waits for the APs to come online.
const ONLINE_WAIT_US: u64 = 2_000_000;

/// The vCPUs' work pool: the boot CPU broadcasts the kernels' split, the APs serve it.
pub static POOL: Pool = Pool::new();

/// The vCPUs the VMM gave the guest: fw_cfg `FW_CFG_NB_CPUS` (key 0x05, QEMU's `-smp` boot
/// CPUs), at least 1, at most [`MAX_CPUS`].
fn vcpus() -> u32 {
    match fw_cfg::item_u32(fw_cfg::key::NB_CPUS) {
        Ok(n) => (n & 0xFFFF).clamp(1, MAX_CPUS),
        Err(_) => 1,
    }
}

/// Every AP's Rust entry (index 1 first), on its own stack.
pub extern "C" fn ap_entry(index: u64) -> ! {
    crate::arch::interrupts::init_ap();
    pool::ap_main(&POOL, index as usize)
}

/// Starts the other vCPUs of a plain VM; returns (vCPUs the VMM reports, vCPUs online with
/// the boot CPU). The local APIC must be on (`idle::init`).
pub fn start_plain(tsc: Tsc) -> (u32, u32) {
    start_with(tsc, |n, stacks| {
        let delay = |us: u64| spin_until(tsc, us, || false);
        // SAFETY: plain VM (the caller is Plain's hook); 0x8000 is free RAM there; the stacks
        // are leaked for the APs alone; ap_entry never returns; idle::init enabled the APIC.
        unsafe { crate::arch::smp::start_aps(ap_entry, stacks, AP_STACK, &delay) };
        n - 1
    })
}

/// Starts the APs with `start(vCPUs, stacks)`, which returns how many it started (AP i's stack
/// is the [`AP_STACK`] bytes below `stacks + i * AP_STACK`), then waits for those to come
/// online; returns (vCPUs the VMM reports, vCPUs online with the boot CPU).
pub fn start_with(tsc: Tsc, start: impl FnOnce(u32, u64) -> u32) -> (u32, u32) {
    let n = vcpus();
    POOL.set_expected(n as usize);
    if n == 1 {
        return (1, 1);
    }
    let stacks = alloc::vec![0u8; ((n - 1) as u64 * AP_STACK) as usize].leak();
    let started = start(n, stacks.as_ptr() as u64);
    let online = || POOL.online() as u32;
    spin_until(tsc, ONLINE_WAIT_US, || online() >= started);
    (n, 1 + online())
}

/// Spins until `done()` or until `us` microseconds have passed on the TSC.
fn spin_until(tsc: Tsc, us: u64, done: impl Fn() -> bool) {
    let end = rdtsc().wrapping_add(tsc.us_to_ticks(us));
    while !done() && (rdtsc().wrapping_sub(end) as i64) < 0 {
        core::hint::spin_loop();
    }
}
