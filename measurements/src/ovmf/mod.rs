//! The OVMF GUIDed footer table and the metadata it points to (SEV `ASEV`, TDX `TDVF`).
//!
//! Layout (edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm`, QEMU `hw/i386/pc_sysfw_ovmf.c`):
//! the image ends with the reset vector; the footer entry `u16 table_len ‖ GUID 96b582de-…`
//! sits at `end − 0x32`, so the footer GUID is at `end − 0x30`. `table_len` counts the whole
//! table including the footer entry. Entries precede it, each `data ‖ u16 len ‖ GUID` where
//! `len` covers data, length and GUID; they are walked backwards from the footer.
//!
//! SEV metadata (`OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm`): the table entry holds a u32
//! offset from the end of the image to an `ASEV` header followed by its section descriptors,
//! laid out as [`pupa_spec::snp::metadata`] (the types pupa's `boot.s` block follows).
//!
//! TDX metadata (TDVF Design Guide §11 "TDVF Metadata"; QEMU `hw/i386/tdvf.c`): the table entry
//! holds a u32 offset from the end of the image to a `TDVF_DESCRIPTOR` followed by its 32-byte
//! `TDVF_SECTION`s, laid out as [`pupa_spec::tdx::metadata`].
//!
//! Everything is bounds-checked; malformed input yields an [`OvmfError`] naming the problem.

mod describe;
mod error;

pub use error::OvmfError;

use pupa_spec::snp::metadata::{self as sev_md, SevMetadataHeader, SevMetadataSection};
use pupa_spec::tdx::metadata::{self as tdvf_md, TdvfDescriptor};
use zerocopy::FromBytes;

use crate::guid::{self, Guid};

/// Page size used by both SNP and TDX launch flows.
pub const PAGE_SIZE: u64 = 4096;
/// Size of `u16 len ‖ GUID` at the end of every table entry.
const ENTRY_HEADER: usize = 18;
/// The firmware is mapped so that it ends at 4 GiB.
pub const FOUR_GIB: u64 = 1 << 32;

/// TDVF section attribute: the section's pages are extended into MRTD (TDH.MR.EXTEND).
pub const TDVF_ATTR_MR_EXTEND: u32 = tdvf_md::ATTR_MR_EXTEND;
/// TDVF section attribute: the pages are added after launch with TDH.MEM.PAGE.AUG (unmeasured).
pub const TDVF_ATTR_PAGE_AUG: u32 = tdvf_md::ATTR_PAGE_AUG;
/// Most guest memory the TDVF sections may declare in total. Real TDVF images declare a few
/// MiB (OVMF: BFV+CFV of 2–4 MiB plus some MiB of TEMP_MEM); the bound keeps MRTD of a hostile
/// image from hashing for hours (found by fuzzing: a 2^52-byte TEMP_MEM is "valid" otherwise).
pub const MAX_TDVF_MEMORY: u64 = 256 << 20;

/// One entry of the footer table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableEntry {
    /// Entry GUID.
    pub guid: Guid,
    /// Entry data (without the trailing length and GUID).
    pub data: Vec<u8>,
    /// File offset of the data.
    pub offset: usize,
}

/// SEV metadata section types (`OvmfSevMetadata.asm`, sev-snp-measure `SectionType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SevSectionType {
    /// Memory that is pre-validated, measured as zero pages (or unmeasured on GCE).
    SnpSecMem,
    /// The SNP secrets page.
    Secrets,
    /// The SNP CPUID page.
    Cpuid,
    /// The SVSM calling-area page(s).
    SvsmCaa,
    /// The page holding the kernel/initrd/cmdline hashes table.
    KernelHashes,
}

