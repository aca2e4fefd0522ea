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
use pupa_guest::runtime::{self, Config, DevTee, Worker};
use pupa_guest::tee::{self, TeeKind};
use pupa_guest::{exit_code, VERSION};
use sha2::{Digest, Sha384};

use arch::cpu::{self, cpuid, rdtsc};
use platform::virtio_net::{NetError, PlainDma, VirtioNet};
use platform::{exit, fw_cfg, heap, layout, net, pit, serial};

/// Entry from the 64-bit boot stub. `boot_mode`: 0 = 16-bit reset vector, 1 = TDX 32-bit entry.
/// `sev_status`: SEV_STATUS[31:0] as the stub read it (0 if not probed: TDX, or no SEV).
/// `c_bit_hi`: the C-bit as a mask of the page-table entries' high dword (0 unless SNP).
#[no_mangle]
pub extern "C" fn rust_main(boot_mode: u32, sev_status: u32, c_bit_hi: u32) -> ! {
    // Under SEV-ES/SNP any CPUID or port I/O raises #VC: the IDT with the #VC entry comes first.
    arch::interrupts::init();
    let t0 = rdtsc();
    let tee = tee::detect(cpuid, || sev_status as u64);
    let _ = c_bit_hi;
    if tee == TeeKind::Tdx {
        arch::io::use_tdvmcall();
    }
    serial::init();
    #[cfg(feature = "bench-hello")]
    {
        println!("hello");
        exit::power_off();
    }

    let (heap_start, heap_end) = layout::early_heap();
    // SAFETY: the early heap section is reserved by the linker script for exactly this use.
    let mut heap_bytes = unsafe { heap::claim(heap_start, heap_end) };

    let (map, map_source) = match tee {
        TeeKind::Tdx => (read_td_hob(), "TD HOB"),
        _ => (
            fw_cfg::read_file("etc/e820")
                .map_err(|e| boot_failure(format_args!("fw_cfg etc/e820: {e}")))
                .and_then(|b| {
                    memmap::parse_e820(&b).map_err(|e| boot_failure(format_args!("etc/e820: {e}")))
                })
                .unwrap_or_else(|never| never),
            "fw_cfg etc/e820",
        ),
    };
    if tee == TeeKind::None {
        // On a plain VM all RAM is usable as is. Under SNP/TDX, memory outside the declared
        // early RAM must first be validated/accepted by the TEE backend.
        let early = layout::early_ram();
        for (s, e) in memmap::usable_ram(&map, 0x10_0000, 1 << 32, &[early]) {
            // SAFETY: E820 RAM outside early RAM, below 4 GiB (identity-mapped), unused.
            heap_bytes += unsafe { heap::claim(s, e) };
        }
    }

    let entropy = match Entropy::new(cpu::CpuRng::new()) {
        Ok(e) => e,
        Err(e) => boot_failure(format_args!("entropy: {e}")),
    };
    let tsc = match pit::calibrate() {
        Some(t) => t,
        None => boot_failure(format_args!(
            "clock: neither CPUID 0x15 nor the PIT gave a TSC frequency"
        )),
    };
    let rom = layout::rom();
    let image_sha384: [u8; 48] = Sha384::digest(rom).into();

    let report = BootReport {
        version: VERSION,
        image_sha384,
        image_size: rom.len() as u64,
        tee,
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

    // The runtime: keys, evidence, sessions. Only the dev TEE exists in this build: inside a
    // real SNP/TDX VM the guest refuses to serve rather than hand out insecure evidence.
    if tee != TeeKind::None {
        boot_failure(format_args!(
            "{} evidence is not implemented in this build; refusing to serve dev evidence inside a TEE",
            tee.name()
        ));
    }
    let clock = TscClock(tsc);
    let mut entropy = GuestEntropy(entropy);
    let seed = entropy
        .0
        .next_u64()
        .unwrap_or_else(|e| boot_failure(format_args!("entropy: {e}")));
    let mut worker = Worker::new(DevTee { image_sha384 }, entropy, clock, Config::default())
        .unwrap_or_else(|e| boot_failure(format_args!("worker: {e}")));
    println!("pupa: hpke key {} (x25519)", Hex(&worker.hpke_public_key()));
    println!(
        "pupa: receipt key {} (ed25519)",
        Hex(&worker.receipt_public_key())
    );
    println!("pupa: evidence dev (INSECURE: software report, no TEE)");
    match VirtioNet::init(&mut PlainDma) {
        Ok(nic) => {
            let (v, d) = nic.pci_id();
            let m = nic.mac();
            println!(
                "pupa: nic virtio-net {v:04x}:{d:04x} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                m[0], m[1], m[2], m[3], m[4], m[5]
            );
            println!("pupa: listening tcp 10.0.2.15:{} (virtio-net)", net::PORT);
            println!("pupa: ready");
            net::serve(nic, &mut worker, move || tsc.ticks_to_us(rdtsc()), seed)
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

impl runtime::Entropy for GuestEntropy {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), runtime::EntropyFailure> {
        self.0.fill(buf).map_err(|e| match e {
            EntropyError::NoHardwareRng => runtime::EntropyFailure("no RDSEED/RDRAND"),
            EntropyError::RetriesExhausted(_) => {
                runtime::EntropyFailure("RDSEED/RDRAND retries exhausted")
            }
            EntropyError::HealthTestFailed(..) => {
                runtime::EntropyFailure("RDSEED/RDRAND health test failed")
            }
        })
    }
}

/// The runtime's clock: the calibrated TSC.
struct TscClock(Tsc);

impl runtime::Clock for TscClock {
    fn now_ns(&self) -> u64 {
        self.0.ticks_to_ns(rdtsc())
    }
}

fn read_td_hob() -> alloc::vec::Vec<memmap::Region> {
    // The TD_HOB section of the TDVF metadata (arch/boot.s): GPA 0x8000, 8 KiB.
    const TD_HOB_GPA: usize = 0x8000;
    const TD_HOB_SIZE: usize = 0x2000;
    // SAFETY: under TDX the VMM adds the TD_HOB section as private memory before launch and
    // nothing else uses it; it is identity-mapped.
    let hob = unsafe { core::slice::from_raw_parts(TD_HOB_GPA as *const u8, TD_HOB_SIZE) };
    memmap::parse_td_hob(hob).unwrap_or_else(|e| boot_failure(format_args!("TD HOB: {e}")))
}

fn boot_failure(why: core::fmt::Arguments) -> ! {
    serial::emergency_println(format_args!("pupa: BOOT FAILURE: {why}"));
    exit::fail(exit_code::BOOT_FAILURE)
}

/// Test-only: raise the exception named by the fw_cfg file `opt/pupa/fault` ("ud" or "pf"), so
/// that tests can check the exception report.
#[cfg(feature = "fault-test")]
fn fault_test() {
    match fw_cfg::read_file("opt/pupa/fault").as_deref() {
        Ok(b"ud") => {
            println!("pupa: fault-test: raising #UD");
            // SAFETY: deliberately executes UD2; the #UD handler reports and exits.
            unsafe { core::arch::asm!("ud2") };
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
            // SAFETY: deliberately reads an unmapped address (only 0..4 GiB is mapped); the #PF
            // handler reports and exits.
            unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
        }
        _ => {}
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    serial::emergency_println(format_args!("pupa: PANIC {info}"));
    exit::fail(exit_code::PANIC)
}
