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
use platform::tdx::{TdxDma, TdxPlatform};
use platform::virtio_net::{DmaPool, NetError, PlainDma, VirtioNet};
use platform::{exit, fw_cfg, heap, layout, net, pit, serial};
use pupa_guest::snp::backend::SnpTee;
use pupa_guest::tdx::backend::TdxTee;
use pupa_guest::tdx::rtmr::{BootConfig, EventLog};

/// Entry from the 64-bit boot stub. `boot_mode`: 0 = 16-bit reset vector, 1 = TDX 32-bit entry.
/// `sev_status`: SEV_STATUS[31:0] as the stub read it (0 if not probed: TDX, or no SEV).
/// `c_bit_hi`: the C-bit as a mask of the page-table entries' high dword (0 unless SNP).
#[no_mangle]
pub extern "C" fn rust_main(boot_mode: u32, sev_status: u32, c_bit_hi: u32) -> ! {
    // Under SEV-ES/SNP any CPUID or port I/O raises #VC: the IDT with the #VC entry comes first.
    arch::interrupts::init();
    let t0 = rdtsc();
    let tee = tee::detect(cpuid, || sev_status as u64);
    match tee {
        // Port I/O (the serial console included) raises #VC under SNP: the GHCB comes first,
        // and until it exists a failure can only be reported through the GHCB MSR protocol.
        TeeKind::Snp => {
            if let Err(e) = platform::snp::init(c_bit_hi) {
                platform::snp::terminate(e.term_code())
            }
        }
        TeeKind::Tdx => arch::io::use_tdvmcall(),
        _ => {}
    }
    serial::init();
    let vp_info = (tee == TeeKind::Tdx).then(|| {
        let vp = platform::tdx::init()
            .unwrap_or_else(|e| boot_failure(format_args!("TDG.VP.INFO: {e}")));
        arch::mmio::use_tdvmcall();
        vp
    });
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
    // RAM outside the declared early RAM: usable as is on a plain VM; under SNP and TDX the
    // TEE backend validates/accepts it first.
    let early = layout::early_ram();
    let mut accepted_bytes = 0;
    let ram = match tee {
        TeeKind::None => memmap::usable_ram(&map, 0x10_0000, 1 << 32, &[early]),
        TeeKind::Snp => {
            if !platform::snp::window_is_ram(&map) {
                boot_failure(format_args!(
                    "the SNP shared window {:#x}..{:#x} is not RAM in the memory map",
                    platform::snp::SHARED_WINDOW.0,
                    platform::snp::SHARED_WINDOW.1
                ));
            }
            let r = memmap::usable_ram(
                &map,
                0x10_0000,
                1 << 32,
                &[early, platform::snp::SHARED_WINDOW],
            );
            accepted_bytes = platform::snp::accept_ram(&r)
                .unwrap_or_else(|e| boot_failure(format_args!("SNP memory validation: {e:?}")));
            r
        }
        TeeKind::Tdx => {
            let (accepted_map, stats) = platform::tdx::accept_ram(&map, 0x10_0000, 1 << 32)
                .unwrap_or_else(|e| boot_failure(format_args!("TDX memory acceptance: {e}")));
            accepted_bytes = stats.accepted;
            memmap::usable_ram(&accepted_map, 0x10_0000, 1 << 32, &[early])
        }
        TeeKind::SevWithoutSnp => boot_failure(format_args!(
            "SEV/SEV-ES without SNP is not supported (no usable attestation)"
        )),
    };
    for (s, e) in ram {
        // SAFETY: RAM outside early RAM (and the SNP shared window), below 4 GiB
        // (identity-mapped), unused, and validated/accepted where the TEE requires it.
        heap_bytes += unsafe { heap::claim(s, e) };
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

    // The runtime: keys, evidence, sessions, over the TEE the guest runs in.
    let clock = TscClock(tsc);
    let mut entropy = GuestEntropy(entropy);
    let seed = entropy
        .0
        .next_u64()
        .unwrap_or_else(|e| boot_failure(format_args!("entropy: {e}")));
    let (guest_tee, mut dma): (GuestTee, GuestDma) = match (tee, vp_info) {
        (TeeKind::Snp, _) => (
            GuestTee::Snp(
                platform::snp::tee()
                    .unwrap_or_else(|e| boot_failure(format_args!("SNP secrets page: {e}"))),
            ),
            GuestDma::Snp(platform::snp::SnpDma),
        ),
        (TeeKind::Tdx, Some(vp)) => {
            let mut dma = TdxDma::new(TDX_DMA_BYTES)
                .unwrap_or_else(|e| boot_failure(format_args!("TDX shared window: {e}")));
            let ops = TdxPlatform::new(&mut dma, tsc)
                .unwrap_or_else(|| boot_failure(format_args!("TDX quote buffer: no room")));
            let mut log = EventLog::new();
            let cfg = BootConfig {
                image_sha384,
                tee,
                gpaw: vp.gpaw,
                td_attributes: vp.attributes,
                num_vcpus: vp.num_vcpus,
                max_vcpus: vp.max_vcpus,
                ram_bytes: report.ram_bytes + report.unaccepted_bytes,
                accepted_bytes,
            };
            let rtmr = platform::tdx::measure_boot_config(&mut log, &cfg)
                .unwrap_or_else(|e| boot_failure(format_args!("RTMR extend: {e}")));
            println!("pupa: rtmr2 {} (boot configuration)", Hex(&rtmr));
            (GuestTee::Tdx(TdxTee::new(ops), log), GuestDma::Tdx(dma))
        }
        (TeeKind::None, _) => (
            GuestTee::Dev(DevTee { image_sha384 }),
            GuestDma::Plain(PlainDma),
        ),
        (kind, _) => boot_failure(format_args!("no evidence backend for {}", kind.name())),
    };
    let evidence_line = guest_tee.describe();
    let limits = net::Limits::for_heap(heap_bytes);
    let config = Config {
        memory_budget: limits.memory_budget,
        ..Config::default()
    };
    let mut worker = Worker::new(guest_tee, entropy, clock, config)
        .unwrap_or_else(|e| boot_failure(format_args!("worker: {e}")));
    println!("pupa: hpke key {} (x25519)", Hex(&worker.hpke_public_key()));
    println!(
        "pupa: receipt key {} (ed25519)",
        Hex(&worker.receipt_public_key())
    );
    println!("pupa: evidence {evidence_line}");
    // Interrupts for the idle halt (local APIC, timer), before the NIC asks for its MSI-X.
    platform::idle::init(tsc, tee == TeeKind::Tdx);
    match VirtioNet::init(dma.pool()) {
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
            net::serve(
                nic,
                &mut worker,
                limits,
                move || tsc.ticks_to_us(rdtsc()),
                seed,
            )
        }
        Err(NetError::NoDevice) => {
            println!("pupa: no network device: nothing to serve");
            println!("pupa: ready");
            exit::power_off()
        }
        Err(e) => boot_failure(format_args!("network: {e}")),
    }
}