impl SevSectionType {
    /// Decodes the u32 type field.
    pub fn from_u32(v: u32) -> Option<Self> {
        use sev_md::section_type as t;
        Some(match v {
            t::SNP_SEC_MEM => Self::SnpSecMem,
            t::SNP_SECRETS => Self::Secrets,
            t::CPUID => Self::Cpuid,
            t::SVSM_CAA => Self::SvsmCaa,
            t::SNP_KERNEL_HASHES => Self::KernelHashes,
            _ => return None,
        })
    }
    /// The u32 type field.
    pub fn code(self) -> u32 {
        use sev_md::section_type as t;
        match self {
            Self::SnpSecMem => t::SNP_SEC_MEM,
            Self::Secrets => t::SNP_SECRETS,
            Self::Cpuid => t::CPUID,
            Self::SvsmCaa => t::SVSM_CAA,
            Self::KernelHashes => t::SNP_KERNEL_HASHES,
        }
    }
    /// Name as in edk2.
    pub fn name(self) -> &'static str {
        match self {
            Self::SnpSecMem => "SNP_SEC_MEM",
            Self::Secrets => "SNP_SECRETS",
            Self::Cpuid => "CPUID",
            Self::SvsmCaa => "SVSM_CAA",
            Self::KernelHashes => "SNP_KERNEL_HASHES",
        }
    }
}

/// One `ASEV` section descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SevSection {
    /// Guest-physical address.
    pub gpa: u32,
    /// Size in bytes (page multiple).
    pub size: u32,
    /// Section type.
    pub kind: SevSectionType,
}

/// TDVF section types (TDVF Design Guide, "TDVF Metadata").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TdvfSectionType {
    /// Boot firmware volume: copied from the image.
    Bfv,
    /// Configuration firmware volume: copied from the image.
    Cfv,
    /// TD HOB page(s), written by the VMM.
    TdHob,
    /// Temporary memory, zero at launch.
    TempMem,
}

impl TdvfSectionType {
    /// Decodes the u32 type field.
    pub fn from_u32(v: u32) -> Option<Self> {
        use tdvf_md::section_type as t;
        Some(match v {
            t::BFV => Self::Bfv,
            t::CFV => Self::Cfv,
            t::TD_HOB => Self::TdHob,
            t::TEMP_MEM => Self::TempMem,
            _ => return None,
        })
    }
    /// The u32 type field.
    pub fn code(self) -> u32 {
        use tdvf_md::section_type as t;
        match self {
            Self::Bfv => t::BFV,
            Self::Cfv => t::CFV,
            Self::TdHob => t::TD_HOB,
            Self::TempMem => t::TEMP_MEM,
        }
    }
    /// Name as in the TDVF design guide.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bfv => "BFV",
            Self::Cfv => "CFV",
            Self::TdHob => "TD_HOB",
            Self::TempMem => "TEMP_MEM",
        }
    }
    /// Whether the section's bytes come from the image file.
    pub fn has_file_data(self) -> bool {
        matches!(self, Self::Bfv | Self::Cfv)
    }
}

/// One TDVF section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdvfSection {
    /// Offset of the section's data in the image file.
    pub data_offset: u32,
    /// Bytes of data in the file.
    pub raw_size: u32,
    /// Guest-physical address.
    pub gpa: u64,
    /// Size in guest memory (page multiple, ≥ raw size).
    pub mem_size: u64,
    /// Section type.
    pub kind: TdvfSectionType,
    /// Attribute bits ([`TDVF_ATTR_MR_EXTEND`], [`TDVF_ATTR_PAGE_AUG`]).
    pub attributes: u32,
}

impl TdvfSection {
    /// Whether the section is extended into MRTD.
    pub fn mr_extend(&self) -> bool {
        self.attributes & TDVF_ATTR_MR_EXTEND != 0
    }
    /// Whether the section is added after launch by TDH.MEM.PAGE.AUG.
    pub fn page_aug(&self) -> bool {
        self.attributes & TDVF_ATTR_PAGE_AUG != 0
    }
}

