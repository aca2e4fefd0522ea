//! The vCPUs' APIC IDs from the VMM's ACPI MADT (ACPI 6.5 §5.2.12), for the platforms that
//! start their APs by ID (SNP AP creation names the APIC ID of the VMSA's vCPU; TDX wakes each
//! AP through the mailbox by its x2APIC ID). QEMU numbers APIC IDs by topology
//! (`hw/i386/x86.c` `x86_cpu_apic_id_from_index`): `-smp 6,sockets=2,cores=3` gives
//! 0, 1, 2, 4, 5, 6, not 0..5.
//!
//! QEMU's fw_cfg file `etc/acpi/tables` holds the tables back to back (FACS first, then DSDT,
//! FADT, MADT, ...; `hw/i386/acpi-build.c` `acpi_build`), each starting with its signature and
//! length, then zero padding. [`find_table`] walks it from a byte stream (fw_cfg's data port)
//! and stops at the table it wants, so the firmware reads a few KiB, not the padded file;
//! [`enabled_apic_ids`] reads the MADT's Processor Local APIC (type 0) and Local x2APIC
//! (type 9) entries. Both are host input: every length is checked. The checksum is not: in
//! the file it is still 0, because QEMU's loader script (`etc/table-loader`, ADD_CHECKSUM) has
//! the firmware compute it after linking, and it would protect nothing against the host that
//! wrote the table anyway.
//!
//! Written by hand: the `acpi` crate wants the whole table set mapped in memory and a handler
//! for physical mappings; this needs one table from a byte stream.

use alloc::vec::Vec;
use core::mem::size_of;

use zerocopy::{FromBytes, Immutable, KnownLayout};

/// The MADT's signature.
pub const MADT_SIGNATURE: [u8; 4] = *b"APIC";
/// The longest table [`find_table`] returns (QEMU's MADT for 288 vCPUs is under 5 KiB).
pub const MAX_TABLE: usize = 64 << 10;

/// System description table header (ACPI 6.5 §5.2.6).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, FromBytes, Immutable, KnownLayout)]
pub struct SdtHeader {
    pub signature: [u8; 4],
    pub length: u32,
    pub revision: u8,
    pub checksum: u8,
    pub oem_id: [u8; 6],
    pub oem_table_id: [u8; 8],
    pub oem_revision: u32,
    pub creator_id: u32,
    pub creator_revision: u32,
}
const _: () = assert!(size_of::<SdtHeader>() == 36);

/// The MADT's fixed part after the header (§5.2.12, Table 5.19): Local Interrupt Controller
/// Address, Flags.
const MADT_FIXED: usize = size_of::<SdtHeader>() + 8;

/// Processor Local APIC Structure (§5.2.12.2).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, FromBytes, Immutable, KnownLayout)]
pub struct LocalApic {
    pub kind: u8,
    pub length: u8,
    pub processor_uid: u8,
    pub apic_id: u8,
    pub flags: u32,
}
const _: () = assert!(size_of::<LocalApic>() == 8);

/// Processor Local x2APIC Structure (§5.2.12.12).
#[repr(C, packed)]
#[derive(Debug, Clone, Copy, FromBytes, Immutable, KnownLayout)]
pub struct LocalX2Apic {
    pub kind: u8,
    pub length: u8,
    pub reserved: u16,
    pub x2apic_id: u32,
    pub flags: u32,
    pub processor_uid: u32,
}
const _: () = assert!(size_of::<LocalX2Apic>() == 16);

/// Interrupt controller structure types.
pub const TYPE_LOCAL_APIC: u8 = 0;
pub const TYPE_LOCAL_X2APIC: u8 = 9;
/// Local APIC Flags bit 0 (Table 5.23): the processor is ready for use.
pub const FLAG_ENABLED: u32 = 1;

/// Why the MADT could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MadtError {
    /// The tables end (or the padding starts) before a table with the signature.
    #[error("no {0} table")]
    NotFound(&'static str),
    /// A table's length is shorter than its header or runs past the file.
    #[error("table at offset {offset} has a bad length {length}")]
    BadLength { offset: usize, length: u32 },
    /// The table is longer than [`MAX_TABLE`].
    #[error("table of {0} bytes exceeds the {MAX_TABLE}-byte limit")]
    TooLarge(u32),
    /// The guest could not allocate the table.
    #[error("out of memory for the table")]
    OutOfMemory,
    /// An interrupt controller structure's length is wrong or runs past the table.
    #[error("MADT entry at offset {0} is malformed")]
    BadEntry(usize),
}

