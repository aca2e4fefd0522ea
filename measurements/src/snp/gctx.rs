//! The SNP launch digest chain: SHA-384 over PAGE_INFO records.
//!
//! AMD SEV-SNP Firmware ABI Specification (publication 56860), §8.17.2 "SNP_LAUNCH_UPDATE",
//! Table "Layout of the PAGE_INFO Structure": for every page the PSP computes
//! `LD' = SHA-384(PAGE_INFO)` where PAGE_INFO (0x70 bytes) is
//!
//! | offset | field |
//! |---|---|
//! | 0x00 | DIGEST_CUR: the current launch digest (48 bytes) |
//! | 0x30 | CONTENTS: SHA-384 of the page for NORMAL and VMSA pages, zero otherwise |
//! | 0x60 | LENGTH (u16) = 0x70 |
//! | 0x62 | PAGE_TYPE (u8) |
//! | 0x63 | IMI_PAGE (u8) = 0 |
//! | 0x64 | VMPL3/2/1_PERMS (u8 each) = 0, then a reserved byte |
//! | 0x68 | GPA (u64) |

use sha2::{Digest, Sha384};

use crate::Digest384;

/// PAGE_TYPE values (SNP ABI, Table "Page Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Page with measured contents.
    Normal = 1,
    /// A VMSA page.
    Vmsa = 2,
    /// Zero page.
    Zero = 3,
    /// Unmeasured page.
    Unmeasured = 4,
    /// The secrets page.
    Secrets = 5,
    /// The CPUID page.
    Cpuid = 6,
}

/// GPA recorded for VMSA pages: the PSP records (u64)-1, page-aligned with bits above 51 clear.
pub const VMSA_GPA: u64 = 0xFFFF_FFFF_F000;

/// Running launch digest.
#[derive(Debug, Clone)]
pub struct LaunchDigest {
    ld: Digest384,
}

impl LaunchDigest {
    /// Starts from a seed (all zero for a fresh launch, or a precomputed OVMF hash).
    pub fn new(seed: Digest384) -> Self {
        Self { ld: seed }
    }

    /// The current digest.
    pub fn digest(&self) -> Digest384 {
        self.ld
    }

    fn update(&mut self, page_type: PageType, gpa: u64, contents: &Digest384) {
        let mut info = [0u8; 0x70];
        info[..48].copy_from_slice(&self.ld);
        info[48..96].copy_from_slice(contents);
        info[0x60..0x62].copy_from_slice(&0x70u16.to_le_bytes());
        info[0x62] = page_type as u8;
        info[0x68..0x70].copy_from_slice(&gpa.to_le_bytes());
        self.ld = Sha384::digest(info).into();
    }

    /// Measures `data` (a page multiple) as NORMAL pages starting at `gpa`.
    pub fn normal_pages(&mut self, gpa: u64, data: &[u8]) {
        debug_assert!(data.len().is_multiple_of(4096));
        for (i, page) in data.chunks_exact(4096).enumerate() {
            let h: Digest384 = Sha384::digest(page).into();
            self.update(PageType::Normal, gpa + 4096 * i as u64, &h);
        }
    }

    /// Records `len` bytes (a page multiple) of pages of a content-less type.
    pub fn empty_pages(&mut self, page_type: PageType, gpa: u64, len: u64) {
        for off in (0..len).step_by(4096) {
            self.update(page_type, gpa + off, &[0; 48]);
        }
    }

    /// Measures one VMSA page.
    pub fn vmsa_page(&mut self, page: &[u8; 4096]) {
        let h: Digest384 = Sha384::digest(page).into();
        self.update(PageType::Vmsa, VMSA_GPA, &h);
    }
}
