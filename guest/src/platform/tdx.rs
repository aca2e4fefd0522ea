//! Intel TDX platform glue: the #VE handler, TD setup (TDG.VP.INFO, memory acceptance), shared
//! DMA memory (MapGPA), the RTMR boot measurement and the TDREPORT/GetQuote operations behind
//! `pupa_guest::tdx::backend::TdxTee`. The decisions are made in `pupa_guest::tdx` (host
//! tested); this file only connects them to the thin TDCALL wrappers of `arch/tdcall.rs`.
//!
//! Boot order (the [`Tdx`] platform's hooks): [`init`] → [`read_td_hob`] (measured into
//! RTMR[0] before use) → [`accept_ram`] (the boot's chunk; the heap accepts the rest on demand)
//! → heap from the returned map → [`TdxDma::new`] → [`measure_boot_config`] →
//! `TdxTee::new(TdxPlatform::new(..))`.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::alloc::Layout;

use pupa_guest::banner::Hex;
use pupa_guest::memmap;
use pupa_guest::tdx::backend::TdxTee;
use pupa_guest::tee::TeeKind;
use spin::{Mutex, Once};

use pupa_guest::clock::Tsc;
use pupa_guest::memmap::Region;
use pupa_guest::tdx::accept::{self, AcceptStats, MapGpaError};
use pupa_guest::tdx::backend::{TdxOps, MAX_QUOTE_LEN};
use pupa_guest::tdx::lazy::{self, BootAcceptError, BOOT_ACCEPT};
use pupa_guest::tdx::report::TDREPORT_LEN;
use pupa_guest::tdx::rtmr::{BootConfig, EventLog, RtmrError};
use pupa_guest::tdx::tdcall::{vmcall, vmcall_result, PageSize, VmcallError, VpInfo, VpInfoError};
use pupa_guest::tdx::ve::{self, VeInfo, VmcallRequest};
use pupa_guest::trap::TrapFrame;

use super::heap;
use super::virtio_net::DmaPool;
use crate::arch::cpu::take_pending_interrupts;
use crate::arch::paging::{self, PAGE_2M};
use crate::arch::tdcall::{self, ExtendIn, ReportIn, ReportOut};

/// #VE handler (called from arch/trap.rs with interrupts off). Emulates CPUID, port I/O,
/// RDMSR/WRMSR and HLT through TDG.VP.VMCALL and returns to the next instruction; prints
/// nothing. Anything else (EPT violation, unknown exit reason, VMM failure) is fatal: the frame
/// is reported with its error code set to the VMX exit reason (u64::MAX if VEINFO was
/// unavailable) and the guest exits.
pub fn handle_ve(frame: &mut TrapFrame) {
    let (rax, rcx, rdx, r8, r9, r10) = tdcall::ve_info();
    let mut reason = u64::MAX;
    let res = VeInfo::decode(rax, rcx, rdx, r8, r9, r10).and_then(|info| {
        reason = info.exit_reason as u64;
        ve::emulate(frame, &info, |request| {
            // SAFETY: the Instruction.* sub-functions `ve::prepare` emits touch no guest memory.
            let (rax, r10, out) = unsafe { tdcall::tdvmcall(request) };
            vmcall_result(rax, r10).map(|()| out)
        })
    });
    if res.is_err() {
        frame.error_code = reason;
        crate::arch::interrupts::report_trap(20, frame)
    }
}

/// TDG.VP.INFO of this TD, read once by [`init`].
static VP_INFO: Once<VpInfo> = Once::new();

/// The RTMR event log of this boot: what the firmware measured into RTMR[0..3], in order.
/// The evidence backend takes it over (`Tdx::evidence`) and sends it with every quote.
static EVENT_LOG: Mutex<Option<EventLog>> = Mutex::new(None);

/// TDG.VP.INFO, validated and recorded (the shared bit for shared mappings, the vCPU counts
/// for the boot measurement). Call first under TDX, before any shared mapping.
pub fn init() -> Result<VpInfo, VpInfoError> {
    let (rax, rcx, rdx, r8, r9) = tdcall::vp_info();
    let info = VpInfo::decode(rax, rcx, rdx, r8, r9)?;
    Ok(*VP_INFO.call_once(|| info))
}

