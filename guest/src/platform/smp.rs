//! The other vCPUs: started at boot, they run the long jobs ([`JOBS`]) and the kernels' split
//! ([`POOL`], `pupa_guest::pool`) while the boot CPU keeps the network and the sessions,
//! helping the kernels in time slices when it has nothing else to do. Small jobs (at most
//! [`INLINE_MAX_UNITS`]) run on the boot CPU at once: handing them over would cost more than
//! they do. Idle APs halt until a wake-up IPI. Plain VMs start the APs with INIT-SIPI-SIPI
//! (`arch::smp`), SNP with AP creation (`snp_ap`), TDX through the ACPI wakeup mailbox
//! (`tdx_smp`); all of them with the stacks and [`ap_entry`] from here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use core::sync::atomic::{AtomicU32, Ordering};

use pupa_guest::clock::Tsc;
use pupa_guest::idle::{VECTOR_SPURIOUS, VECTOR_WAKE};
use pupa_guest::job_queue::JobQueue;
use pupa_guest::madt;
use pupa_guest::pool::{self, Pool};
use pupa_runtime::{AdmittedJob, PooledKernels};

use super::fw_cfg;
use crate::arch::apic;
use crate::arch::cpu::rdtsc;

/// Bytes of each AP's stack (the boot stack's size).
pub(super) const AP_STACK: u64 = 128 << 10;
/// The most vCPUs started.
pub const MAX_CPUS: u32 = 64;
/// How long the boot CPU waits for the APs to come online.
pub(super) const ONLINE_WAIT_US: u64 = 2_000_000;

/// Jobs of at most this many units (`JobShape::units`, about their flops) run on the boot
/// CPU at once; larger ones go to the APs. 2^22 units take about a millisecond on a server
/// core (and some hundreds of ms under QEMU's emulation).
pub const INLINE_MAX_UNITS: u64 = 1 << 22;
/// Jobs handed to the APs at once (more wait in their sessions).
pub const MAX_AP_JOBS: usize = 16;
/// The boot CPU helps the kernels in slices of this long between two network rounds.
pub const HELP_SLICE_US: u64 = 2_000;

/// The vCPUs' work pool: an AP running a job broadcasts the kernels' split, every idle vCPU
/// serves it.
pub static POOL: Pool = Pool::new(wake_others, rdtsc);

/// A job on its way through the APs, with the index of its session's connection.
struct ApJob {
    conn: usize,
    job: AdmittedJob,
}

/// The jobs handed to the APs.
static JOBS: JobQueue<ApJob, MAX_AP_JOBS> = JobQueue::new(run_ap_job, wake_others);
/// The TSC the jobs' deadlines are read on (set before the APs start).
static TSC: spin::Once<Tsc> = spin::Once::new();

fn run_ap_job(j: &mut ApJob) {
    if let Some(&tsc) = TSC.get() {
        j.job
            .execute(&mut PooledKernels(&POOL), &crate::TscClock(tsc));
    }
}

/// Whether [`submit`] has room for a job now (the boot CPU is the only submitter).
pub fn can_submit() -> bool {
    JOBS.has_free()
}

/// Hands connection `conn`'s admitted job to the APs; gives it back if there is no room.
pub fn submit(conn: usize, job: AdmittedJob) -> Option<AdmittedJob> {
    JOBS.submit(ApJob { conn, job }).err().map(|j| j.job)
}

/// A job the APs finished, with its connection index.
pub fn take_done() -> Option<(usize, AdmittedJob)> {
    JOBS.take_done().map(|(_, j)| (j.conn, j.job))
}

/// The boot CPU, with nothing else to do, helps the jobs' kernels for one slice. Returns
/// whether there was anything to help with.
pub fn help(tsc: Tsc) -> bool {
    POOL.has_work() && POOL.help(rdtsc().wrapping_add(tsc.us_to_ticks(HELP_SLICE_US)))
}

/// Wakes every other vCPU: an IPI to all but self (nothing before the APs are online).
fn wake_others() {
    if POOL.online() > 0 {
        apic::send_fixed_all_but_self(VECTOR_WAKE);
    }
}

/// The vCPUs the VMM gave the guest: fw_cfg `FW_CFG_NB_CPUS` (key 0x05, QEMU's `-smp` boot
/// CPUs), at least 1, at most [`MAX_CPUS`].
fn vcpus() -> u32 {
    match fw_cfg::item_u32(fw_cfg::key::NB_CPUS) {
        Ok(n) => (n & 0xFFFF).clamp(1, MAX_CPUS),
        Err(_) => 1,
    }
}

