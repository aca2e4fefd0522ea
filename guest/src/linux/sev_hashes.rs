//! The SEV hashes table QEMU writes into launch-measured guest memory with `kernel-hashes=on`
//! (QEMU `target/i386/sev.c`, `SevHashTable`; read by OVMF's `BlobVerifierLibSevHashes` /
//! `SevHashFinderLib`), so that the SNP launch digest covers the kernel, initrd and command
//! line. Layout, all packed little-endian, GUIDs in EFI byte order:
//!
//! `{ GUID 9438d606-…, u16 len, entry cmdline, entry initrd, entry kernel }` padded to 16 bytes,
//! each entry `{ GUID, u16 len = 50, SHA-256 }`; kernel = SHA-256(setup ‖ kernel items),
//! initrd = SHA-256(initrd) (of nothing without one), cmdline = SHA-256(the command line with
//! its NUL).
//!
//! [`check`] verifies a payload against such a table; the table's bytes are host-written
//! (though measured), so the walk is bounded and fallible. The firmware does not call it yet:
//! the table area is not declared in pupa's SEV metadata (SEV_KERNEL_HASHES, type 0x10).

use core::mem::size_of;
use zerocopy::little_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// A GUID in EFI byte order (first three fields little-endian), as QEMU's `UUID_LE`.
pub const fn guid(a: u32, b: u16, c: u16, d: [u8; 8]) -> [u8; 16] {
    let (a, b, c) = (a.to_le_bytes(), b.to_le_bytes(), c.to_le_bytes());
    [
        a[0], a[1], a[2], a[3], b[0], b[1], c[0], c[1], d[0], d[1], d[2], d[3], d[4], d[5], d[6],
        d[7],
    ]
}

/// 9438d606-4f22-4cc9-b479-a793d411fd21: the table.
pub const TABLE_GUID: [u8; 16] = guid(
    0x9438_d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
/// 4de79437-abd2-427f-b835-d5b172d2045b: the kernel entry.
pub const KERNEL_GUID: [u8; 16] = guid(
    0x4de7_9437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);
/// 44baf731-3a2f-4bd7-9af1-41e29169781d: the initrd entry.
pub const INITRD_GUID: [u8; 16] = guid(
    0x44ba_f731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
/// 97d02dd8-bd20-4c94-aa78-e7714d36ab2a: the command-line entry.
pub const CMDLINE_GUID: [u8; 16] = guid(
    0x97d0_2dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);

/// The table's header (`SevHashTable` without its entries).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct TableHeader {
    pub guid: [u8; 16],
    /// Bytes of the table, header and entries (without the padding).
    pub len: U16,
}

/// `SevHashTableEntry`.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct TableEntry {
    pub guid: [u8; 16],
    /// Bytes of the entry, GUID and length included (50).
    pub len: U16,
    pub sha256: [u8; 32],
}

const HEADER: usize = size_of::<TableHeader>();
const _: () = {
    assert!(size_of::<TableHeader>() == 18);
    assert!(size_of::<TableEntry>() == 50);
};

/// Which part of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Kernel,
    Initrd,
    Cmdline,
}

/// Why the payload does not match the table (each stops an SNP boot with a termination
/// request).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HashesError {
    /// The area does not start with the table GUID.
    #[error("no SEV hashes table")]
    NoTable,
    /// The table's length is below its header or beyond the declared area.
    #[error("SEV hashes table length {0} out of bounds")]
    Length(usize),
    /// An entry at this offset is shorter than its header or runs past the table.
    #[error("SEV hashes table entry at {0} malformed")]
    Entry(usize),
    /// A part has no entry, or more than one.
    #[error("SEV hashes table has no single {0:?} entry")]
    Missing(Part),
    /// A part's SHA-256 differs from the table's.
    #[error("{0:?} does not match the SEV hashes table")]
    Mismatch(Part),
}

/// The SHA-256 of each part as the table lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hashes {
    pub kernel: [u8; 32],
    pub initrd: [u8; 32],
    pub cmdline: [u8; 32],
}

/// Reads the table at the start of `area` (the declared SEV_KERNEL_HASHES range).
pub fn parse(area: &[u8]) -> Result<Hashes, HashesError> {
    let (hdr, _) = TableHeader::read_from_prefix(area).map_err(|_| HashesError::NoTable)?;
    if hdr.guid != TABLE_GUID {
        return Err(HashesError::NoTable);
    }
    let len = hdr.len.get() as usize;
    if len < HEADER || len > area.len() {
        return Err(HashesError::Length(len));
    }
    let table = &area[..len];
    let mut found: [Option<[u8; 32]>; 3] = [None; 3];
    let mut dup = [false; 3];
    let mut off = HEADER;
    while off < len {
        let rest = &table[off..];
        let (g, l) = match (rest.get(..16), rest.get(16..18)) {
            (Some(g), Some(l)) => (g, u16::from_le_bytes([l[0], l[1]]) as usize),
            _ => return Err(HashesError::Entry(off)),
        };
        if l < HEADER || l > rest.len() {
            return Err(HashesError::Entry(off));
        }
        let slot = [KERNEL_GUID, INITRD_GUID, CMDLINE_GUID]
            .iter()
            .position(|k| k == g);
        if let Some(i) = slot {
            // OVMF: an entry of a known GUID must hold exactly one SHA-256
            let (e, _) = TableEntry::read_from_prefix(rest).map_err(|_| HashesError::Entry(off))?;
            if l != size_of::<TableEntry>() {
                return Err(HashesError::Entry(off));
            }
            dup[i] |= found[i].is_some();
            found[i] = Some(e.sha256);
        }
        off += l;
    }
    let get = |i: usize, p: Part| match (found[i], dup[i]) {
        (Some(h), false) => Ok(h),
        _ => Err(HashesError::Missing(p)),
    };
    Ok(Hashes {
        kernel: get(0, Part::Kernel)?,
        initrd: get(1, Part::Initrd)?,
        cmdline: get(2, Part::Cmdline)?,
    })
}

/// Checks the payload's SHA-256s (as [`super::PartDigests`] computes them) against the table.
pub fn check(area: &[u8], payload: &Hashes) -> Result<(), HashesError> {
    let t = parse(area)?;
    for (want, got, p) in [
        (t.kernel, payload.kernel, Part::Kernel),
        (t.initrd, payload.initrd, Part::Initrd),
        (t.cmdline, payload.cmdline, Part::Cmdline),
    ] {
        if want != got {
            return Err(HashesError::Mismatch(p));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "sev_hashes_tests.rs"]
mod tests;
