//! SEV-SNP application-processor creation, the way Linux does it (`arch/x86/coco/sev/core.c`:
//! `wakeup_cpu_via_vmgexit`, `snp_alloc_vmsa_page`, `snp_set_vmsa`): for each AP the boot CPU
//! builds a VMSA in a private page of its own (long mode on the boot CPU's page tables and
//! descriptor tables, RIP = the firmware's AP entry, RSP = the AP's stack), turns the page into
//! a VMSA with RMPADJUST (VMPL0 may do so only by targeting VMPL1: AMD APM Vol. 3 "RMPADJUST"),
//! and asks the hypervisor to run it with the SNP AP Creation NAE event (GHCB spec 56421
//! §4.1.9 "SNP AP Creation", SW_EXITCODE 0x8000_0013).
//!
//! Why this and not the SEV-ES AP reset block (`arch/boot.s`, `sev_es_ap_entry`): the vCPUs'
//! VMSAs measured at launch all start in real mode at that reset address, and the hypervisor
//! decides when (an INIT-SIPI it delivers; KVM lets the first SIPI run the launch VMSA and
//! needs the guest's AP-reset-hold protocol for every later one). Such an AP would have to
//! climb from 16-bit mode to long mode without a GHCB of its own. With AP creation the guest
//! writes the whole register state itself into encrypted, guest-owned memory the hypervisor
//! cannot alter (the VMSA bit in the RMP), so the AP begins in 64-bit Rust with its stack.
//! KVM (`arch/x86/kvm/svm/sev.c`, `sev_snp_ap_creation`) advertises the event through
//! GHCB_HV_FT_SNP_AP_CREATION in the hypervisor features (checked here first), refuses a
//! request whose RAX differs from the SEV features the VM was launched with, whose VMSA GPA is
//! not a valid page or is 2 MiB aligned, and then points the target vCPU at the new VMSA: the
//! vCPU's launch-measured VMSA is never run again (it stays in the launch digest, which AP
//! creation at run time therefore does not change).
//!
//! The instructions (RMPADJUST, VMGEXIT) are the firmware's (`arch/snp.rs`); this module holds
//! the decisions and is tested against a mock hypervisor and RMP (`ap_tests.rs`).

use alloc::vec::Vec;

use pupa_spec::snp::{VmcbSegment, Vmsa};
use zerocopy::FromZeros;

use super::ghcb::{hv_features, Field, Ghcb, GhcbError};

/// SW_EXITCODE of the SNP AP Creation NAE event (GHCB spec §4.1.9; Linux
/// `SVM_VMGEXIT_AP_CREATION`).
pub const SVM_VMGEXIT_AP_CREATION: u64 = 0x8000_0013;
/// SW_EXITINFO1[31:0]: create the AP when it next receives INIT.
pub const SVM_VMGEXIT_AP_CREATE_ON_INIT: u64 = 0;
/// SW_EXITINFO1[31:0]: create (and run) the AP now.
pub const SVM_VMGEXIT_AP_CREATE: u64 = 1;
/// SW_EXITINFO1[31:0]: destroy the AP's VMSA.
pub const SVM_VMGEXIT_AP_DESTROY: u64 = 2;
/// SW_EXITINFO1: the APIC ID of the target vCPU is in bits 63:32.
pub const AP_CREATION_APIC_ID_SHIFT: u32 = 32;
/// SW_EXITINFO1: the VMPL of the new VMSA is in bits 19:16 (Linux `snp_vmpl << 16`).
pub const AP_CREATION_VMPL_SHIFT: u32 = 16;

/// RMPADJUST attributes (APM Vol. 3 "RMPADJUST", RDX): bits 7:0 the target VMPL, bits 15:8
/// its permission mask, bit 16 the VMSA bit (Linux `RMPADJUST_VMSA_PAGE_BIT`).
pub const RMPADJUST_VMSA_PAGE_BIT: u64 = 1 << 16;
/// The VMPL RMPADJUST targets: VMPL0 can only adjust a less privileged VMPL, so VMPL1 with no
/// permissions (Linux `snp_set_vmsa`: `attrs = 1`).
pub const RMPADJUST_TARGET_VMPL1: u64 = 1;
/// RMPADJUST's RCX: the page size, 0 = 4 KiB (Linux `RMP_PG_SIZE_4K`).
pub const RMP_PG_SIZE_4K: bool = false;