/// The GPA bit that marks an address shared (GPAW-1), or 0 before [`init`].
fn shared_bit() -> u64 {
    VP_INFO.get().map_or(0, VpInfo::shared_bit)
}

/// Runs `f` on this boot's event log (created on first use).
pub fn with_event_log<R>(f: impl FnOnce(&mut EventLog) -> R) -> R {
    f(EVENT_LOG.lock().get_or_insert_with(EventLog::new))
}

/// Accepts the boot's share of the TD HOB's unaccepted RAM inside `[lo, hi)`
/// ([`BOOT_ACCEPT`] bytes, `pupa_guest::tdx::lazy`) and returns the memory map with those parts
/// relabelled as RAM (feed it to `memmap::usable_ram` for the heap); the rest is left to the
/// heap, which accepts it chunk by chunk when an allocation finds no room
/// ([`heap::grow_lazily`]; `heap::pending_bytes` says how much). A HOB that marks a TDVF
/// section unaccepted fails here. Call once, after [`init`] and [`read_td_hob`], before the
/// heap takes memory beyond early RAM.
pub fn accept_ram(
    map: &[Region],
    lo: u64,
    hi: u64,
) -> Result<(Vec<Region>, AcceptStats), BootAcceptError> {
    let declared = super::layout::tdvf_sections();
    let (boot, pending) =
        lazy::accept_for_boot(map, lo, hi, &declared, BOOT_ACCEPT, &mut page_accept)?;
    heap::grow_lazily(pending, grow_heap);
    let stats = AcceptStats {
        accepted: boot.iter().map(|(s, e)| e - s).sum(),
        ..AcceptStats::default()
    };
    Ok((accept::relabel_accepted(map, &boot), stats))
}

/// TDG.MEM.PAGE.ACCEPT of one page, for `pupa_guest::tdx::accept`.
pub(super) fn page_accept(gpa: u64, size: PageSize) -> u64 {
    // SAFETY: `lazy` and the Linux hand-over (`tdx_linux.rs`, after taking the heap's pending
    // list) pass only ranges the TD HOB lists as unaccepted, outside every TDVF section (so
    // nothing of the running firmware), each once: pages nothing uses yet (one the TDX module
    // calls already accepted is left alone and stops the VM).
    unsafe { tdcall::page_accept(gpa, size) }
}

/// The heap's accept function ([`heap::AcceptFn`]): accepts a chunk of unaccepted RAM the heap
/// took off its pending list. Runs inside an allocation with no lock held; an acceptance
/// failure (a lying HOB or a VMM that re-added a page) stops the VM here, since the allocation
/// cannot be served with memory of unknown contents.
fn grow_heap(start: u64, end: u64) {
    match accept::accept_range(start, end, &mut page_accept) {
        Ok(_) => {}
        Err(e) => {
            super::serial::emergency_println(format_args!(
                "pupa: FATAL: TDX memory acceptance (heap growth): {e}"
            ));
            super::exit::fail(pupa_guest::exit_code::BOOT_FAILURE)
        }
    }
}

/// Why the shared DMA window could not be set up.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum TdxDmaError {
    /// The heap has no 2 MiB-aligned block of that size below 4 GiB.
    #[error("no 2 MiB-aligned heap block for the shared window")]
    NoMemory,
    /// MapGPA failed.
    #[error("MapGPA: {0}")]
    MapGpa(MapGpaError),
}

/// Shared memory for device rings/buffers and the GetQuote buffer: a 2 MiB-aligned window of
/// the heap converted to shared with MapGPA and mapped with the shared bit; handed out with a
/// bump allocator, never freed. Nothing private may ever be placed in it.
pub struct TdxDma {
    next: u64,
    end: u64,
}

