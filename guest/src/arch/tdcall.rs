//! TDCALL and TDG.VP.VMCALL, as thin wrappers (not executed on this development machine: it has
//! no TDX; the plain path never reaches them). All register encodings, status decoding and the
//! logic around them live in the library (`pupa_guest::tdx`), tested on the host.
//!
//! Why not the `tdx-guest` crate (0.6.0, intel/tdx-guest): it builds for a bare-metal target,
//! but it drags in `iced-x86` (an x86 decoder for its MMIO #VE emulation; several hundred KiB
//! in a measured image where every byte is hashed into MRTD), `raw-cpuid` 10, `bitflags` 1 and
//! `log`, keeps its own global state (a `SHARED_MASK` static, a serial logger), and its
//! `TdgVpInfo` decode panics on an unexpected GPAW instead of returning an error. Its wrappers
//! are a few lines each; pupa needs only eight, so they are written here, one `asm!` each, with
//! the values cross-checked against that crate and the specs (see `pupa_guest::tdx::tdcall`).
//!
//! TDCALL register ABI (TDX Module ABI spec, "TDCALL Instruction (Common)"): RAX = leaf in,
//! completion status out; inputs/outputs in RCX, RDX, R8–R11. TDG.VP.VMCALL (leaf 0, GHCI 1.5
//! §2.4.1): RCX = bitmap of GPRs exposed to the VMM (R10–R15), R10 = 0 (GHCI call) in / return
//! code out, R11 = sub-function in / first output out, R12–R15 arguments and outputs.

use core::arch::asm;

use pupa_guest::tdx::tdcall::{leaf, vmcall, PageSize};
use pupa_guest::tdx::ve::{VmcallOut, VmcallRequest};

/// TDG.VP.VMCALL with a GHCI sub-function: returns (TDCALL RAX, R10 return code, R11..R15).
///
/// # Safety
/// The sub-function must not make the VMM write guest memory the caller has not set aside for
/// it (MapGPA and GetQuote hand the VMM shared memory; the instruction ones touch none).
pub unsafe fn tdvmcall(req: &VmcallRequest) -> (u64, u64, VmcallOut) {
    let (rax, r10, r11, r12, r13, r14, r15): (u64, u64, u64, u64, u64, u64, u64);
    // SAFETY: TDCALL(TDG.VP.VMCALL) exchanges only the exposed registers R10–R15 with the VMM;
    // any memory effect is the caller's contract above. Only called under TDX (elsewhere #UD).
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc", // tdcall
            inout("rax") leaf::VP_VMCALL => rax,
            inout("rcx") vmcall::EXPOSE_R10_R15 => _,
            inout("r10") 0u64 => r10,
            inout("r11") req.subfunction => r11,
            inout("r12") req.r12 => r12,
            inout("r13") req.r13 => r13,
            inout("r14") req.r14 => r14,
            inout("r15") req.r15 => r15,
            lateout("rdx") _, lateout("r8") _, lateout("r9") _,
            options(nostack),
        );
    }
    (
        rax,
        r10,
        VmcallOut {
            r11,
            r12,
            r13,
            r14,
            r15,
        },
    )
}

/// Port I/O through the VMM (GHCI §3.9). `size` is 1, 2 or 4; `write` selects OUT.
/// Returns the value read for IN, or `None` if the VMM reported an error.
pub fn vmcall_io(port: u16, size: u8, write: bool, value: u32) -> Option<u32> {
    let req = VmcallRequest {
        subfunction: vmcall::IO,
        r12: size as u64,
        r13: if write {
            vmcall::IO_WRITE
        } else {
            vmcall::IO_READ
        },
        r14: port as u64,
        r15: value as u64,
    };
    // SAFETY: port I/O is emulated by the VMM and touches no guest memory.
    let (rax, r10, out) = unsafe { tdvmcall(&req) };
    (rax == 0 && r10 == 0).then_some(out.r11 as u32)
}

/// Device MMIO through the VMM (GHCI §3.7 #VE.RequestMMIO: R12 = size, R13 = direction (0 read,
/// 1 write), R14 = GPA with the shared bit, R15 = value). Returns the value read (all ones if
/// the VMM failed, as a missing device reads).
pub fn vmcall_mmio(gpa: u64, size: u64, write: bool, value: u64) -> u64 {
    let req = VmcallRequest {
        subfunction: vmcall::MMIO,
        r12: size,
        r13: write as u64,
        r14: gpa,
        r15: value,
    };
    // SAFETY: the VMM emulates the device access and touches no private memory.
    let (rax, r10, out) = unsafe { tdvmcall(&req) };
    if rax == 0 && r10 == 0 {
        out.r11
    } else {
        !0
    }
}

