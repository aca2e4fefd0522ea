//! The SEV kernel-hashes table that QEMU writes for measured direct boot.
//!
//! Layout (QEMU `target/i386/sev.c`, `SevHashTable` / `PaddedSevHashTable`; edk2
//! `OvmfPkg/AmdSev/BlobVerifierLibSevHashes`): a header `GUID 9438d606-… ‖ u16 length`
//! followed by three entries `GUID ‖ u16 length (50) ‖ SHA-256` for the command line
//! (9438… then 97d02dd8-…), initrd (44baf731-…) and kernel (4de79437-…); the table (168 bytes)
//! is zero-padded to a 16-byte multiple (176) and placed in its page at the table GPA's
//! page offset.

use sha2::{Digest, Sha256};

use crate::guid::Guid;

const TABLE_HEADER: Guid = Guid::from_fields(
    0x9438d606,
    0x4f22,
    0x4cc9,
    [0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11, 0xfd, 0x21],
);
const KERNEL_ENTRY: Guid = Guid::from_fields(
    0x4de79437,
    0xabd2,
    0x427f,
    [0xb8, 0x35, 0xd5, 0xb1, 0x72, 0xd2, 0x04, 0x5b],
);
const INITRD_ENTRY: Guid = Guid::from_fields(
    0x44baf731,
    0x3a2f,
    0x4bd7,
    [0x9a, 0xf1, 0x41, 0xe2, 0x91, 0x69, 0x78, 0x1d],
);
const CMDLINE_ENTRY: Guid = Guid::from_fields(
    0x97d02dd8,
    0xbd20,
    0x4c94,
    [0xaa, 0x78, 0xe7, 0x71, 0x4d, 0x36, 0xab, 0x2a],
);

const ENTRY_LEN: usize = 16 + 2 + 32;
/// Unpadded table length.
pub const TABLE_LEN: usize = 16 + 2 + 3 * ENTRY_LEN;
/// Table length padded to 16 bytes, as QEMU writes it.
pub const PADDED_LEN: usize = TABLE_LEN.div_ceil(16) * 16;

/// SHA-256 hashes of the direct-boot blobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelHashes {
    /// SHA-256 of the kernel file.
    pub kernel: [u8; 32],
    /// SHA-256 of the initrd (of the empty string when there is none).
    pub initrd: [u8; 32],
    /// SHA-256 of the command line plus its NUL terminator (`"\0"` when there is none).
    pub cmdline: [u8; 32],
}

impl KernelHashes {
    /// Hashes the blobs the way QEMU does.
    pub fn new(kernel: &[u8], initrd: Option<&[u8]>, append: Option<&str>) -> Self {
        let mut cmd = append.unwrap_or("").as_bytes().to_vec();
        cmd.push(0);
        Self {
            kernel: Sha256::digest(kernel).into(),
            initrd: Sha256::digest(initrd.unwrap_or(&[])).into(),
            cmdline: Sha256::digest(&cmd).into(),
        }
    }

    /// The padded table bytes.
    pub fn table(&self) -> [u8; PADDED_LEN] {
        let mut t = [0u8; PADDED_LEN];
        t[..16].copy_from_slice(TABLE_HEADER.as_bytes());
        t[16..18].copy_from_slice(&(TABLE_LEN as u16).to_le_bytes());
        for (i, (g, h)) in [
            (CMDLINE_ENTRY, &self.cmdline),
            (INITRD_ENTRY, &self.initrd),
            (KERNEL_ENTRY, &self.kernel),
        ]
        .into_iter()
        .enumerate()
        {
            let at = 18 + i * ENTRY_LEN;
            t[at..at + 16].copy_from_slice(g.as_bytes());
            t[at + 16..at + 18].copy_from_slice(&(ENTRY_LEN as u16).to_le_bytes());
            t[at + 18..at + 50].copy_from_slice(h);
        }
        t
    }

    /// The page holding the table at `offset` within the page, or `None` if it does not fit.
    pub fn page(&self, offset: usize) -> Option<[u8; 4096]> {
        if offset + PADDED_LEN > 4096 {
            return None;
        }
        let mut p = [0u8; 4096];
        p[offset..offset + PADDED_LEN].copy_from_slice(&self.table());
        Some(p)
    }
}