/// A guest-physical range declared in the table (hash table, secret block).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpaRange {
    /// Start.
    pub gpa: u32,
    /// Length.
    pub size: u32,
}

/// A parsed OVMF-format firmware image.
#[derive(Clone, PartialEq, Eq)]
pub struct Firmware {
    data: Vec<u8>,
    entries: Vec<TableEntry>,
    sev_sections: Option<Vec<SevSection>>,
    tdvf_sections: Option<Vec<TdvfSection>>,
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Firmware {
    /// Parses an image: the footer table, then the SEV and TDX metadata if present.
    pub fn parse(bytes: &[u8]) -> Result<Firmware, OvmfError> {
        let size = bytes.len();
        if size < 0x32 {
            return Err(OvmfError::TooSmall { size });
        }
        if !(size as u64).is_multiple_of(PAGE_SIZE) {
            return Err(OvmfError::NotPageMultiple { size });
        }
        if size as u64 >= FOUR_GIB {
            return Err(OvmfError::TooLarge { size });
        }
        let entries = parse_table(bytes)?;
        let mut fw = Firmware {
            data: bytes.to_vec(),
            entries,
            sev_sections: None,
            tdvf_sections: None,
        };
        for (g, name, need) in [
            (guid::SEV_ES_RESET_BLOCK, "SEV-ES reset block", 4),
            (guid::SEV_HASH_TABLE_RV, "SEV hash table", 8),
            (guid::SEV_SECRET_BLOCK, "SEV secret block", 8),
            (guid::SEV_METADATA, "SEV metadata", 4),
            (guid::TDX_METADATA_OFFSET, "TDX metadata", 4),
        ] {
            if let Some(d) = fw.entry(&g) {
                if d.len() < need {
                    return Err(OvmfError::EntryTooShort {
                        guid: g,
                        name,
                        len: d.len(),
                        need,
                    });
                }
            }
        }
        if let Some(d) = fw.entry(&guid::SEV_METADATA) {
            fw.sev_sections = Some(parse_sev(bytes, le32(d, 0))?);
        }
        if let Some(d) = fw.entry(&guid::TDX_METADATA_OFFSET) {
            fw.tdvf_sections = Some(parse_tdvf(bytes, le32(d, 0))?);
        }
        Ok(fw)
    }

    /// The whole image.
    pub fn data(&self) -> &[u8] {
        &self.data
    }
    /// Image size in bytes.
    pub fn len(&self) -> usize {
        self.data.len()
    }
    /// Whether the image is empty (never true for a parsed image).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
    /// Guest-physical address where the image is mapped: 4 GiB − size.
    pub fn load_gpa(&self) -> u64 {
        FOUR_GIB - self.data.len() as u64
    }
    /// All footer-table entries, in walk order (nearest the footer first).
    pub fn entries(&self) -> &[TableEntry] {
        &self.entries
    }
    /// Data of the entry with this GUID.
    pub fn entry(&self, g: &Guid) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.guid == *g)
            .map(|e| e.data.as_slice())
    }
    /// SEV metadata sections in table order, if the image carries an `ASEV` block.
    pub fn sev_sections(&self) -> Option<&[SevSection]> {
        self.sev_sections.as_deref()
    }
    /// The SEV-ES AP reset address (first u32 of the SEV-ES reset block).
    pub fn sev_es_reset_eip(&self) -> Option<u32> {
        self.entry(&guid::SEV_ES_RESET_BLOCK).map(|d| le32(d, 0))
    }
    /// Location of the SEV kernel-hashes table, if declared (GPA 0 means "not supported").
    pub fn sev_hash_table(&self) -> Option<GpaRange> {
        self.entry(&guid::SEV_HASH_TABLE_RV).map(|d| GpaRange {
            gpa: le32(d, 0),
            size: le32(d, 4),
        })
    }
    /// Location of the SEV (launch-secret) block, if declared.
    pub fn sev_secret_block(&self) -> Option<GpaRange> {
        self.entry(&guid::SEV_SECRET_BLOCK).map(|d| GpaRange {
            gpa: le32(d, 0),
            size: le32(d, 4),
        })
    }
    /// TDVF sections in table order, if the image carries a `TDVF` block.
    pub fn tdvf_sections(&self) -> Option<&[TdvfSection]> {
        self.tdvf_sections.as_deref()
    }

    /// A human-readable table of everything parsed (used by `pupa-image inspect`).
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