impl TdxDma {
    /// Converts a window of `bytes` (rounded up to 2 MiB). Call after [`init`] and once the
    /// heap holds accepted RAM.
    pub fn new(bytes: usize) -> Result<Self, TdxDmaError> {
        let size = (bytes as u64).div_ceil(PAGE_2M).max(1) * PAGE_2M;
        let layout = Layout::from_size_align(size as usize, PAGE_2M as usize)
            .map_err(|_| TdxDmaError::NoMemory)?;
        // SAFETY: non-zero size; the block is never freed (it stops being private memory).
        let p = unsafe { alloc::alloc::alloc(layout) } as u64;
        if p == 0 || p + size > 1 << 32 {
            return Err(TdxDmaError::NoMemory);
        }
        let shared_bit = shared_bit();
        accept::map_gpa_shared(p, p + size, shared_bit, &mut |gpa, len| {
            let req = VmcallRequest {
                subfunction: vmcall::MAP_GPA,
                r12: gpa,
                r13: len,
                ..Default::default()
            };
            // SAFETY: MapGPA of our own allocated block, which nothing else references.
            let (rax, r10, out) = unsafe { tdcall::tdvmcall(&req) };
            (rax, r10, out.r11)
        })
        .map_err(TdxDmaError::MapGpa)?;
        // SAFETY: the window is 2 MiB aligned, converted to shared above and ours alone.
        unsafe { paging::map_shared(p, p + size, 0, shared_bit) };
        // SAFETY: the window is mapped shared now; zero what the VMM left there.
        unsafe { core::ptr::write_bytes(p as *mut u8, 0, size as usize) };
        Ok(Self {
            next: p,
            end: p + size,
        })
    }
}

impl DmaPool for TdxDma {
    fn alloc(&mut self, bytes: usize) -> Option<*mut u8> {
        let len = (bytes.max(1) as u64).div_ceil(4096) * 4096;
        let p = self.next;
        (self.end - p >= len).then(|| {
            self.next += len;
            p as *mut u8
        })
    }
}

/// Size of the GetQuote shared buffer: header + [`MAX_QUOTE_LEN`], in whole 4 KiB pages.
pub const QUOTE_BUF_LEN: usize = (24 + MAX_QUOTE_LEN).div_ceil(4096) * 4096;

/// The TDX operations behind `TdxTee`: TDG.MR.REPORT, the GetQuote buffer and TDVMCALL.
pub struct TdxPlatform {
    buf: *mut u8,
    tsc: Tsc,
}

impl TdxPlatform {
    /// Takes the GetQuote buffer from `dma` ([`QUOTE_BUF_LEN`] bytes); `None` if it is full.
    pub fn new(dma: &mut dyn DmaPool, tsc: Tsc) -> Option<Self> {
        Some(Self {
            buf: dma.alloc(QUOTE_BUF_LEN)?,
            tsc,
        })
    }
}

impl TdxOps for TdxPlatform {
    fn tdreport(&mut self, report_data: &[u8; 64]) -> Result<[u8; TDREPORT_LEN], u64> {
        let mut out = Box::new(ReportOut([0; 1024]));
        let data = Box::new(ReportIn(*report_data));
        match tdcall::mr_report(&mut out, &data) {
            0 => Ok(out.0),
            rax => Err(rax),
        }
    }
    fn shared_len(&self) -> usize {
        QUOTE_BUF_LEN
    }
    fn write_shared(&mut self, offset: usize, data: &[u8]) {
        for (i, &b) in data
            .iter()
            .enumerate()
            .take(QUOTE_BUF_LEN.saturating_sub(offset))
        {
            // SAFETY: inside the QUOTE_BUF_LEN-byte shared buffer (bounded by `take`); volatile
            // because the VMM reads it.
            unsafe { self.buf.add(offset + i).write_volatile(b) };
        }
    }
    fn read_shared(&mut self, offset: usize, out: &mut [u8]) {
        let n = out.len().min(QUOTE_BUF_LEN.saturating_sub(offset));
        for (i, o) in out.iter_mut().enumerate().take(n) {
            // SAFETY: inside the shared buffer; volatile because the VMM writes it concurrently.
            *o = unsafe { self.buf.add(offset + i).read_volatile() };
        }
    }
    fn get_quote(&mut self) -> Result<(), VmcallError> {
        let req = VmcallRequest {
            subfunction: vmcall::GET_QUOTE,
            r12: self.buf as u64 | shared_bit(),
            r13: QUOTE_BUF_LEN as u64,
            ..Default::default()
        };
        // SAFETY: the VMM may write only the shared quote buffer, which holds nothing private.
        let (rax, r10, _) = unsafe { tdcall::tdvmcall(&req) };
        vmcall_result(rax, r10)
    }
    fn now_ns(&mut self) -> u64 {
        self.tsc.ticks_to_ns(crate::arch::cpu::rdtsc())
    }
    fn relax(&mut self) {
        for _ in 0..1000 {
            core::hint::spin_loop();
        }
    }
}