/// The VMPL pupa runs at and gives its APs (no SVSM: docs/DESIGN.md §13).
pub const VMPL0: u8 = 0;
/// 2 MiB: a VMSA page must not be 2 MiB aligned (SNP erratum: the CPU may report an RMP
/// violation when a 2 MiB mapping covers a VMSA page; Linux `snp_alloc_vmsa_page`, and KVM
/// refuses such a VMSA).
pub const PMD_SIZE: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// EFER.LME, EFER.LMA, EFER.SVME (APM Vol. 2 §3.1.7; SVME must be set in an SEV-ES VMSA).
pub const EFER_LME: u64 = 1 << 8;
/// EFER.LMA.
pub const EFER_LMA: u64 = 1 << 10;
/// EFER.SVME.
pub const EFER_SVME: u64 = 1 << 12;
/// The reset values Linux puts in an AP's VMSA (`AP_INIT_*` in `arch/x86/coco/sev/core.c`).
pub const AP_INIT_DR7: u64 = 0x400;
/// DR6 at reset.
pub const AP_INIT_DR6: u64 = 0xFFFF_0FF0;
/// RFLAGS at reset (bit 1 is always set; IF clear).
pub const AP_INIT_RFLAGS: u64 = 0x2;
/// The PAT at reset.
pub const AP_INIT_GPAT: u64 = 0x0007_0406_0007_0406;
/// MXCSR at reset.
pub const AP_INIT_MXCSR: u32 = 0x1F80;
/// x87 FCW at reset.
pub const AP_INIT_X87_FCW: u16 = 0x37F;
/// x87 FTW at reset (all registers empty, the VMSA's full tag word).
pub const AP_INIT_X87_FTW: u16 = 0x5555;

/// VMCB segment attributes (APM Vol. 2 §15.5.1: descriptor bits 47:40 in 7:0, bits 55:52 in
/// 11:8): a 64-bit code segment (P, S, type execute/read accessed; L, G).
pub const ATTR_CODE64: u16 = 0xA9B;
/// A data segment (P, S, type read/write accessed; D/B, G).
pub const ATTR_DATA: u16 = 0xC93;
/// A busy 64-bit TSS (P, type 0xB).
pub const ATTR_TSS_BUSY: u16 = 0x08B;

/// The boot CPU's state an AP copies: control registers, descriptor tables and SEV_STATUS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BspState {
    /// CR0 (PE, PG, caches on).
    pub cr0: u64,
    /// CR3: the boot CPU's page tables.
    pub cr3: u64,
    /// CR4 (PAE, OSFXSR, OSXSAVE, ...).
    pub cr4: u64,
    /// XCR0 (1 when CR4.OSXSAVE is clear).
    pub xcr0: u64,
    /// GDT (base, limit).
    pub gdt: (u64, u16),
    /// IDT (base, limit).
    pub idt: (u64, u16),
    /// The 64-bit code selector in that GDT.
    pub code_selector: u16,
    /// The data selector in that GDT.
    pub data_selector: u16,
    /// The boot CPU's TSS (selector, base, limit): the AP's TR until it loads its own.
    pub tss: (u16, u64, u32),
    /// SEV_STATUS (MSR C001_0131) as read on the boot CPU.
    pub sev_status: u64,
}

/// Where one AP starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApStart {
    /// The AP's APIC ID (the target of the creation request).
    pub apic_id: u32,
    /// RIP: the 64-bit entry, an `extern "C" fn(index: u64) -> !`.
    pub rip: u64,
    /// The top of the AP's stack (16-byte aligned).
    pub stack_top: u64,
    /// RDI: the AP's index in the pool (1 first).
    pub index: u64,
}

/// The SEV_FEATURES of a VMSA: the SEV_STATUS bits from SNP (bit 2) up, shifted to bit 0
/// (APM Vol. 2 Table 15-38 vs. §15.34.10; Linux `vmsa->sev_features = sev_status >> 2`). KVM
/// refuses an AP whose features differ from the boot CPU's.
pub const fn sev_features(sev_status: u64) -> u64 {
    sev_status >> 2
}