fn parse_table(b: &[u8]) -> Result<Vec<TableEntry>, OvmfError> {
    let n = b.len();
    let footer_at = n - 0x32;
    let found = Guid(b[n - 0x30..n - 0x20].try_into().expect("16 bytes"));
    if found != guid::OVMF_TABLE_FOOTER {
        return Err(OvmfError::NoFooter { found });
    }
    let len = usize::from(u16::from_le_bytes([b[footer_at], b[footer_at + 1]]));
    let max = n - 0x20;
    if len < ENTRY_HEADER || len > max {
        return Err(OvmfError::BadTableLength { len, max });
    }
    let start = n - 0x20 - len;
    let mut end = footer_at; // exclusive end of the remaining (unwalked) table bytes
    let mut entries: Vec<TableEntry> = Vec::new();
    while end - start >= ENTRY_HEADER {
        let hdr = end - ENTRY_HEADER;
        let elen = usize::from(u16::from_le_bytes([b[hdr], b[hdr + 1]]));
        let g = Guid(b[hdr + 2..end].try_into().expect("16 bytes"));
        let remaining = end - start;
        if elen < ENTRY_HEADER || elen > remaining {
            return Err(OvmfError::BadEntryLength {
                guid: g,
                offset: hdr,
                len: elen,
                remaining,
            });
        }
        if entries.iter().any(|e| e.guid == g) {
            return Err(OvmfError::DuplicateEntry(g));
        }
        let data_at = end - elen;
        entries.push(TableEntry {
            guid: g,
            data: b[data_at..hdr].to_vec(),
            offset: data_at,
        });
        end = data_at;
    }
    if end != start {
        return Err(OvmfError::TrailingBytes(end - start));
    }
    Ok(entries)
}

/// Locates a metadata block given its offset from the end of the file; returns its start.
fn locate(b: &[u8], what: &'static str, off: u32, len: u64) -> Result<usize, OvmfError> {
    let n = b.len() as u64;
    let off = u64::from(off);
    if off > n || off < len {
        return Err(OvmfError::OutOfFile {
            what,
            offset_from_end: off,
            len,
            size: b.len(),
        });
    }
    Ok((n - off) as usize)
}

/// Checks a metadata header's signature and version (1); returns (length, count).
fn check_header(
    what: &'static str,
    (signature, want): ([u8; 4], [u8; 4]),
    version: u32,
    length: u32,
    count: u32,
) -> Result<(u32, u32), OvmfError> {
    if signature != want {
        return Err(OvmfError::BadSignature {
            what,
            found: signature,
            want,
        });
    }
    if version != 1 {
        return Err(OvmfError::BadVersion { what, version });
    }
    Ok((length, count))
}

fn overlapping<T>(items: &[T], range: impl Fn(&T) -> (u64, u64)) -> Option<(usize, usize)> {
    for i in 0..items.len() {
        for j in i + 1..items.len() {
            let (a0, a1) = range(&items[i]);
            let (b0, b1) = range(&items[j]);
            if a0 < b1 && b0 < a1 {
                return Some((i, j));
            }
        }
    }
    None
}

