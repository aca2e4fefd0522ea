//! The pupa firmware: entered from the reset vector (`arch/boot.s`), it sets up the CPU tables,
//! the heap, the memory map, entropy and the clock, measures its own image and prints the boot
//! banner. Built only for `x86_64-pupa.json` with the `firmware` feature (see `pupa-image`).
#![no_std]
#![no_main]
#![feature(abi_x86_interrupt)]

extern crate alloc;

mod arch;
mod platform;

use pupa_guest::banner::{BootReport, Hex};
use pupa_guest::clock::Tsc;
use pupa_guest::entropy::{Entropy, EntropyError};
use pupa_guest::memmap::{self, RegionKind};
use pupa_guest::tee;
use pupa_guest::{exit_code, VERSION};
use pupa_runtime::{Config, PooledKernels, Serial, Worker};
use sha2::{Digest, Sha384};

use alloc::vec::Vec;
use arch::cpu::{self, cpuid, rdtsc};
use platform::virtio_net::{DmaPool, NetError, VirtioNet};
use platform::{exit, heap, layout, net, pit, serial, BootArgs, BootFacts, Platform, Ram};
use pupa_guest::memmap::Region;

/// Entry from the 64-bit boot stub. `boot_mode`: 0 = 16-bit reset vector, 1 = TDX 32-bit entry.
/// `sev_status`: SEV_STATUS[31:0] as the stub read it (0 if not probed: TDX, or no SEV).
/// `c_bit_hi`: the C-bit as a mask of the page-table entries' high dword (0 unless SNP).
///
/// One straight sequence: every TEE difference is a hook of the [`platform::Platform`] that
/// [`platform::select`] picks (see platform/mod.rs for when each hook runs).
#[no_mangle]
pub extern "C" fn rust_main(boot_mode: u32, sev_status: u32, c_bit_hi: u32) -> ! {
    // Under SEV-ES/SNP any CPUID or port I/O raises #VC: the IDT with the #VC entry comes first.
    arch::interrupts::init();
    let t0 = rdtsc();
    // SEV_STATUS is read again here rather than taken from the stub's register; 0 from the
    // stub means the MSR is absent (or TDX), where RDMSR must not run.
    let sev_status = || match sev_status {
        0 => 0,
        _ => arch::snp::sev_status(),
    };
    let platform = platform::select(tee::detect(cpuid, sev_status));
    let boot = BootArgs { c_bit_hi };
    // Before the console: SNP's port I/O needs the GHCB.
    let init = platform.init(&boot);
    serial::init();
    init.unwrap_or_else(|e| boot_failure(format_args!("{e}")));
    #[cfg(feature = "bench-hello")]
    {
        println!("hello");
        exit::power_off();
    }

    let (map, map_source, ram, heap_bytes) = claim_ram(platform);

    let entropy = Entropy::new(cpu::CpuRng::new())
        .unwrap_or_else(|e| boot_failure(format_args!("entropy: {e}")));
    let tsc = pit::calibrate().unwrap_or_else(|| {
        boot_failure(format_args!(
            "clock: neither CPUID 0x15 nor the PIT gave a TSC frequency"
        ))
    });
    let rom = layout::rom();
    let image_sha384: [u8; 48] = Sha384::digest(rom).into();
    let report = BootReport {
        version: VERSION,
        image_sha384,
        image_size: rom.len() as u64,
        tee: platform.kind(),
        entered_32bit: boot_mode == 1,
        memmap_source: map_source,
        ram_bytes: memmap::total(&map, RegionKind::Ram),
        unaccepted_bytes: memmap::total(&map, RegionKind::Unaccepted),
        heap_bytes,
        entropy: entropy.source(),
        tsc,
        boot_us: tsc.ticks_to_us(rdtsc().wrapping_sub(t0)),
    };
    println!("{report}");

    #[cfg(feature = "fault-test")]
    fault_test();

    // A Linux payload from fw_cfg (-kernel) takes over here; without one, the runtime runs.
    platform::linux_boot::boot_if_present(platform, &map, &ram, &image_sha384)
        .unwrap_or_else(|e| boot_failure(format_args!("linux: {e}")));

    // The runtime: keys, evidence, sessions, over the TEE the guest runs in.
    let mut entropy = GuestEntropy(entropy);
    let seed = entropy
        .0
        .next_u64()
        .unwrap_or_else(|e| boot_failure(format_args!("entropy: {e}")));
    let mut dma = platform
        .dma_pool()
        .unwrap_or_else(|e| boot_failure(format_args!("{e}")));
    let facts = BootFacts {
        image_sha384,
        ram_bytes: report.ram_bytes + report.unaccepted_bytes,
        accepted_bytes: ram.accepted_bytes,
        tsc,
    };
    let evidence = platform
        .evidence(&mut *dma, &facts)
        .unwrap_or_else(|e| boot_failure(format_args!("{e}")));
    // The budget counts the RAM the heap may still accept on demand (TDX), not just what it
    // holds now.
    let limits = net::Limits::for_heap(heap_bytes + heap::pending_bytes());
    let config = Config {
        memory_budget: limits.memory_budget,
        ..Config::default()
    };
    // Jobs run here on the boot CPU (the same split drivers as on the pool, on one thread),
    // or, once the APs are online, on the APs if they are long (see platform::smp).
    let kernels = PooledKernels(&Serial);
    let mut worker = Worker::with_compute(evidence, entropy, TscClock(tsc), config, kernels)
        .unwrap_or_else(|e| boot_failure(format_args!("worker: {e}")));
    println!("pupa: hpke key {} (x25519)", Hex(&worker.hpke_public_key()));
    println!(
        "pupa: receipt key {} (ed25519)",
        Hex(&worker.receipt_public_key())
    );
    println!("pupa: evidence {}", platform.evidence_description());
    // Interrupts for the idle halt (local APIC, timer), before the NIC asks for its MSI-X.
    platform::idle::init(tsc, platform);
    let (vcpus, online) = platform.start_aps(tsc);
    println!("pupa: cpus {online} of {vcpus} online");
    if vcpus > 1 {
        println!("{}", platform::smp::apic_id_line());
    }
    if online > 1 {
        worker.defer_jobs_above(platform::smp::INLINE_MAX_UNITS);
    }
    serve(&mut *dma, &mut worker, limits, tsc, seed)
}

