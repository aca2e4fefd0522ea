//! SEV-SNP platform glue (not executed on this development machine: it has no SNP): the GHCB,
//! the #VC handler, RAM acceptance, the shared DMA window and the SNP guest-request transport.
//! The decisions are made by `pupa_guest::snp` (host-tested); this file moves bytes between
//! those functions, fixed guest-physical pages and the instructions in `arch::snp`.
//!
//! Memory: the pages the firmware uses under SNP are
//! - the secrets page (0xA000) and the CPUID page (0xB000), validated by the PSP at launch
//!   (SEV metadata, `arch/boot.s`);
//! - early RAM (`linker.ld`), pre-validated as SNP_SEC_MEM;
//! - the shared window [`SHARED_WINDOW`] (2 MiB aligned, right above early RAM): the GHCB page,
//!   the guest-request and response pages, then DMA bounce buffers for virtio and the APs' GHCB
//!   pages (`snp_ap`, `snp_ghcb`: one GHCB per vCPU, found by its GHCB MSR). It is never
//!   validated: it is converted to shared with page-state changes and mapped without the C-bit;
//! - all other RAM, accepted by [`accept_ram`] (page-state change to private, then PVALIDATE).
//!
//! Boot order (main.rs): `init` before the first port I/O (serial), because IN/OUT raise #VC
//! and the handler needs the GHCB; then `accept_ram` for the heap; then `tee()` for evidence
//! and `SnpDma` for virtio-net.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use pupa_guest::memmap::{self, Region};

use pupa_guest::clock::Tsc;
use pupa_guest::snp::backend::{guest_request_status, GuestRequest, GuestRequestError, SnpTee};
use pupa_guest::snp::cpuid::{CpuState, CpuidError, CpuidTable};
use pupa_guest::snp::ghcb::{self, exit, term, Field, Ghcb, MsrProtocolError, PageOp};
use pupa_guest::snp::messages::PayloadError;
use pupa_guest::snp::psc::{self, PscError};
use pupa_guest::snp::vc::{self, VcAction};
use pupa_guest::trap::TrapFrame;
use spin::Once;

use super::snp_ghcb;
use super::virtio_net::DmaPool;
use crate::arch::cpu::{halt_forever, halt_with_interrupts};
use crate::arch::io::{raw_in, raw_out};
use crate::arch::paging::{self, PAGE_2M};
use crate::arch::snp::{cr4, ghcb_msr_write, msr_protocol, pvalidate, vmgexit, xcr0};

/// The SNP secrets page (SEV metadata section type 2, `arch/boot.s`).
pub const SECRETS_GPA: u64 = 0xA000;
/// The SNP CPUID page (SEV metadata section type 3, `arch/boot.s`).
pub const CPUID_GPA: u64 = 0xB000;
/// The SEV hashes table page (SEV metadata section type 0x10 and the SEV hash table GUID
/// entry, `arch/boot.s`): QEMU's kernel-hashes table for a Linux payload.
pub const KERNEL_HASHES_GPA: u64 = 0xC000;
/// [start, end) of the shared window: the two 2 MiB pages above the 2 MiB page that holds the
/// end of early RAM (0x100000..0x500000). Requires at least 10 MiB of guest RAM (E820 is
/// checked by `check_window`, once fw_cfg can be read).
pub const SHARED_WINDOW: (u64, u64) = (0x60_0000, 0xA0_0000);
const GHCB_GPA: u64 = SHARED_WINDOW.0;
const REQ_GPA: u64 = GHCB_GPA + 0x1000;
const RSP_GPA: u64 = GHCB_GPA + 0x2000;
const DMA_START: u64 = GHCB_GPA + 0x3000;
const PAGE: u64 = 0x1000;

const CR4_OSXSAVE: u64 = 1 << 18;
const CR4_PKE: u64 = 1 << 22;

static CPUID: Once<CpuidTable> = Once::new();
/// The boot CPU's GHCB is registered and the window shared.
static READY: AtomicBool = AtomicBool::new(false);
/// The hypervisor's SNP feature bitmap (MSR protocol 0x080), recorded by [`init`].
static HV_FEATURES: AtomicU64 = AtomicU64::new(0);
static DMA_NEXT: AtomicU64 = AtomicU64::new(DMA_START);

