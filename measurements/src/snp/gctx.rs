//! The SNP launch digest chain: SHA-384 over PAGE_INFO records.
//!
//! AMD SEV-SNP Firmware ABI Specification (publication 56860), §8.17.2 "SNP_LAUNCH_UPDATE",
//! Table 67 "Layout of the PAGE_INFO Structure": for every page the PSP computes
//! `LD' = SHA-384(PAGE_INFO)`, PAGE_INFO being [`pupa_spec::snp::PageInfo`] (DIGEST_CUR = the
//! current digest, CONTENTS = SHA-384 of the page for NORMAL and VMSA pages and zero otherwise,
//! LENGTH 0x70, PAGE_TYPE, IMI_PAGE and VMPL permissions 0, GPA).

use pupa_spec::snp::page_info::{self, PAGE_INFO_LEN};
use pupa_spec::snp::PageInfo;
use sha2::{Digest, Sha384};
use zerocopy::{FromZeros, IntoBytes};

use crate::Digest384;

/// PAGE_TYPE values (SNP ABI, Table "Page Types").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum PageType {
    /// Page with measured contents.
    Normal = page_info::page_type::NORMAL,
    /// A VMSA page.
    Vmsa = page_info::page_type::VMSA,
    /// Zero page.
    Zero = page_info::page_type::ZERO,
    /// Unmeasured page.
    Unmeasured = page_info::page_type::UNMEASURED,
    /// The secrets page.
    Secrets = page_info::page_type::SECRETS,
    /// The CPUID page.
    Cpuid = page_info::page_type::CPUID,
}

/// GPA recorded for VMSA pages: the PSP records (u64)-1, page-aligned with bits above 51 clear.
pub const VMSA_GPA: u64 = page_info::VMSA_GPA;

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
        let mut info = PageInfo::new_zeroed();
        info.digest_cur = self.ld;
        info.contents = *contents;
        info.length.set(PAGE_INFO_LEN as u16);
        info.page_type = page_type as u8;
        info.gpa.set(gpa);
        self.ld = Sha384::digest(info.as_bytes()).into();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Two steps of the chain against SHA-384 over PAGE_INFO records packed by hand (Python
    /// `hashlib.sha384(ld + contents + struct.pack('<HBBBBBBQ', 0x70, type, 0, 0, 0, 0, 0, gpa))`).
    #[test]
    fn page_info_chain_matches_hand_packed_records() {
        let mut ld = LaunchDigest::new([0; 48]);
        ld.empty_pages(PageType::Zero, 0x80_0000, 4096);
        assert_eq!(
            crate::hexfmt::encode(&ld.digest()),
            "4472405c6dbc65e5629805f2be1b3df74eb119841eff12466c24f43e67083c23\
             df5e645b2742b6d9aa0f943e095cebaa"
        );
        ld.normal_pages(0xFFFF_F000, &[0xAA; 4096]);
        assert_eq!(
            crate::hexfmt::encode(&ld.digest()),
            "45179c36d09c353bc785fc03866171693afded77dba6508971df594773cf0599\
             041ce78af377a09dae4008f7f3b882a8"
        );
    }
}