/// The RMPADJUST attributes that make a page a VMSA (`make_vmsa`) or an ordinary page again:
/// target VMPL1, no permissions, and the VMSA bit (Linux `snp_set_vmsa`).
pub const fn rmpadjust_attrs(make_vmsa: bool) -> u64 {
    if make_vmsa {
        RMPADJUST_TARGET_VMPL1 | RMPADJUST_VMSA_PAGE_BIT
    } else {
        RMPADJUST_TARGET_VMPL1
    }
}

/// The VMSA page inside an 8 KiB, 4 KiB-aligned block at `block`: the first of its two pages
/// that is not 2 MiB aligned (at most one of them can be; Linux `snp_alloc_vmsa_page`).
pub const fn vmsa_page(block: u64) -> u64 {
    if block.is_multiple_of(PMD_SIZE) {
        block + PAGE
    } else {
        block
    }
}

/// Writes the VMSA of an AP that starts in 64-bit mode at `ap.rip` on its stack, with the boot
/// CPU's paging, descriptor tables and SEV features, at VMPL0.
pub fn build_vmsa(bsp: &BspState, ap: &ApStart) -> Vmsa {
    let seg = VmcbSegment::new;
    let mut v = Vmsa::new_zeroed();
    let data = seg(bsp.data_selector, ATTR_DATA, 0xFFFF_FFFF, 0);
    v.cs = seg(bsp.code_selector, ATTR_CODE64, 0xFFFF_FFFF, 0);
    (v.ss, v.ds, v.es) = (data, data, data);
    (v.fs, v.gs) = (seg(0, 0, 0, 0), seg(0, 0, 0, 0));
    v.gdtr = seg(0, 0, u32::from(bsp.gdt.1), bsp.gdt.0);
    v.idtr = seg(0, 0, u32::from(bsp.idt.1), bsp.idt.0);
    v.tr = seg(bsp.tss.0, ATTR_TSS_BUSY, bsp.tss.2, bsp.tss.1);
    v.efer.set(EFER_LME | EFER_LMA | EFER_SVME);
    v.cr4.set(bsp.cr4);
    v.cr3.set(bsp.cr3);
    v.cr0.set(bsp.cr0);
    v.dr7.set(AP_INIT_DR7);
    v.dr6.set(AP_INIT_DR6);
    v.rflags.set(AP_INIT_RFLAGS);
    v.rip.set(ap.rip);
    // As after a CALL: the System V ABI wants RSP + 8 16-byte aligned at a function's entry.
    v.rsp.set((ap.stack_top & !0xF) - 8);
    v.rdi.set(ap.index);
    v.g_pat.set(AP_INIT_GPAT);
    v.xcr0.set(bsp.xcr0);
    v.mxcsr.set(AP_INIT_MXCSR);
    v.x87_fcw.set(AP_INIT_X87_FCW);
    v.x87_ftw.set(AP_INIT_X87_FTW);
    v.vmpl = VMPL0;
    v.sev_features.set(sev_features(bsp.sev_status));
    v
}

/// Writes the AP Creation request into the GHCB (GHCB spec §4.1.9): RAX = the SEV features,
/// SW_EXITINFO1 = APIC ID << 32 | VMPL << 16 | SVM_VMGEXIT_AP_CREATE, SW_EXITINFO2 = the VMSA.
pub fn ap_create_request(g: &mut Ghcb<'_>, apic_id: u32, vmsa_gpa: u64, sev_features: u64) {
    g.reset();
    g.set(Field::Rax, sev_features);
    g.set(Field::SwExitCode, SVM_VMGEXIT_AP_CREATION);
    g.set(
        Field::SwExitInfo1,
        u64::from(apic_id) << AP_CREATION_APIC_ID_SHIFT
            | u64::from(VMPL0) << AP_CREATION_VMPL_SHIFT
            | SVM_VMGEXIT_AP_CREATE,
    );
    g.set(Field::SwExitInfo2, vmsa_gpa);
}