/// Why SNP setup failed. Before [`init`] has succeeded nothing can be printed (the serial port
/// needs the GHCB): report with [`terminate`] and [`SnpInitError::term_code`].
#[derive(Debug, thiserror::Error)]
pub enum SnpInitError {
    /// The C-bit mask from the boot stub is not a single bit, or differs from the CPUID page.
    #[error("C-bit mask {mask:#x} does not match the CPUID page (bit {page})")]
    CBit {
        /// Mask of the PTE high dword.
        mask: u32,
        /// Bit position from the CPUID page.
        page: u8,
    },
    /// The CPUID page is unusable.
    #[error("CPUID page: {0}")]
    Cpuid(#[from] CpuidError),
    /// The GHCB MSR protocol failed.
    #[error("GHCB MSR protocol: {0}")]
    Msr(#[from] MsrProtocolError),
    /// A page-state change or PVALIDATE failed.
    #[error("page state: {0}")]
    Psc(#[from] PscError),
    /// The GHCB was in use.
    #[error("GHCB busy")]
    Busy,
    /// `init` has not run.
    #[error("GHCB not set up")]
    NotReady,
}

impl SnpInitError {
    /// The termination reason (set [`term::SET_PUPA`]) for this error.
    pub fn term_code(&self) -> u8 {
        match self {
            SnpInitError::Psc(_) => term::PAGE_STATE,
            _ => term::GHCB_REGISTER,
        }
    }
}

/// Asks the hypervisor to terminate the VM (GHCB MSR protocol 0x100, reason set 1 = pupa's
/// codes in `ghcb::term`); halts if it returns. Safe anywhere, the #VC handler included.
pub fn terminate(code: u8) -> ! {
    ghcb_msr_write(ghcb::terminate_request(term::SET_PUPA, code));
    vmgexit();
    halt_forever()
}

/// The CPUID page, parsed on first use (the first CPUID of the boot reaches here through #VC,
/// before [`init`]).
fn cpuid_table() -> &'static CpuidTable {
    CPUID.call_once(|| {
        // SAFETY: the CPUID page is validated by the PSP at launch, identity-mapped private
        // memory that nothing writes.
        let page = unsafe { core::slice::from_raw_parts(CPUID_GPA as *const u8, 4096) };
        CpuidTable::parse(page).unwrap_or_else(|_| terminate(term::VC_UNHANDLED))
    })
}

fn page_at(gpa: u64) -> &'static mut [u8; 4096] {
    // SAFETY: `gpa` is a GHCB page (the boot CPU's or an AP's, `snp_ghcb`) or the request or
    // response page of the shared window, mapped shared after `init`; access is serialised by
    // the GHCB slot's busy flag. The hypervisor may write the page at any time: Ghcb accesses
    // it volatile and everything read from it is validated.
    unsafe { &mut *(gpa as *mut [u8; 4096]) }
}

/// VMGEXIT with the GHCB at `gpa` registered: the GHCB MSR must hold its GPA (GHCB spec
/// §2.3.2), also after an MSR-protocol exchange changed it.
pub(super) fn ghcb_exit(gpa: u64) -> impl FnMut(&mut Ghcb<'_>) {
    move |_| {
        ghcb_msr_write(gpa);
        vmgexit();
    }
}

/// Runs `f` with this vCPU's GHCB and its GPA, outside the #VC handler.
pub(super) fn with_ghcb<R>(f: impl FnOnce(&mut Ghcb<'_>, u64) -> R) -> Result<R, SnpInitError> {
    let slot = snp_ghcb::current().ok_or(SnpInitError::NotReady)?;
    let ghcb = slot.try_lock().ok_or(SnpInitError::Busy)?;
    let gpa = ghcb.gpa();
    Ok(f(&mut Ghcb::new(page_at(gpa)), gpa))
}

/// The hypervisor's SNP features (GHCB spec §2.3.1), 0 before [`init`].
pub fn hv_features() -> u64 {
    HV_FEATURES.load(Ordering::Acquire)
}

/// Sets up the GHCB. Call right after `arch::interrupts::init` under SNP, before any port I/O.
/// `c_bit_hi` is the boot stub's C-bit mask of the page-table entries' high dword.
///
/// Checks SEV_STATUS (read from the MSR), the C-bit against the CPUID page, the hypervisor's
/// GHCB protocol range (version 2) and its SNP feature bit,
/// converts the GHCB page to shared (MSR protocol; the page was never validated, so no
/// PVALIDATE), maps the window shared, registers the GHCB (MSR protocol 0x012), and converts
/// the rest of the window with a GHCB page-state change.
pub fn init(c_bit_hi: u32) -> Result<(), SnpInitError> {
    // SEV_STATUS read here from the MSR, not taken from the boot stub: SEV, SEV-ES and SNP on,
    // and no feature pupa does not implement (vTOM, restricted injection, ...): otherwise
    // reason set 0 code 2 ("SEV-SNP features not supported"), as Linux `snp_check_features`.
    if pupa_guest::tee::check_snp_status(crate::arch::snp::sev_status()).is_err() {
        crate::arch::snp::terminate(term::SET_GENERAL, term::SNP_UNSUPPORTED);
    }
    let page_bit = cpuid_table().c_bit()?;
    if c_bit_hi.count_ones() != 1 || 32 + c_bit_hi.trailing_zeros() != u32::from(page_bit) {
        return Err(SnpInitError::CBit {
            mask: c_bit_hi,
            page: page_bit,
        });
    }
    ghcb::sev_info_response(msr_protocol(ghcb::sev_info_request()))?;
    // The hypervisor must implement the SNP part of GHCB protocol version 2 (feature bit 0 of
    // the hypervisor feature response, GHCB spec §2.3.1), else set 0 code 2, as Linux
    // `sev_enable` after `get_hv_features`.
    match ghcb::hv_features_response(msr_protocol(ghcb::hv_features_request())) {
        Ok(features) => HV_FEATURES.store(features, Ordering::Release),
        Err(_) => crate::arch::snp::terminate(term::SET_GENERAL, term::SNP_UNSUPPORTED),
    }
    ghcb::psc_response(msr_protocol(ghcb::psc_request(GHCB_GPA, PageOp::Shared)?))?;
    // SAFETY: the GHCB page was just converted to shared; the rest of the window is not
    // touched until the page-state change below has converted it too. Nothing else lives in
    // these 2 MiB pages (early RAM ends below them).
    unsafe { paging::map_shared(SHARED_WINDOW.0, SHARED_WINDOW.1, 1 << page_bit, 0) };
    const _: () =
        assert!(SHARED_WINDOW.0.is_multiple_of(PAGE_2M) && SHARED_WINDOW.1.is_multiple_of(PAGE_2M));
    page_at(GHCB_GPA).fill(0);
    ghcb::register_ghcb_response(
        msr_protocol(ghcb::register_ghcb_request(GHCB_GPA)?),
        GHCB_GPA,
    )?;
    snp_ghcb::set(0, GHCB_GPA);
    READY.store(true, Ordering::Release);
    with_ghcb(|g, gpa| {
        psc::change_state(
            g,
            gpa + ghcb::offset::SHARED_BUFFER as u64,
            GHCB_GPA + PAGE,
            SHARED_WINDOW.1,
            PageOp::Shared,
            &mut ghcb_exit(gpa),
        )
    })??;
    page_at(REQ_GPA).fill(0);
    page_at(RSP_GPA).fill(0);
    Ok(())
}

/// One device MMIO access through the GHCB (MMIO_READ/MMIO_WRITE exits), for `arch::mmio` once
/// [`init`] has routed MMIO here. Returns the value read (0 for writes); a failed access reads
/// as all ones, as a missing device does. Called by drivers, never inside the #VC handler.
pub fn mmio(addr: u64, size: u64, write: bool, value: u64) -> u64 {
    let size = size as usize;
    with_ghcb(|g, gpa| {
        let sb = gpa + ghcb::offset::SHARED_BUFFER as u64;
        ghcb::mmio_request(g, sb, addr, size, write.then_some(value));
        ghcb_exit(gpa)(g);
        if write {
            g.exit_result().map(|_| 0)
        } else {
            ghcb::mmio_read_result(g, size)
        }
    })
    .ok()
    .and_then(|r| r.ok())
    .unwrap_or(!0)
}

/// Accepts RAM for the heap: page-state change to private, then PVALIDATE, for each range
/// (4 KiB aligned, outside early RAM and [`SHARED_WINDOW`], below 4 GiB). Returns the bytes
/// accepted. Call after [`init`], at boot.
pub fn accept_ram(ranges: &[(u64, u64)]) -> Result<u64, SnpInitError> {
    let mut total = 0;
    for &(s, e) in ranges {
        let (s, e) = ((s + PAGE - 1) & !(PAGE - 1), e & !(PAGE - 1));
        if s >= e {
            continue;
        }
        with_ghcb(|g, gpa| {
            let sb = gpa + ghcb::offset::SHARED_BUFFER as u64;
            psc::change_state(g, sb, s, e, PageOp::Private, &mut ghcb_exit(gpa))
        })??;
        psc::pvalidate_range(s, e, true, &mut |a, big, v| {
            // SAFETY: the page was just made private and holds nothing of ours yet.
            unsafe { pvalidate(a, big, v) }
        })?;
        total += e - s;
    }
    Ok(total)
}

/// The CR4/XCR0 state CPUID results reflect (read only for CPUID exits).
fn cpu_state() -> CpuState {
    let c4 = cr4();
    let osxsave = c4 & CR4_OSXSAVE != 0;
    CpuState {
        osxsave,
        pke: c4 & CR4_PKE != 0,
        xcr0: if osxsave { xcr0() } else { 1 },
        // pupa never enables XSAVES supervisor state (IA32_XSS = 0); reading the MSR here would
        // itself be intercepted.
        xss: 0,
    }
}

/// #VC handler (called from arch/trap.rs with interrupts off). CPUID is answered from the CPUID
/// page; IN/OUT and RDMSR/WRMSR go to the hypervisor through the GHCB. Anything it cannot
/// handle terminates the VM (GHCB MSR protocol): it never prints, since printing is port I/O.
pub fn handle_vc(frame: &mut TrapFrame) {
    let mut insn = [0u8; 15];
    for (i, b) in insn.iter_mut().enumerate() {
        // SAFETY: RIP points into the firmware's code (identity-mapped private memory well
        // below 4 GiB), so the 15 bytes after it are mapped.
        *b = unsafe { core::ptr::read_volatile((frame.rip as *const u8).wrapping_add(i)) };
    }
    match vc::prepare(frame, &insn, cpuid_table(), cpu_state) {
        Ok(VcAction::Done) => {}
        Ok(VcAction::Exit(req)) => {
            // This vCPU's GHCB (snp_ghcb): none registered yet, or in use by the exchange this
            // #VC interrupted, terminates.
            let Some(ghcb) = snp_ghcb::current().and_then(|s| s.try_lock()) else {
                terminate(term::VC_UNHANDLED)
            };
            let mut g = Ghcb::new(page_at(ghcb.gpa()));
            req.write_to(&mut g);
            ghcb_exit(ghcb.gpa())(&mut g);
            let r = vc::complete(frame, &g, &req);
            drop(ghcb);
            if r.is_err() {
                terminate(term::VC_HYPERVISOR);
            }
        }
        Err(_) => terminate(term::VC_UNHANDLED),
    }
}

/// DMA memory for virtio under SNP: a bump allocator over the shared window (after the GHCB and
/// guest-request pages). Memory is never freed (the device may hold it forever).
pub struct SnpDma;

impl DmaPool for SnpDma {
    fn alloc(&mut self, bytes: usize) -> Option<*mut u8> {
        if !READY.load(Ordering::Acquire) {
            return None;
        }
        let len = (bytes.max(1) as u64).checked_add(PAGE - 1)? & !(PAGE - 1);
        let start = DMA_NEXT
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(len).filter(|&end| end <= SHARED_WINDOW.1)
            })
            .ok()?;
        // SAFETY: [start, start + len) is inside the shared window, mapped and converted to
        // shared by `init`, and handed out once.
        unsafe { core::ptr::write_bytes(start as *mut u8, 0, len as usize) };
        Some(start as *mut u8)
    }
}

