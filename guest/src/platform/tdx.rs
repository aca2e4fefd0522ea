//! Intel TDX platform glue: the #VE handler, TD setup (TDG.VP.INFO, memory acceptance), shared
//! DMA memory (MapGPA), the RTMR boot measurement and the TDREPORT/GetQuote operations behind
//! `pupa_guest::tdx::backend::TdxTee`. The decisions are made in `pupa_guest::tdx` (host
//! tested); this file only connects them to the thin TDCALL wrappers of `arch/tdcall.rs`.
//!
//! Boot order (main.rs, under TDX): [`init`] → [`accept_ram`] → heap from the returned map →
//! [`TdxDma::new`] → [`measure_boot_config`] → `TdxTee::new(TdxPlatform::new(..))`.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::alloc::Layout;

use pupa_guest::clock::Tsc;
use pupa_guest::memmap::Region;
use pupa_guest::tdx::accept::{self, AcceptError, AcceptStats, MapGpaError};
use pupa_guest::tdx::backend::{TdxOps, MAX_QUOTE_LEN};
use pupa_guest::tdx::report::TDREPORT_LEN;
use pupa_guest::tdx::rtmr::{BootConfig, EventLog, RtmrError};
use pupa_guest::tdx::tdcall::{vmcall, vmcall_result, VmcallError, VpInfo, VpInfoError};
use pupa_guest::tdx::ve::{self, VeInfo, VmcallRequest};
use pupa_guest::trap::TrapFrame;

use super::virtio_net::DmaPool;
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

/// TDG.VP.INFO, validated; records the shared bit for [`paging::map_shared`]. Call first
/// under TDX, before any shared mapping.
pub fn init() -> Result<VpInfo, VpInfoError> {
    let (rax, rcx, rdx, r8, r9) = tdcall::vp_info();
    let info = VpInfo::decode(rax, rcx, rdx, r8, r9)?;
    paging::set_confidentiality_bits(0, info.shared_bit());
    Ok(info)
}

/// Accepts the TD HOB's unaccepted RAM inside `[lo, hi)` and returns the memory map with those
/// parts relabelled as RAM (feed it to `memmap::usable_ram` for the heap). Call once, after
/// [`init`], before the heap takes memory beyond early RAM.
pub fn accept_ram(
    map: &[Region],
    lo: u64,
    hi: u64,
) -> Result<(Vec<Region>, AcceptStats), AcceptError> {
    let stats = accept::accept_unaccepted(map, lo, hi, &mut |gpa, size| {
        // SAFETY: only ranges the TD HOB lists as unaccepted are passed: pending pages nothing
        // uses yet (already accepted ones are left alone by the TDX module).
        unsafe { tdcall::page_accept(gpa, size) }
    })?;
    Ok((accept::relabel_accepted(map, lo, hi), stats))
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
        let shared_bit = paging::shared_bits();
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
        unsafe { paging::map_shared(p, p + size) };
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
    pub fn new(dma: &mut TdxDma, tsc: Tsc) -> Option<Self> {
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
            r12: self.buf as u64 | paging::shared_bits(),
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

/// Measures `cfg` into RTMR[2] and logs it in `log` (call once at boot, after [`accept_ram`],
/// before serving). The log bytes (`log.bytes()`) must reach verifiers with the evidence.
pub fn measure_boot_config(log: &mut EventLog, cfg: &BootConfig) -> Result<[u8; 48], RtmrError> {
    log.measure_boot_config(cfg, &mut |index, digest| {
        let mut data = Box::new(ExtendIn([0; 64]));
        data.0[..48].copy_from_slice(digest);
        tdcall::rtmr_extend(&data, index)
    })
}