/// `ASEV` block: OvmfSevMetadata.asm (`OvmfSevMetadata` / `OvmfSevMetadataSectionDesc`).
fn parse_sev(b: &[u8], off: u32) -> Result<Vec<SevSection>, OvmfError> {
    const WHAT: &str = "SEV metadata (ASEV)";
    const HDR: usize = size_of::<SevMetadataHeader>();
    const ITEM: u64 = size_of::<SevMetadataSection>() as u64;
    let at = locate(b, WHAT, off, HDR as u64)?;
    let out_of_file = |len| OvmfError::OutOfFile {
        what: WHAT,
        offset_from_end: u64::from(off),
        len,
        size: b.len(),
    };
    let (h, items) =
        SevMetadataHeader::ref_from_prefix(&b[at..]).map_err(|_| out_of_file(HDR as u64))?;
    let (length, count) = check_header(
        WHAT,
        (h.signature, sev_md::SIGNATURE),
        h.version.get(),
        h.size.get(),
        h.num_sections.get(),
    )?;
    let want = HDR as u64 + ITEM * u64::from(count);
    // edk2 sets Size to exactly the header plus descriptors.
    if u64::from(length) != want {
        return Err(OvmfError::BadBlockLength {
            what: WHAT,
            length,
            count,
            want,
        });
    }
    let (items, _) = <[SevMetadataSection]>::ref_from_prefix_with_elems(items, count as usize)
        .map_err(|_| out_of_file(want))?;
    if count == 0 {
        return Err(OvmfError::NoSections(WHAT));
    }
    let load_gpa = FOUR_GIB - b.len() as u64;
    let mut out = Vec::with_capacity(items.len());
    for (index, d) in items.iter().enumerate() {
        let (gpa, size, kind) = (d.base.get(), d.size.get(), d.kind.get());
        let kind =
            SevSectionType::from_u32(kind).ok_or(OvmfError::UnknownSevType { index, kind })?;
        let bad = |problem| OvmfError::BadSection {
            what: "SEV",
            index,
            gpa: u64::from(gpa),
            size: u64::from(size),
            problem,
        };
        if size == 0 {
            return Err(bad("empty"));
        }
        if u64::from(gpa) % PAGE_SIZE != 0 || u64::from(size) % PAGE_SIZE != 0 {
            return Err(bad("not 4 KiB aligned"));
        }
        if u64::from(gpa) + u64::from(size) > FOUR_GIB {
            return Err(bad("crossing 4 GiB"));
        }
        // sev-snp-measure measures one page for these whatever the size; QEMU hands the
        // whole range to the PSP. Only a one-page section is unambiguous.
        if matches!(kind, SevSectionType::Secrets | SevSectionType::Cpuid)
            && u64::from(size) != PAGE_SIZE
        {
            return Err(bad("a SECRETS/CPUID section that is not exactly one page"));
        }
        if u64::from(gpa) + u64::from(size) > load_gpa {
            return Err(OvmfError::OverlapsFirmware {
                index,
                gpa: u64::from(gpa),
                load_gpa,
            });
        }
        out.push(SevSection { gpa, size, kind });
    }
    if let Some((a, b)) = overlapping(&out, |s| {
        (u64::from(s.gpa), u64::from(s.gpa) + u64::from(s.size))
    }) {
        return Err(OvmfError::Overlap { what: "SEV", a, b });
    }
    Ok(out)
}

