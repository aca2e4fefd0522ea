//! Intel TDX MRTD of a TDVF-format firmware.
//!
//! MRTD is one SHA-384 computation that the TDX module runs over the TD's build
//! (Intel TDX Module Architecture Specification, document 344425, chapter "Measurement and
//! Attestation", section "MRTD: Build-Time Measurement Register"; the records are specified
//! with the TDH.MEM.PAGE.ADD and TDH.MR.EXTEND leaf functions in the TDX Module ABI
//! Specification):
//! - **TDH.MEM.PAGE.ADD** extends MRTD with one 128-byte block: bytes 0..12 = ASCII
//!   `"MEM.PAGE.ADD"`, bytes 16..24 = the page's GPA (little-endian), all else zero;
//! - **TDH.MR.EXTEND** extends MRTD with a 128-byte block (`"MR.EXTEND"` at 0, the chunk's GPA
//!   at 16) followed by the 256 bytes of the chunk; a 4 KiB page takes 16 calls;
//! - **TDH.MR.FINALIZE** finalizes the hash.
//!
//! Which pages are added and extended comes from the TDVF metadata: every section is added
//! page by page (TDH.MEM.PAGE.ADD); sections with the MR.EXTEND attribute are also extended.
//! BFV/CFV bytes come from the image at `data_offset`; TD_HOB and TEMP_MEM start out as
//! VMM-provided memory. The TDVF design guide gives sections with the PAGE.AUG attribute to
//! TDH.MEM.PAGE.AUG after launch (never measured), but upstream QEMU ignores the attribute
//! (`hw/i386/tdvf.c` stores it; `target/i386/kvm/tdx.c` `tdx_init_fw_mem_region`, called from
//! `tdx_finalize_vm`, issues `KVM_TDX_INIT_MEM_REGION` for every section with flags from
//! MR.EXTEND alone): it adds
//! such a section like any other. So the single-pass (QEMU) order refuses images with a
//! PAGE.AUG section ([`TdxError::PageAugUnderQemu`]) rather than give an MRTD no QEMU host
//! produces; the two-pass order (older stacks) keeps the design guide's meaning.
//!
//! **Orderings.** What we found in the sources:
//! - QEMU ≥ 10.1 / Linux ≥ 6.16 KVM with guest_memfd, the first upstream releases with TDX
//!   (upstream QEMU `target/i386/kvm/tdx.c`
//!   `tdx_init_fw_mem_region`, one `KVM_TDX_INIT_MEM_REGION` per section with
//!   `KVM_TDX_MEASURE_MEMORY_REGION` when MR.EXTEND is set; Linux
//!   `arch/x86/kvm/vmx/tdx.c` `tdx_gmem_post_populate` does TDH.MEM.PAGE.ADD and then the 16
//!   TDH.MR.EXTENDs of that page before moving to the next page): **single pass**, page by
//!   page within each section, sections in table order.
//! - Older TDX QEMU/KVM stacks added all pages of a section first and extended them
//!   afterwards: **two pass**, still section by section in table order (this is the
//!   "two_pass_add_pages" variant that Phala's dstack-mr selects for its older QEMU
//!   machine profiles). We did not find a flow that adds the pages of *all* sections before
//!   extending any, so that ordering is not offered.

use core::fmt;
use core::str::FromStr;

use sha2::{Digest, Sha384};

use crate::ovmf::{Firmware, TdvfSectionType, PAGE_SIZE};
use crate::Digest384;

/// Bytes per TDH.MR.EXTEND call.
pub const MR_EXTEND_CHUNK: usize = 256;

/// The order of TDH.MEM.PAGE.ADD and TDH.MR.EXTEND within a section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")] // "single", "twopass"
pub enum Order {
    /// Per page: add, then extend its 16 chunks (upstream QEMU ≥ 10.1 / Linux ≥ 6.16).
    Single,
    /// Per section: add every page, then extend every page (older stacks).
    TwoPass,
}

impl fmt::Display for Order {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Order::Single => "single",
            Order::TwoPass => "twopass",
        })
    }
}

impl FromStr for Order {
    type Err = TdxError;
    fn from_str(s: &str) -> Result<Self, TdxError> {
        match s.to_ascii_lowercase().as_str() {
            "single" | "single-pass" | "singlepass" => Ok(Order::Single),
            "twopass" | "two-pass" | "two" => Ok(Order::TwoPass),
            _ => Err(TdxError::UnknownOrder(s.to_owned())),
        }
    }
}

