//! SEV-SNP application processors: created by the boot CPU with guest-built VMSAs
//! (`pupa_guest::snp::ap`, GHCB spec 56421 §4.1.9 "SNP AP Creation"; why not the SEV-ES AP reset
//! block is said there). Not executed on this development machine: it has no SNP, and QEMU's
//! TCG cannot run an SNP guest.
//!
//! Each AP gets a stack (`smp::start_with`), a GHCB page from the shared window (`snp_ghcb`
//! slot = its pool index), and a VMSA page from the heap (private and validated, 8 KiB taken so
//! that a page not 2 MiB aligned is always in it; leaked: the page is the AP's for good). The AP
//! begins in 64-bit mode at [`snp_ap_entry`] with RDI = its index, RSP = its stack, on the boot
//! CPU's page tables, GDT, IDT and TSS, registers its GHCB before anything that can raise #VC,
//! then takes the same path as on a plain VM (`smp::ap_entry`: its own GDT/TSS, the pool).
//!
//! The launch measurement is unchanged: it holds one launch VMSA per vCPU (`sev-snp-measure
//! --vcpus N`), and AP creation at run time replaces those VMSAs without being measured.

use alloc::vec::Vec;
use core::alloc::Layout;

use pupa_guest::clock::Tsc;
use pupa_guest::snp::ap::{self, ApMachine, ApStart, BspState, RMP_PG_SIZE_4K};
use pupa_guest::snp::ghcb::Ghcb;
use pupa_spec::snp::Vmsa;
use x86_64::registers::control::{Cr0, Cr3};

use super::smp::{self, AP_STACK};
use super::snp::{ghcb_exit, hv_features, with_ghcb, SnpDma};
use super::snp_ghcb;
use super::virtio_net::DmaPool;
use crate::arch::cpu::halt_forever;
use crate::arch::snp::{cr4, rmpadjust, sev_status, xcr0};

const CR4_OSXSAVE: u64 = 1 << 18;
/// The VMSA block: two pages, 4 KiB aligned (`ap::vmsa_page` picks the one to use).
const VMSA_BLOCK: usize = 2 * 4096;

/// Every AP's first instruction (the RIP of its VMSA), with RDI = its pool index. Nothing here
/// may raise #VC before the GHCB is registered: only the GHCB MSR, VMGEXIT and memory reads.
/// An AP whose GHCB the hypervisor does not accept halts (HLT exits without a #VC) and never
/// joins the pool: the boot CPU reports fewer vCPUs online.
extern "C" fn snp_ap_entry(index: u64) -> ! {
    if snp_ghcb::register_self(index as usize).is_err() {
        halt_forever()
    }
    smp::ap_entry(index)
}

/// The boot CPU's state for the APs' VMSAs; None before `interrupts::init`.
fn bsp_state() -> Option<BspState> {
    let t = crate::arch::interrupts::bsp_tables()?;
    let (pml4, flags) = Cr3::read_raw();
    let c4 = cr4();
    Some(BspState {
        cr0: Cr0::read_raw(),
        cr3: pml4.start_address().as_u64() | u64::from(flags),
        cr4: c4,
        // XCR0 bit 0 (x87) is always set; XGETBV needs CR4.OSXSAVE.
        xcr0: if c4 & CR4_OSXSAVE != 0 { xcr0() } else { 1 },
        gdt: t.gdt,
        idt: t.idt,
        code_selector: t.code,
        data_selector: t.data,
        tss: t.tss,
        sev_status: sev_status(),
    })
}

/// The firmware's side of AP creation.
struct Machine {
    stacks: u64,
    /// The other vCPUs' APIC IDs (`smp::other_apic_ids`), AP `index` at `index - 1`.
    apic_ids: Vec<u32>,
}

impl ApMachine for Machine {
    fn alloc_vmsa_block(&mut self) -> Option<u64> {
        let layout = Layout::from_size_align(VMSA_BLOCK, 4096).ok()?;
        // SAFETY: the layout has a non-zero size; the block is never freed (leaked for the AP).
        let p = unsafe { alloc::alloc::alloc_zeroed(layout) };
        (!p.is_null()).then_some(p as u64)
    }

    fn prepare_ap(&mut self, index: u32) -> Option<ApStart> {
        let ghcb = SnpDma.alloc(4096)? as u64;
        if !snp_ghcb::set(index as usize, ghcb) {
            return None;
        }
        Some(ApStart {
            apic_id: *self.apic_ids.get(index as usize - 1)?,
            rip: snp_ap_entry as *const () as u64,
            stack_top: self.stacks + u64::from(index) * AP_STACK,
            index: u64::from(index),
        })
    }

    fn write_vmsa(&mut self, gpa: u64, vmsa: &Vmsa) {
        // SAFETY: `gpa` is a page of a block from `alloc_vmsa_block` (identity-mapped private
        // heap memory, 4 KiB aligned, ours alone), not yet a VMSA.
        unsafe { (gpa as *mut Vmsa).write(vmsa.clone()) }
    }

    fn rmpadjust(&mut self, gpa: u64, attrs: u64) -> u32 {
        // SAFETY: the page is private, validated (heap) and ours; `write_vmsa` filled it with a
        // complete VMSA before the VMSA bit is set, and nothing writes or frees it afterwards.
        unsafe { rmpadjust(gpa, RMP_PG_SIZE_4K, attrs) }
    }

    fn with_ghcb<R>(
        &mut self,
        f: impl FnOnce(&mut Ghcb<'_>, &mut dyn FnMut(&mut Ghcb<'_>)) -> R,
    ) -> Option<R> {
        with_ghcb(|g, gpa| f(g, &mut ghcb_exit(gpa))).ok()
    }
}

/// Starts the APs under SNP; returns (vCPUs the VMM reports, vCPUs online). Without the
/// hypervisor's AP-creation feature, or before the descriptor tables exist, pupa runs on the
/// boot CPU alone and says so.
pub fn start(tsc: Tsc) -> (u32, u32) {
    smp::start_with(tsc, |n, stacks| {
        let Some(bsp) = bsp_state() else {
            crate::println!("pupa: snp: no descriptor tables yet, running on one vCPU");
            return 0;
        };
        let apic_ids = smp::other_apic_ids(n - 1);
        let n = apic_ids.len() as u32 + 1;
        match ap::start_aps(&mut Machine { stacks, apic_ids }, hv_features(), &bsp, n) {
            Ok(report) => {
                for (apic_id, e) in &report.refused {
                    crate::println!("pupa: snp: AP {apic_id} not started: {e}");
                }
                report.created
            }
            Err(e) => {
                crate::println!("pupa: snp: {e}; running on one vCPU");
                0
            }
        }
    })
}