/// `TDVF` block: TDVF Design Guide "TDVF Metadata"; checks as QEMU `tdvf_parse_metadata`.
fn parse_tdvf(b: &[u8], off: u32) -> Result<Vec<TdvfSection>, OvmfError> {
    const WHAT: &str = "TDX metadata (TDVF)";
    const HDR: usize = size_of::<TdvfDescriptor>();
    const ITEM: u64 = size_of::<tdvf_md::TdvfSection>() as u64;
    let at = locate(b, WHAT, off, HDR as u64)?;
    let out_of_file = |len| OvmfError::OutOfFile {
        what: WHAT,
        offset_from_end: u64::from(off),
        len,
        size: b.len(),
    };
    let (h, items) =
        TdvfDescriptor::ref_from_prefix(&b[at..]).map_err(|_| out_of_file(HDR as u64))?;
    let (length, count) = check_header(
        WHAT,
        (h.signature, tdvf_md::SIGNATURE),
        h.version.get(),
        h.length.get(),
        h.number_of_section_entry.get(),
    )?;
    let want = HDR as u64 + ITEM * u64::from(count);
    if u64::from(length) != want {
        return Err(OvmfError::BadBlockLength {
            what: WHAT,
            length,
            count,
            want,
        });
    }
    let (items, _) = <[tdvf_md::TdvfSection]>::ref_from_prefix_with_elems(items, count as usize)
        .map_err(|_| out_of_file(want))?;
    if count == 0 {
        return Err(OvmfError::NoSections(WHAT));
    }
    let mut out = Vec::with_capacity(items.len());
    for (index, d) in items.iter().enumerate() {
        let kind_raw = d.kind.get();
        let kind = TdvfSectionType::from_u32(kind_raw).ok_or(OvmfError::UnknownTdvfType {
            index,
            kind: kind_raw,
        })?;
        let s = TdvfSection {
            data_offset: d.data_offset.get(),
            raw_size: d.raw_data_size.get(),
            gpa: d.memory_address.get(),
            mem_size: d.memory_data_size.get(),
            kind,
            attributes: d.attributes.get(),
        };
        let bad = |problem| OvmfError::BadSection {
            what: "TDVF",
            index,
            gpa: s.gpa,
            size: s.mem_size,
            problem,
        };
        let rule = |problem: String| OvmfError::BadTdvfSection { index, problem };
        if s.mem_size == 0 {
            return Err(bad("empty"));
        }
        if !s.gpa.is_multiple_of(PAGE_SIZE) || !s.mem_size.is_multiple_of(PAGE_SIZE) {
            return Err(bad("not 4 KiB aligned"));
        }
        if s.gpa
            .checked_add(s.mem_size)
            .is_none_or(|end| end > 1 << 52)
        {
            return Err(bad("beyond the 52-bit guest-physical space"));
        }
        if s.attributes & !(TDVF_ATTR_MR_EXTEND | TDVF_ATTR_PAGE_AUG) != 0 {
            return Err(rule(format!("unknown attribute bits {:#x}", s.attributes)));
        }
        if s.mr_extend() && s.page_aug() {
            return Err(rule(
                "MR.EXTEND and PAGE.AUG together (an AUGed page cannot be measured)".into(),
            ));
        }
        if u64::from(s.raw_size) > s.mem_size {
            return Err(rule(format!(
                "raw size {:#x} exceeds memory size {:#x}",
                s.raw_size, s.mem_size
            )));
        }
        if kind.has_file_data() {
            if s.raw_size == 0 {
                return Err(rule(format!("{} section with raw size 0", kind.name())));
            }
            if u64::from(s.data_offset) % PAGE_SIZE != 0 {
                return Err(rule(format!(
                    "data offset {:#x} is not 4 KiB aligned",
                    s.data_offset
                )));
            }
            // Whether data_offset + mem_size lies inside the file is checked where the bytes
            // are read (tdx::mrtd): truncated images (e.g. the last 4 KiB of an OVMF build, as
            // used in sev-snp-measure's fixtures) still parse for SNP and inspection.
        } else if s.raw_size != 0 {
            return Err(rule(format!(
                "{} section with raw size {:#x} (must be 0)",
                kind.name(),
                s.raw_size
            )));
        }
        out.push(s);
    }
    let total: u64 = out.iter().map(|s| s.mem_size).sum();
    if total > MAX_TDVF_MEMORY {
        return Err(OvmfError::TdvfTooLarge { total });
    }
    if let Some((a, b)) = overlapping(&out, |s| (s.gpa, s.gpa + s.mem_size)) {
        return Err(OvmfError::Overlap { what: "TDVF", a, b });
    }
    Ok(out)
}