/// The SNP_GUEST_REQUEST exit (GHCB spec §4.1.7): the request and response pages of the
/// shared window, SW_EXITINFO1/2 = their GPAs. The TSC times the busy back-off.
pub struct SnpGuestRequest {
    tsc: Tsc,
}

impl GuestRequest for SnpGuestRequest {
    fn exchange(
        &mut self,
        req: &[u8; 4096],
        rsp: &mut [u8; 4096],
    ) -> Result<(), GuestRequestError> {
        // The request and response pages are the boot CPU's: only it sends guest requests.
        with_ghcb(|g, gpa| {
            page_at(REQ_GPA).copy_from_slice(req);
            g.reset();
            g.set(Field::SwExitCode, exit::SNP_GUEST_REQUEST);
            g.set(Field::SwExitInfo1, REQ_GPA);
            g.set(Field::SwExitInfo2, RSP_GPA);
            ghcb_exit(gpa)(g);
            g.exit_result()?;
            guest_request_status(g.exit_info2_raw())?;
            // One copy into private memory; the messenger authenticates what was copied.
            rsp.copy_from_slice(page_at(RSP_GPA));
            Ok(())
        })
        .map_err(|_| GuestRequestError::Unavailable)?
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

/// The SNP evidence backend: VMPCK0 from the secrets page, guest requests through the GHCB.
/// Call after [`init`]; `tsc` times the back-off when the hypervisor reports busy.
pub fn tee(tsc: Tsc) -> Result<SnpTee<SnpGuestRequest>, PayloadError> {
    // SAFETY: the secrets page is validated by the PSP at launch, identity-mapped private
    // memory; it is only read.
    let secrets = unsafe { core::slice::from_raw_parts(SECRETS_GPA as *const u8, 4096) };
    SnpTee::from_secrets_page(secrets, SnpGuestRequest { tsc })
}

/// Checks that the shared window is RAM in the memory map (call once the E820 map is read).
pub fn window_is_ram(map: &[pupa_guest::memmap::Region]) -> bool {
    pupa_guest::memmap::usable_ram(map, SHARED_WINDOW.0, SHARED_WINDOW.1, &[])
        .iter()
        .map(|&(s, e)| e - s)
        .sum::<u64>()
        == SHARED_WINDOW.1 - SHARED_WINDOW.0
}

/// The SEV-SNP platform: the GHCB for port I/O (#VC), MMIO and guest requests; RAM validated
/// with page-state changes and PVALIDATE; a fixed shared window for DMA; evidence from
/// MSG_REPORT_REQ under VMPCK0.
pub struct Snp;

impl super::Platform for Snp {
    fn kind(&self) -> pupa_guest::tee::TeeKind {
        pupa_guest::tee::TeeKind::Snp
    }

    fn init(&self, boot: &super::BootArgs) -> Result<(), super::BootError> {
        // Nothing can be printed before the GHCB works: a failure terminates the VM.
        init(boot.c_bit_hi).unwrap_or_else(|e| terminate(e.term_code()));
        Ok(())
    }

    fn memory_map(&self) -> Result<(Vec<Region>, &'static str), super::BootError> {
        super::plain::e820_map()
    }

    fn accept_ram(
        &self,
        map: &[Region],
        early: (u64, u64),
    ) -> Result<super::Ram, super::BootError> {
        if !window_is_ram(map) {
            return Err(super::BootError::Accept(format!(
                "the SNP shared window {:#x}..{:#x} is not RAM in the memory map",
                SHARED_WINDOW.0, SHARED_WINDOW.1
            )));
        }
        let ranges = memmap::usable_ram(map, 0x10_0000, 1 << 32, &[early, SHARED_WINDOW]);
        let accepted_bytes =
            accept_ram(&ranges).map_err(|e| super::BootError::Accept(format!("{e}")))?;
        Ok(super::Ram {
            ranges,
            accepted_bytes,
        })
    }

    fn dma_pool(&self) -> Result<Box<dyn DmaPool>, super::BootError> {
        Ok(Box::new(SnpDma))
    }

    fn evidence(
        &self,
        _dma: &mut dyn DmaPool,
        facts: &super::BootFacts,
    ) -> Result<Box<dyn pupa_runtime::Tee>, super::BootError> {
        let tee = tee(facts.tsc)
            .map_err(|e| super::BootError::Evidence(format!("SNP secrets page: {e}")))?;
        Ok(Box::new(tee))
    }

    fn linux_handover(
        &self,
        map: &[Region],
        ram: &super::Ram,
        payload: &pupa_guest::linux::PayloadDigests,
        _acpi: Option<&mut super::linux_acpi::LinuxAcpi>,
    ) -> Result<super::Handover, super::BootError> {
        super::snp_linux::handover(map, ram, payload)
    }

    fn start_aps(&self, tsc: pupa_guest::clock::Tsc) -> (u32, u32) {
        super::snp_ap::start(tsc)
    }

    fn evidence_description(&self) -> &'static str {
        "sev-snp (attestation report via SNP guest request, VMPCK0)"
    }

    fn interrupts(&self) -> super::Interrupts {
        super::Interrupts {
            legacy_pic: true,
            x2apic_only: false,
        }
    }

    fn halt(&self) {
        // HLT is an automatic exit under SEV-ES/SNP, not a #VC (see platform/idle.rs).
        halt_with_interrupts()
    }

    unsafe fn port_read(&self, port: u16, width: super::Width) -> u32 {
        // SAFETY: forwarded from the caller; the #VC handler emulates IN through the GHCB.
        unsafe { raw_in(port, width) }
    }

    unsafe fn port_write(&self, port: u16, width: super::Width, value: u32) {
        // SAFETY: forwarded from the caller; the #VC handler emulates OUT through the GHCB.
        unsafe { raw_out(port, width, value) }
    }

    unsafe fn mmio(&self, addr: u64, size: u8, write: bool, value: u64) -> u64 {
        mmio(addr, size as u64, write, value)
    }
}