/// Why an MRTD cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxError {
    /// The image has no TDVF metadata.
    #[error(
        "firmware has no TDX metadata (OVMF table entry {})",
        crate::guid::TDX_METADATA_OFFSET
    )]
    NoTdvfMetadata,
    /// Unknown `--order`.
    #[error("unknown MRTD order {0:?} (want single or twopass)")]
    UnknownOrder(String),
    /// A BFV/CFV section's data runs past the end of the file.
    #[error("TDVF section {index} ({kind}): data {offset:#x}+{len:#x} lies outside the {size:#x}-byte file")]
    DataOutOfFile {
        /// Section index.
        index: usize,
        /// Section type name.
        kind: &'static str,
        /// Data offset.
        offset: u64,
        /// Bytes needed (memory size).
        len: u64,
        /// File size.
        size: usize,
    },
    /// A TD_HOB section with MR.EXTEND: its contents are built by the VMM at launch.
    #[error("TDVF section {0} is a TD_HOB with MR.EXTEND: its contents are built by the VMM, so MRTD cannot be computed offline")]
    HobExtended(usize),
    /// A PAGE.AUG section under the single-pass (QEMU) order: QEMU ignores the attribute.
    #[error("TDVF section {index} ({kind}) has PAGE.AUG, which QEMU ignores (it adds and measures every section with TDH.MEM.PAGE.ADD before launch): the MRTD of this image under QEMU is not the TDVF model's; drop the attribute")]
    PageAugUnderQemu {
        /// Section index.
        index: usize,
        /// Section type name.
        kind: &'static str,
    },
}

fn page_add_block(gpa: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[..12].copy_from_slice(b"MEM.PAGE.ADD");
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

fn mr_extend_block(gpa: u64) -> [u8; 128] {
    let mut b = [0u8; 128];
    b[..9].copy_from_slice(b"MR.EXTEND");
    b[16..24].copy_from_slice(&gpa.to_le_bytes());
    b
}

/// The MRTD of `fw` for the given ordering.
pub fn mrtd(fw: &Firmware, order: Order) -> Result<Digest384, TdxError> {
    let sections = fw.tdvf_sections().ok_or(TdxError::NoTdvfMetadata)?;
    // Validate everything before hashing anything.
    for (index, s) in sections.iter().enumerate() {
        if s.kind.has_file_data() && u64::from(s.data_offset) + s.mem_size > fw.len() as u64 {
            return Err(TdxError::DataOutOfFile {
                index,
                kind: s.kind.name(),
                offset: u64::from(s.data_offset),
                len: s.mem_size,
                size: fw.len(),
            });
        }
        if s.kind == TdvfSectionType::TdHob && s.mr_extend() {
            return Err(TdxError::HobExtended(index));
        }
        if order == Order::Single && s.page_aug() {
            return Err(TdxError::PageAugUnderQemu {
                index,
                kind: s.kind.name(),
            });
        }
    }
    let zero_page = [0u8; PAGE_SIZE as usize];
    let mut h = Sha384::new();
    for s in sections {
        let pages = s.mem_size / PAGE_SIZE;
        let page_data = |p: u64| -> &[u8] {
            if s.kind.has_file_data() {
                let at = s.data_offset as usize + (p * PAGE_SIZE) as usize;
                &fw.data()[at..at + PAGE_SIZE as usize]
            } else {
                // TEMP_MEM: fresh VMM memory, zero.
                &zero_page
            }
        };
        let add = |h: &mut Sha384, p: u64| {
            if !s.page_aug() {
                h.update(page_add_block(s.gpa + p * PAGE_SIZE));
            }
        };
        let extend = |h: &mut Sha384, p: u64| {
            if s.mr_extend() {
                for (i, chunk) in page_data(p).chunks_exact(MR_EXTEND_CHUNK).enumerate() {
                    h.update(mr_extend_block(
                        s.gpa + p * PAGE_SIZE + (i * MR_EXTEND_CHUNK) as u64,
                    ));
                    h.update(chunk);
                }
            }
        };
        match order {
            Order::Single => {
                for p in 0..pages {
                    add(&mut h, p);
                    extend(&mut h, p);
                }
            }
            Order::TwoPass => {
                (0..pages).for_each(|p| add(&mut h, p));
                (0..pages).for_each(|p| extend(&mut h, p));
            }
        }
    }
    Ok(h.finalize().into())
}