/// TDG.VP.VMCALL<Instruction.HLT> (GHCI §3.8): the VMM halts the vCPU until an interrupt is
/// pending. `interrupts_blocked` is R12, the "IRQ disabled" flag: with `false` the VMM wakes
/// the vCPU as soon as an interrupt is pending, even though the guest calls this with
/// RFLAGS.IF clear — the interrupt stays pending and is taken once the guest sets IF (as
/// Linux's `tdx_safe_halt` does, arch/x86/coco/tdx/tdx.c). Returns whether the VMM succeeded.
pub fn vmcall_hlt(interrupts_blocked: bool) -> bool {
    let req = VmcallRequest {
        subfunction: vmcall::HLT,
        r12: interrupts_blocked as u64,
        ..VmcallRequest::default()
    };
    // SAFETY: Instruction.HLT touches no guest memory.
    let (rax, r10, _) = unsafe { tdvmcall(&req) };
    rax == 0 && r10 == 0
}

/// TDG.VP.INFO: returns (RAX, RCX, RDX, R8, R9) for `VpInfo::decode`.
pub fn vp_info() -> (u64, u64, u64, u64, u64) {
    let (rax, rcx, rdx, r8, r9);
    // SAFETY: TDG.VP.INFO only reads TD configuration into registers; no memory is touched.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            inout("rax") leaf::VP_INFO => rax,
            lateout("rcx") rcx, lateout("rdx") rdx, lateout("r8") r8, lateout("r9") r9,
            lateout("r10") _, lateout("r11") _,
            options(nostack, nomem),
        );
    }
    (rax, rcx, rdx, r8, r9)
}

/// TDG.VP.VEINFO.GET: returns (RAX, RCX, RDX, R8, R9, R10) for `VeInfo::decode`. Valid once
/// per #VE (the TDX module clears VE_INFO.VALID).
pub fn ve_info() -> (u64, u64, u64, u64, u64, u64) {
    let (rax, rcx, rdx, r8, r9, r10);
    // SAFETY: TDG.VP.VEINFO.GET only returns the #VE information in registers.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            inout("rax") leaf::VP_VEINFO_GET => rax,
            lateout("rcx") rcx, lateout("rdx") rdx, lateout("r8") r8, lateout("r9") r9,
            lateout("r10") r10, lateout("r11") _,
            options(nostack, nomem),
        );
    }
    (rax, rcx, rdx, r8, r9, r10)
}

/// The 1024-byte, 1024-aligned TDREPORT_STRUCT output buffer of TDG.MR.REPORT.
#[repr(C, align(1024))]
pub struct ReportOut(pub [u8; 1024]);
/// The 64-byte, 64-aligned REPORTDATA input of TDG.MR.REPORT.
#[repr(C, align(64))]
pub struct ReportIn(pub [u8; 64]);
/// The 64-byte-aligned extend data of TDG.MR.RTMR.EXTEND (48-byte digest, then padding).
#[repr(C, align(64))]
pub struct ExtendIn(pub [u8; 64]);

/// TDG.MR.REPORT (sub-type 0): writes the TDREPORT over `data` into `out`; returns RAX.
/// Both are private memory, identity-mapped (virtual = guest-physical address).
pub fn mr_report(out: &mut ReportOut, data: &ReportIn) -> u64 {
    let rax;
    // SAFETY: the TDX module writes exactly 1024 bytes to `out` (exclusively borrowed, aligned
    // as required by the type) and reads 64 bytes of `data`; identity mapping makes the
    // addresses GPAs.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            inout("rax") leaf::MR_REPORT => rax,
            inout("rcx") out as *mut ReportOut as u64 => _,
            inout("rdx") data as *const ReportIn as u64 => _,
            inout("r8") 0u64 => _,
            lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    rax
}

/// TDG.MR.RTMR.EXTEND of RTMR[`index`] with the digest in `data[..48]`; returns RAX.
pub fn rtmr_extend(data: &ExtendIn, index: u8) -> u64 {
    let rax;
    // SAFETY: the TDX module reads 48 bytes of `data` (64-byte aligned by its type, identity
    // mapped) and changes only the RTMR.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            inout("rax") leaf::MR_RTMR_EXTEND => rax,
            inout("rcx") data as *const ExtendIn as u64 => _,
            inout("rdx") index as u64 => _,
            lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack, readonly),
        );
    }
    rax
}

/// TDG.MEM.PAGE.ACCEPT of the page at `gpa`; returns RAX.
///
/// # Safety
/// The page must not hold anything the guest still needs: accepting a pending page zeroes it
/// (an accepted page is left alone, status TDX_PAGE_ALREADY_ACCEPTED).
pub unsafe fn page_accept(gpa: u64, size: PageSize) -> u64 {
    let rax;
    // SAFETY: the TDX module initialises the pending page (caller's contract); registers only.
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc",
            inout("rax") leaf::MEM_PAGE_ACCEPT => rax,
            inout("rcx") pupa_guest::tdx::tdcall::accept_rcx(gpa, size) => _,
            lateout("rdx") _, lateout("r8") _, lateout("r9") _, lateout("r10") _, lateout("r11") _,
            options(nostack),
        );
    }
    rax
}