/// Why an AP was not created, or why none were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApError {
    /// The hypervisor does not offer SNP AP creation (GHCB_HV_FT_SNP_AP_CREATION clear).
    #[error("the hypervisor does not offer SNP AP creation (features {0:#x})")]
    NoApCreation(u64),
    /// No memory for the VMSA page, the stack or the GHCB page.
    #[error("out of memory for the AP's pages")]
    OutOfMemory,
    /// RMPADJUST failed (its return code).
    #[error("RMPADJUST of the VMSA page failed ({0})")]
    Rmpadjust(u32),
    /// The boot CPU's GHCB was unavailable.
    #[error("the GHCB is not available")]
    GhcbUnavailable,
    /// The hypervisor refused the request.
    #[error("the hypervisor refused AP creation: {0}")]
    Refused(GhcbError),
}

/// What [`start_aps`] needs from the machine (the firmware's SNP platform; a mock in tests).
pub trait ApMachine {
    /// Eight KiB of private, validated memory, 4 KiB aligned, nothing else uses; its GPA.
    fn alloc_vmsa_block(&mut self) -> Option<u64>;
    /// The AP's entry, stack and per-AP GHCB for pool index `index` (1 first), or None.
    fn prepare_ap(&mut self, index: u32) -> Option<ApStart>;
    /// Writes `vmsa` into the page at `gpa`.
    fn write_vmsa(&mut self, gpa: u64, vmsa: &Vmsa);
    /// RMPADJUST of the 4 KiB page at `gpa` with `attrs`; the instruction's return code.
    fn rmpadjust(&mut self, gpa: u64, attrs: u64) -> u32;
    /// Runs `f` with the boot CPU's GHCB and its VMGEXIT; None if the GHCB is unavailable.
    fn with_ghcb<R>(
        &mut self,
        f: impl FnOnce(&mut Ghcb<'_>, &mut dyn FnMut(&mut Ghcb<'_>)) -> R,
    ) -> Option<R>;
}

/// The outcome of [`start_aps`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApReport {
    /// APs the hypervisor accepted (they start running at once).
    pub created: u32,
    /// APs not created: (APIC ID, why). The others carry on.
    pub refused: Vec<(u32, ApError)>,
}

/// Creates the APs 1..`vcpus` (each APIC ID as `ApMachine::prepare_ap` names it) after checking that the
/// hypervisor offers AP creation; an AP that fails is recorded and the next one is tried.
pub fn start_aps(
    m: &mut impl ApMachine,
    hv: u64,
    bsp: &BspState,
    vcpus: u32,
) -> Result<ApReport, ApError> {
    let mut report = ApReport::default();
    if vcpus <= 1 {
        return Ok(report);
    }
    if hv & hv_features::SNP_AP_CREATION == 0 {
        return Err(ApError::NoApCreation(hv));
    }
    for index in 1..vcpus {
        match create_ap(m, bsp, index) {
            Ok(()) => report.created += 1,
            Err((apic_id, e)) => report.refused.push((apic_id, e)),
        }
    }
    Ok(report)
}

/// One AP: VMSA page, VMSA contents, RMPADJUST, AP Creation. Undoes the VMSA bit when the
/// hypervisor refuses (Linux `snp_cleanup_vmsa`; the page is then left unused).
fn create_ap(m: &mut impl ApMachine, bsp: &BspState, index: u32) -> Result<(), (u32, ApError)> {
    let ap = m.prepare_ap(index).ok_or((index, ApError::OutOfMemory))?;
    let fail = |e| (ap.apic_id, e);
    let page = vmsa_page(m.alloc_vmsa_block().ok_or(fail(ApError::OutOfMemory))?);
    m.write_vmsa(page, &build_vmsa(bsp, &ap));
    match m.rmpadjust(page, rmpadjust_attrs(true)) {
        0 => {}
        rc => return Err(fail(ApError::Rmpadjust(rc))),
    }
    let features = sev_features(bsp.sev_status);
    let result = m.with_ghcb(|g, exit| {
        ap_create_request(g, ap.apic_id, page, features);
        exit(g);
        g.exit_result()
    });
    let err = match result {
        Some(Ok(())) => return Ok(()),
        Some(Err(e)) => ApError::Refused(e),
        None => ApError::GhcbUnavailable,
    };
    m.rmpadjust(page, rmpadjust_attrs(false));
    Err(fail(err))
}

#[cfg(test)]
#[path = "ap_tests.rs"]
mod tests;