/// Gives the heap the early heap and all the RAM the platform accepts; returns the memory map,
/// its source, the accepted RAM and the heap's size.
fn claim_ram(platform: &dyn Platform) -> (Vec<Region>, &'static str, Ram, u64) {
    let (heap_start, heap_end) = layout::early_heap();
    // SAFETY: the early heap section is reserved by the linker script for exactly this use.
    let mut heap_bytes = unsafe { heap::claim(heap_start, heap_end) };
    let (map, map_source) = platform
        .memory_map()
        .unwrap_or_else(|e| boot_failure(format_args!("{e}")));
    let ram = platform
        .accept_ram(&map, layout::early_ram())
        .unwrap_or_else(|e| boot_failure(format_args!("{e}")));
    for &(s, e) in &ram.ranges {
        // SAFETY: `accept_ram` returns disjoint RAM outside early RAM (and any shared window),
        // below 4 GiB (identity-mapped), unused, and validated/accepted where the TEE requires.
        heap_bytes += unsafe { heap::claim(s, e) };
    }
    (map, map_source, ram, heap_bytes)
}

/// Finds the NIC and serves on it forever (powers off if there is none).
fn serve<T: pupa_runtime::Tee>(
    dma: &mut dyn DmaPool,
    worker: &mut Worker<T, GuestEntropy, TscClock, PooledKernels>,
    limits: net::Limits,
    tsc: Tsc,
    seed: u64,
) -> ! {
    match VirtioNet::init(dma) {
        Ok(nic) => {
            let (v, d) = nic.pci_id();
            let m = nic.mac();
            println!(
                "pupa: nic virtio-net {v:04x}:{d:04x} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            println!(
                "pupa: listening tcp 10.0.2.15:{} (virtio-net), {} connections, {} MiB budget",
                net::PORT,
                limits.sessions,
                limits.memory_budget >> 20
            );
            println!("pupa: ready");
            net::serve(nic, worker, limits, tsc, seed)
        }
        Err(NetError::NoDevice) => {
            println!("pupa: no network device: nothing to serve");
            println!("pupa: ready");
            exit::power_off()
        }
        Err(e) => boot_failure(format_args!("network: {e}")),
    }
}

/// The runtime's entropy: the health-tested RDSEED/RDRAND source.
struct GuestEntropy(Entropy<cpu::CpuRng>);

impl pupa_runtime::Entropy for GuestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), pupa_runtime::EntropyFailure> {
        self.0.fill(buf).map_err(|e| match e {
            EntropyError::NoHardwareRng => pupa_runtime::EntropyFailure("no RDSEED/RDRAND"),
            EntropyError::RetriesExhausted(_) => {
                pupa_runtime::EntropyFailure("RDSEED/RDRAND retries exhausted")
            }
            EntropyError::HealthTestFailed(..) => {
                pupa_runtime::EntropyFailure("RDSEED/RDRAND health test failed")
            }
        })
    }
}

/// The runtime's clock: the calibrated TSC (the same on every vCPU).
#[derive(Clone, Copy)]
pub(crate) struct TscClock(pub(crate) Tsc);

impl pupa_runtime::Clock for TscClock {
    fn now_ns(&self) -> u64 {
        self.0.ticks_to_ns(rdtsc())
    }
}

fn boot_failure(why: core::fmt::Arguments) -> ! {
    serial::emergency_println(format_args!("pupa: BOOT FAILURE: {why}"));
    exit::fail(exit_code::BOOT_FAILURE)
}

/// Test-only: raise the exception named by the fw_cfg file `opt/pupa/fault` ("ud" or "pf"), so
/// that tests can check the exception report.
#[cfg(feature = "fault-test")]
fn fault_test() {
    match platform::fw_cfg::read_file("opt/pupa/fault").as_deref() {
        Ok(b"ud") => {
            println!("pupa: fault-test: raising #UD");
            arch::trap::selftest::raise_ud();
        }
        Ok(b"trap") => {
            let (a, b, c) = (0x0123_4567_89ab_cdefu64, 41u64, 0x5a5a_5a5a_0f0f_0f0fu64);
            let (rax, r12, xmm7) = arch::trap::selftest::run(a, b, c);
            let ok = rax == !a && r12 == b + 1 && xmm7 == c;
            println!(
                "pupa: fault-test: trap stub {} (rax {rax:#x} r12 {r12} xmm7 {xmm7:#x})",
                if ok { "ok" } else { "BROKEN" }
            );
        }
        Ok(b"pf") => {
            println!("pupa: fault-test: raising #PF");
            arch::trap::selftest::raise_pf();
        }
        _ => {}
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    serial::emergency_println(format_args!("pupa: PANIC {info}"));
    exit::fail(exit_code::PANIC)
}