/// Size of the TDX shared window: the GetQuote buffer and the virtio rings and buffers.
const TDX_DMA_BYTES: usize = 4 << 20;

/// The evidence backend of the TEE the guest booted in.
enum GuestTee {
    /// No TEE: the insecure development report.
    Dev(DevTee),
    /// SEV-SNP: MSG_REPORT_REQ through the GHCB.
    Snp(SnpTee<platform::snp::SnpGuestRequest>),
    /// TDX: TDREPORT → GetQuote, and the RTMR[2] log of the boot configuration.
    Tdx(TdxTee<TdxPlatform>, EventLog),
}

impl GuestTee {
    fn describe(&self) -> &'static str {
        match self {
            GuestTee::Dev(_) => "dev (INSECURE: software report, no TEE)",
            GuestTee::Snp(_) => "sev-snp (attestation report via SNP guest request, VMPCK0)",
            GuestTee::Tdx(..) => "tdx (quote via TDG.VP.VMCALL<GetQuote>, RTMR[2] event log)",
        }
    }
}

impl runtime::Tee for GuestTee {
    fn evidence(
        &mut self,
        report_data: &[u8; 64],
    ) -> Result<pupa_protocol::evidence::TeeEvidence, runtime::TeeFailure> {
        match self {
            GuestTee::Dev(t) => t.evidence(report_data),
            GuestTee::Snp(t) => t.evidence(report_data),
            GuestTee::Tdx(t, log) => {
                let mut ev = t.evidence(report_data)?;
                if let pupa_protocol::evidence::TeeEvidence::Tdx { event_log, .. } = &mut ev {
                    *event_log = Some(log.bytes().to_vec().into());
                }
                Ok(ev)
            }
        }
    }
}

/// Device-visible memory for virtio: the heap on a plain VM, a shared window under SNP/TDX.
enum GuestDma {
    Plain(PlainDma),
    Snp(platform::snp::SnpDma),
    Tdx(TdxDma),
}

impl GuestDma {
    fn pool(&mut self) -> &mut dyn DmaPool {
        match self {
            GuestDma::Plain(d) => d,
            GuestDma::Snp(d) => d,
            GuestDma::Tdx(d) => d,
        }
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