/// Why the TD HOB could not be used.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum TdHobError {
    /// The HOB list is malformed or its ranges overlap.
    #[error("{0}")]
    Parse(memmap::MemMapError),
    /// Measuring it into RTMR[0] failed.
    #[error("measuring it into RTMR[0]: {0}")]
    Measure(RtmrError),
}

/// Reads the TD HOB from the TD_HOB section (over its full declared size, `layout::td_hob`),
/// measures the list into RTMR[0] and logs it in `log` before anything acts on it
/// (`EventLog::measure_td_hob`, as OVMF's `TdxHelperMeasureTdHob`), and returns its memory
/// map (sorted, disjoint). Call once, after [`init`], before [`accept_ram`].
pub fn read_td_hob(log: &mut EventLog) -> Result<Vec<Region>, TdHobError> {
    let (start, end) = super::layout::td_hob();
    // SAFETY: under TDX the VMM adds the TD_HOB section as private memory before launch and
    // nothing else uses it; it is identity-mapped.
    let section =
        unsafe { core::slice::from_raw_parts(start as *const u8, (end - start) as usize) };
    let (map, len) = memmap::parse_td_hob_list(section).map_err(TdHobError::Parse)?;
    log.measure_td_hob(&section[..len], &mut |index, digest| {
        let mut data = Box::new(ExtendIn([0; 64]));
        data.0[..48].copy_from_slice(digest);
        tdcall::rtmr_extend(&data, index)
    })
    .map_err(TdHobError::Measure)?;
    Ok(map)
}

/// Measures `cfg` into RTMR[2] and logs it in `log` (call once at boot, after [`accept_ram`],
/// before serving). The log bytes (`log.bytes()`) must reach verifiers with the evidence.
pub fn measure_boot_config(log: &mut EventLog, cfg: &BootConfig) -> Result<[u8; 48], RtmrError> {
    log.measure_boot_config(cfg, &mut rtmr_extend)
}

/// TDG.MR.RTMR.EXTEND of RTMR[`index`] with `digest`; returns RAX (for `EventLog::measure`).
pub(super) fn rtmr_extend(index: u8, digest: &[u8; 48]) -> u64 {
    let mut data = Box::new(ExtendIn([0; 64]));
    data.0[..48].copy_from_slice(digest);
    tdcall::rtmr_extend(&data, index)
}

/// Size of the TDX shared window: the GetQuote buffer and the virtio rings and buffers.
const DMA_WINDOW_BYTES: usize = 4 << 20;

/// The memory map from the TD HOB (the TDVF metadata's TD_HOB section, `arch/boot.s`).
fn td_hob_map() -> Result<Vec<Region>, String> {
    with_event_log(read_td_hob).map_err(|e| format!("{e}"))
}

/// The Intel TDX platform: port I/O, MMIO and HLT as TDG.VP.VMCALLs, RAM accepted with
/// TDG.MEM.PAGE.ACCEPT, a MapGPA'd shared window for DMA and GetQuote, evidence as a quote
/// over TDREPORT with the RTMR event log.
pub struct Tdx;

impl super::Platform for Tdx {
    fn kind(&self) -> TeeKind {
        TeeKind::Tdx
    }

    fn init(&self, _boot: &super::BootArgs) -> Result<(), super::BootError> {
        init()
            .map(|_| ())
            .map_err(|e| super::BootError::Init(format!("TDG.VP.INFO: {e}")))
    }

    fn memory_map(&self) -> Result<(Vec<Region>, &'static str), super::BootError> {
        const SOURCE: &str = "TD HOB";
        let map = td_hob_map().map_err(|why| super::BootError::MemoryMap {
            source_name: SOURCE,
            why,
        })?;
        Ok((map, SOURCE))
    }