/// Reads tables from a stream of `size` bytes (`read` fills the buffer with the next bytes)
/// until the one whose signature is `signature`; returns it whole.
pub fn find_table(
    read: &mut impl FnMut(&mut [u8]),
    size: usize,
    signature: [u8; 4],
) -> Result<Vec<u8>, MadtError> {
    let not_found = MadtError::NotFound(if signature == MADT_SIGNATURE {
        "MADT"
    } else {
        "ACPI"
    });
    let mut offset = 0;
    let mut scratch = [0u8; 512];
    while size - offset >= 8 {
        let mut head = [0u8; 8];
        read(&mut head);
        let length = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        if head[..4] == [0; 4] {
            return Err(not_found);
        }
        if length < 8 || length as usize > size - offset {
            return Err(MadtError::BadLength { offset, length });
        }
        if head[..4] == signature {
            if length as usize > MAX_TABLE {
                return Err(MadtError::TooLarge(length));
            }
            let mut table = Vec::new();
            table
                .try_reserve_exact(length as usize)
                .map_err(|_| MadtError::OutOfMemory)?;
            table.extend_from_slice(&head);
            table.resize(length as usize, 0);
            read(&mut table[8..]);
            return Ok(table);
        }
        let mut left = length as usize - 8;
        while left > 0 {
            let n = left.min(scratch.len());
            read(&mut scratch[..n]);
            left -= n;
        }
        offset += length as usize;
    }
    Err(not_found)
}

/// The APIC IDs of the MADT's enabled processors, in table order (QEMU lists the boot CPU
/// first). x2APIC entries give the full 32-bit ID.
pub fn enabled_apic_ids(madt: &[u8]) -> Result<Vec<u32>, MadtError> {
    let (head, _) = SdtHeader::read_from_prefix(madt).map_err(|_| MadtError::BadLength {
        offset: 0,
        length: madt.len() as u32,
    })?;
    let length = head.length;
    if length as usize != madt.len() || madt.len() < MADT_FIXED {
        return Err(MadtError::BadLength { offset: 0, length });
    }
    let mut ids = Vec::new();
    let mut at = MADT_FIXED;
    while at < madt.len() {
        let rest = &madt[at..];
        let len = rest.get(1).copied().unwrap_or(0) as usize;
        if len < 2 || len > rest.len() {
            return Err(MadtError::BadEntry(at));
        }
        let entry = &rest[..len];
        let id = match entry[0] {
            TYPE_LOCAL_APIC => {
                let e = LocalApic::read_from_bytes(entry).map_err(|_| MadtError::BadEntry(at))?;
                (e.flags & FLAG_ENABLED != 0).then_some(u32::from(e.apic_id))
            }
            TYPE_LOCAL_X2APIC => {
                let e = LocalX2Apic::read_from_bytes(entry).map_err(|_| MadtError::BadEntry(at))?;
                (e.flags & FLAG_ENABLED != 0).then_some(e.x2apic_id)
            }
            _ => None,
        };
        if let Some(id) = id.filter(|id| !ids.contains(id)) {
            ids.try_reserve(1).map_err(|_| MadtError::OutOfMemory)?;
            ids.push(id);
        }
        at += len;
    }
    Ok(ids)
}

/// The APIC IDs of the other vCPUs when the VMM gives no MADT: QEMU's numbering for a plain
/// `-smp N` (0..N, here without the boot CPU's `own`), the first `count`. The TDX module sets
/// the x2APIC ID to the vCPU index unless the VMM configured a topology. An ID that belongs to
/// no vCPU is reported by the platform's start-up (a TDX wakeup times out, an SNP AP creation
/// is refused) and the guest carries on with the others.
pub fn fallback_apic_ids(own: u32, count: u32) -> Vec<u32> {
    (0..=u32::MAX)
        .filter(|&id| id != own)
        .take(count as usize)
        .collect()
}

#[cfg(test)]
#[path = "madt_tests.rs"]
mod tests;
