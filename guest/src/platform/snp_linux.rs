//! The SEV-SNP hand-over to a Linux payload (not executed on this development machine: it has
//! no SNP). The decisions are the library's (`pupa_guest::linux`, host-tested): the SEV hashes
//! table check, the E820 table of validated RAM, the CC blob.
//!
//! 1. The payload must match the SEV hashes table QEMU wrote into the launch-measured
//!    SNP_KERNEL_HASHES page (`kernel-hashes=on`; `arch/boot.s` declares the page), so the
//!    launch digest covers kernel, initrd and command line. Without the table (the page is then
//!    measured as zeros) or on any mismatch the VM is terminated (GHCB MSR protocol,
//!    [`term::KERNEL_HASHES`]): an unmeasured kernel never runs.
//! 2. Linux booted without UEFI cannot learn of unvalidated memory, so it is offered only RAM
//!    the firmware validated: the heap's ranges (1 MiB to 4 GiB, `Snp::accept_ram`) and low RAM,
//!    validated here for its real-mode trampoline. Early RAM (the firmware's, still in use), the
//!    secrets/CPUID/hashes pages, the shared window and RAM above 4 GiB are reported reserved.
//! 3. The CPUID and secrets pages reach Linux through a `setup_data` CC blob (Linux
//!    `arch/x86/boot/compressed/sev.c`, `find_cc_blob_setup_data`), kept in firmware memory
//!    that the E820 table reserves, so that nothing Linux allocates can overwrite it before the
//!    kernel proper reads it again.

use alloc::format;
use alloc::vec::Vec;

use pupa_guest::linux::bootparam::{CcBlobSevInfo, CcSetupData};
use pupa_guest::linux::{self, sev_hashes, PayloadDigests, LEGACY_HOLE};
use pupa_guest::memmap::{self, Region};
use pupa_guest::snp::ghcb::term;
use spin::Mutex;
use zerocopy::FromZeros;

use super::snp::{accept_ram, terminate, CPUID_GPA, KERNEL_HASHES_GPA, SECRETS_GPA};
use super::{BootError, Handover, Ram};
use crate::println;

/// The CC blob and its setup_data node, in the firmware's static memory (early RAM, reserved in
/// Linux's E820 table).
#[repr(C)]
struct CcBlob {
    node: CcSetupData,
    blob: CcBlobSevInfo,
}

static CC_BLOB: Mutex<Option<CcBlob>> = Mutex::new(None);

/// [`super::Platform::linux_handover`] under SNP.
pub fn handover(
    map: &[Region],
    ram: &Ram,
    payload: &PayloadDigests,
) -> Result<Handover, BootError> {
    // SAFETY: the SNP_KERNEL_HASHES page is private memory the PSP validated and measured at
    // launch (SEV metadata), identity-mapped; nothing in the firmware writes it.
    let table = unsafe { core::slice::from_raw_parts(KERNEL_HASHES_GPA as *const u8, 4096) };
    if let Err(e) = sev_hashes::check(table, &payload.sev_hashes()) {
        println!("pupa: linux: {e}: the payload is not the one measured at launch");
        terminate(term::KERNEL_HASHES);
    }
    println!("pupa: linux payload matches the SEV hashes table (launch-measured)");

    let snp_pages = (SECRETS_GPA, KERNEL_HASHES_GPA + 0x1000);
    let low = memmap::usable_ram(map, 0, 0x10_0000, &[snp_pages, LEGACY_HOLE]);
    let low_bytes = accept_ram(&low).map_err(|e| BootError::Linux(format!("low RAM: {e}")))?;
    println!("pupa: linux low RAM validated: {low_bytes} bytes");
    let mut usable: Vec<(u64, u64)> = ram.ranges.clone();
    usable.extend(&low);

    let mut slot = CC_BLOB.lock();
    let cc = slot.insert(CcBlob {
        node: CcSetupData::new_zeroed(),
        blob: CcBlobSevInfo::new_zeroed(),
    });
    // The static's address is fixed: the node points at the blob beside it.
    let blob_addr = core::ptr::from_ref(&cc.blob) as u64;
    let (blob, node) = linux::snp_cc_blob(SECRETS_GPA, CPUID_GPA, blob_addr)
        .map_err(|e| BootError::Linux(format!("{e}")))?;
    *cc = CcBlob { node, blob };
    Ok(Handover {
        map: None,
        usable: Some(usable),
        setup_data: core::ptr::from_ref(&cc.node) as u64,
    })
}