/// The APIC ID each AP read from its own local APIC when it came online, by index (1 first);
/// [`NO_ID`] where none did.
static ONLINE_IDS: [AtomicU32; MAX_CPUS as usize] =
    [const { AtomicU32::new(NO_ID) }; MAX_CPUS as usize];
const NO_ID: u32 = u32::MAX;

/// Where every AP enters Rust, on its own stack, `index` 1 first: its descriptor tables
/// (the shared IDT, so #VE/#VC are handled on this CPU too), its local APIC, then the pool.
pub(super) extern "C" fn ap_entry(index: u64) -> ! {
    crate::arch::interrupts::init_ap();
    let id = apic::enable_this_cpu(VECTOR_SPURIOUS);
    if let Some(slot) = ONLINE_IDS.get(index as usize) {
        slot.store(id, Ordering::Relaxed);
    }
    let platform = super::current();
    // Interrupts stay masked but inside the platform's halt, which returns after any
    // interrupt, including one that arrived before it (see `pool`).
    pool::ap_main(&POOL, &|| JOBS.run_one(), &|| platform.halt())
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
    prepare(tsc, n);
    if n == 1 {
        return (1, 1);
    }
    let started = start(n, ap_stacks(n - 1));
    let online = || POOL.online() as u32;
    spin_until(tsc, ONLINE_WAIT_US, || online() >= started);
    (n, 1 + online())
}

/// Records the vCPU count (for the banner) and the TSC the APs read the jobs' deadlines on;
/// before any AP starts, on every platform.
pub(super) fn prepare(tsc: Tsc, vcpus: u32) {
    POOL.set_expected(vcpus as usize);
    TSC.call_once(|| tsc);
}

/// `count` stacks of [`AP_STACK`] bytes, leaked for the APs alone; returns their base.
pub(super) fn ap_stacks(count: u32) -> u64 {
    let stacks = alloc::vec![0u8; (u64::from(count) * AP_STACK) as usize].leak();
    stacks.as_ptr() as u64
}

/// Spins until `done()` or until `us` microseconds have passed on the TSC.
pub(super) fn spin_until(tsc: Tsc, us: u64, done: impl Fn() -> bool) {
    let end = rdtsc().wrapping_add(tsc.us_to_ticks(us));
    while !done() && (rdtsc().wrapping_sub(end) as i64) < 0 {
        core::hint::spin_loop();
    }
}

/// The APIC IDs of the VMM's enabled vCPUs, from the ACPI MADT in fw_cfg
/// (`pupa_guest::madt`), in the table's order, or why there are none. Read once (each byte is
/// a port read, an exit under SNP and TDX): for the APs' start-up and the banner.
fn madt_apic_ids() -> &'static Result<Vec<u32>, String> {
    static IDS: spin::Once<Result<Vec<u32>, String>> = spin::Once::new();
    IDS.call_once(|| {
        match fw_cfg::stream_file("etc/acpi/tables", |read, size| {
            madt::find_table(&mut |b: &mut [u8]| read(b), size, madt::MADT_SIGNATURE)
                .and_then(|t| madt::enabled_apic_ids(&t))
        }) {
            Ok(Ok(ids)) => Ok(ids),
            Ok(Err(e)) => Err(alloc::format!("MADT: {e}")),
            Err(e) => Err(alloc::format!("ACPI tables: {e}")),
        }
    })
}

/// The APIC IDs of the other vCPUs, at most `count`: the MADT's without the boot CPU's, or
/// (with a line saying why) `madt::fallback_apic_ids`. SNP and TDX start their APs by them.
pub(super) fn other_apic_ids(count: u32) -> Vec<u32> {
    let own = apic::id();
    match madt_apic_ids() {
        Ok(ids) => ids
            .iter()
            .copied()
            .filter(|&id| id != own)
            .take(count as usize)
            .collect(),
        Err(why) => {
            crate::println!("pupa: smp: {why}; assuming QEMU's numbering");
            madt::fallback_apic_ids(own, count)
        }
    }
}

/// One banner line: the APIC IDs of the online vCPUs, as each read its own (the boot CPU
/// first), and those the MADT lists.
pub fn apic_id_line() -> String {
    let mut line = alloc::format!("pupa: apic ids online {}", apic::id());
    for id in ONLINE_IDS.iter().map(|s| s.load(Ordering::Relaxed)) {
        if id != NO_ID {
            let _ = write!(line, " {id}");
        }
    }
    match madt_apic_ids() {
        Ok(ids) => {
            line.push_str(", madt");
            for id in ids {
                let _ = write!(line, " {id}");
            }
        }
        Err(why) => {
            let _ = write!(line, ", madt none ({why})");
        }
    }
    line
}