    fn accept_ram(
        &self,
        map: &[Region],
        early: (u64, u64),
    ) -> Result<super::Ram, super::BootError> {
        let (accepted_map, stats) = accept_ram(map, 0x10_0000, 1 << 32)
            .map_err(|e| super::BootError::Accept(format!("{e}")))?;
        Ok(super::Ram {
            ranges: memmap::usable_ram(&accepted_map, 0x10_0000, 1 << 32, &[early]),
            accepted_bytes: stats.accepted,
        })
    }

    fn dma_pool(&self) -> Result<Box<dyn DmaPool>, super::BootError> {
        let dma =
            TdxDma::new(DMA_WINDOW_BYTES).map_err(|e| super::BootError::Dma(format!("{e}")))?;
        Ok(Box::new(dma))
    }

    fn evidence(
        &self,
        dma: &mut dyn DmaPool,
        facts: &super::BootFacts,
    ) -> Result<Box<dyn pupa_runtime::Tee>, super::BootError> {
        let err = |why: String| super::BootError::Evidence(why);
        let vp = *VP_INFO
            .get()
            .ok_or_else(|| err("TDG.VP.INFO not read".into()))?;
        let ops = TdxPlatform::new(dma, facts.tsc)
            .ok_or_else(|| err("no room for the quote buffer".into()))?;
        let cfg = BootConfig {
            image_sha384: facts.image_sha384,
            tee: TeeKind::Tdx,
            gpaw: vp.gpaw,
            td_attributes: vp.attributes,
            num_vcpus: vp.num_vcpus,
            max_vcpus: vp.max_vcpus,
            ram_bytes: facts.ram_bytes,
            accepted_bytes: facts.accepted_bytes,
        };
        // The log of what the boot measured so far; from here on the backend owns it.
        let mut log = with_event_log(core::mem::take);
        let rtmr =
            measure_boot_config(&mut log, &cfg).map_err(|e| err(format!("RTMR extend: {e}")))?;
        crate::println!("pupa: rtmr2 {} (boot configuration)", Hex(&rtmr));
        Ok(Box::new(TdxTee::with_event_log(ops, log)))
    }

    fn linux_handover(
        &self,
        map: &[Region],
        _ram: &super::Ram,
        payload: &pupa_guest::linux::PayloadDigests,
        acpi: Option<&mut super::linux_acpi::LinuxAcpi>,
    ) -> Result<super::Handover, super::BootError> {
        super::tdx_linux::handover(map, payload, acpi)
    }

    fn start_aps(&self, tsc: pupa_guest::clock::Tsc) -> (u32, u32) {
        let vcpus = VP_INFO.get().map_or(1, |vp| vp.num_vcpus);
        super::tdx_smp::start_aps(tsc, vcpus)
    }

    fn evidence_description(&self) -> &'static str {
        "tdx (quote via TDG.VP.VMCALL<GetQuote>, RTMR event log)"
    }

    fn interrupts(&self) -> super::Interrupts {
        // TDX has no 8259; the TDX module virtualises only the x2APIC.
        super::Interrupts {
            legacy_pic: false,
            x2apic_only: true,
        }
    }

    fn halt(&self) {
        // HLT would raise #VE: TDG.VP.VMCALL<Instruction.HLT> with "interrupts blocked" = 0
        // and IF still clear (Linux `tdx_safe_halt`); the VMM returns when an interrupt is
        // pending, which STI; NOP; CLI then takes. A refused call only means no sleep.
        let _ = tdcall::vmcall_hlt(false);
        take_pending_interrupts();
    }

    unsafe fn port_read(&self, port: u16, width: super::Width) -> u32 {
        // A refused or failed read reads as all ones, as a missing device does.
        tdcall::vmcall_io(port, width as u8, false, 0).unwrap_or(!0)
    }

    unsafe fn port_write(&self, port: u16, width: super::Width, value: u32) {
        let _ = tdcall::vmcall_io(port, width as u8, true, value);
    }

    unsafe fn mmio(&self, addr: u64, size: u8, write: bool, value: u64) -> u64 {
        tdcall::vmcall_mmio(addr | shared_bit(), size as u64, write, value)
    }
}
