//! SEV-SNP instructions, as thin wrappers (not executed on this development machine: it has no
//! SNP; only the SNP path of the firmware reaches them). The logic around them is in
//! `pupa_guest::snp` and tested on the host.

use core::arch::asm;

use pupa_guest::snp::ghcb::MSR_GHCB;

/// VMGEXIT (`rep vmmcall`, bytes F3 0F 01 D9; AMD APM Vol. 3 "VMGEXIT"): hands control to the
/// hypervisor, which reads the request from the GHCB MSR or the GHCB page registered in it.
pub fn vmgexit() {
    // SAFETY: VMGEXIT exits to the hypervisor; the guest's register state is saved and
    // restored by the hardware (VMSA), so no register changes. The hypervisor may write the
    // GHCB page (shared memory): hence no `nomem`, so the compiler re-reads memory afterwards.
    // Only called under SEV-ES/SNP (elsewhere VMMCALL with a REP prefix is #UD or a hypercall).
    unsafe {
        asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xd9",
            options(nostack, preserves_flags)
        )
    };
}

/// Reads the GHCB MSR (0xC001_0130).
pub fn ghcb_msr_read() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: under SEV-ES/SNP the GHCB MSR exists and reading it has no side effect (nor
    // does it raise #VC: the MSR is virtualised by the hardware).
    unsafe {
        asm!("rdmsr", in("ecx") MSR_GHCB, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Writes the GHCB MSR (0xC001_0130).
pub fn ghcb_msr_write(v: u64) {
    // SAFETY: the GHCB MSR only holds the value the next VMGEXIT hands to the hypervisor; it
    // changes no guest state and does not raise #VC.
    unsafe {
        asm!("wrmsr", in("ecx") MSR_GHCB, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    };
}

/// One GHCB MSR-protocol exchange: write `request`, VMGEXIT, read the response.
pub fn msr_protocol(request: u64) -> u64 {
    ghcb_msr_write(request);
    vmgexit();
    ghcb_msr_read()
}

/// Asks the hypervisor to terminate the VM (GHCB MSR protocol 0x100 with reason `set`/`code`,
/// GHCB spec 56421 §4.1.13); halts if it returns. Needs no GHCB page, so it works before the
/// GHCB is registered and inside the #VC handler.
pub fn terminate(set: u8, code: u8) -> ! {
    ghcb_msr_write(pupa_guest::snp::ghcb::terminate_request(set, code));
    vmgexit();
    crate::arch::cpu::halt_forever()
}

/// Reads SEV_STATUS (MSR C001_0131, AMD APM Vol. 2 §15.34.10) itself rather than trusting a
/// value handed over in a register. Under SEV-ES/SNP the read raises no #VC, i.e. the
/// hypervisor does not intercept it and cannot change the answer (Linux's early boot reads it
/// with a #VC handler that only handles CPUID, as pupa's boot stub does).
///
/// Only call where the MSR exists (under SEV; the boot stub's read of it did not #GP):
/// elsewhere RDMSR raises #GP, which the IDT reports as a fatal trap.
pub fn sev_status() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reading SEV_STATUS has no side effect; it writes EDX:EAX only.
    unsafe {
        asm!("rdmsr", in("ecx") pupa_guest::tee::MSR_SEV_STATUS, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// PVALIDATE (bytes F2 0F 01 FF; AMD APM Vol. 3 "PVALIDATE"): RAX = the page's address, ECX =
/// page size (0 = 4 KiB, 1 = 2 MiB), EDX = 1 to validate, 0 to rescind. Returns (the return
/// code in EAX, CF): CF = 1 means the RMP entry was not changed.
///
/// # Safety
/// Validating makes the page's current (encrypted) contents usable as private memory: the
/// caller must have just converted the page to private and must not rely on its contents.
/// Rescinding makes any private use of the page fault: the caller must own the page and stop
/// using it as private memory.
pub unsafe fn pvalidate(addr: u64, size_2m: bool, validate: bool) -> (u32, bool) {
    let rc: u64;
    let cf: u8;
    // SAFETY: guaranteed by the caller; PVALIDATE only changes the RMP entry of that page.
    unsafe {
        asm!(
            ".byte 0xf2, 0x0f, 0x01, 0xff",
            "setc {cf}",
            inout("rax") addr => rc,
            in("ecx") u32::from(size_2m),
            in("edx") u32::from(validate),
            cf = out(reg_byte) cf,
            options(nostack),
        )
    };
    (rc as u32, cf != 0)
}

/// CR4.
pub fn cr4() -> u64 {
    let v: u64;
    // SAFETY: reading CR4 has no side effect (and is not intercepted for SEV-ES/SNP guests).
    unsafe { asm!("mov {}, cr4", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// XCR0 (XGETBV with ECX = 0). Only call with CR4.OSXSAVE set (else #UD).
pub fn xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: the caller checked CR4.OSXSAVE; XGETBV reads XCR0 and is never intercepted.
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    u64::from(hi) << 32 | u64::from(lo)
}

/// RMPADJUST (bytes F3 0F 01 FE; AMD APM Vol. 3 "RMPADJUST"): RAX = the page's address, RCX =
/// page size (0 = 4 KiB), RDX = the attributes (target VMPL in bits 7:0, its permissions in
/// 15:8, the VMSA bit 16). Returns the return code in EAX (0 = success).
///
/// # Safety
/// The page must be private, validated and the caller's alone. With the VMSA bit set it becomes
/// a vCPU's register state: the caller must have written a complete VMSA into it first and
/// must not write the page afterwards (nor free it while a vCPU may run from it).
pub unsafe fn rmpadjust(addr: u64, size_2m: bool, attrs: u64) -> u32 {
    let rc: u64;
    // SAFETY: guaranteed by the caller; RMPADJUST only changes the RMP entry of that page for
    // a less privileged VMPL (the CPU refuses targeting the caller's own VMPL).
    unsafe {
        asm!(
            ".byte 0xf3, 0x0f, 0x01, 0xfe",
            inout("rax") addr => rc,
            in("rcx") u64::from(size_2m),
            in("rdx") attrs,
            options(nostack),
        )
    };
    rc as u32
}
