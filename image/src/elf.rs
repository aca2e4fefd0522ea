//! The guest ELF: its loadable segments (turned into the flat image) and its allocated sections
//! (checked against the metadata).

use object::elf::{FileHeader64, PT_LOAD, SHF_ALLOC, SHT_NOBITS};
use object::read::elf::{FileHeader, ProgramHeader, SectionHeader};
use object::LittleEndian as LE;

/// A section that occupies memory at run time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AllocSection {
    pub name: String,
    /// Run-time address.
    pub vma: u64,
    /// Load address (in ROM for initialised data copied to RAM; = vma for NOBITS).
    pub lma: u64,
    pub size: u64,
    /// NOBITS (.bss, stacks, heap): no bytes in the image.
    pub nobits: bool,
}

/// Errors reading the guest ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("guest ELF: {0}")]
    Parse(#[from] object::read::Error),
    #[error("guest ELF: segment at {paddr:#x} (+{size:#x}) lies outside the ROM [{rom_start:#x}, 4 GiB)")]
    SegmentOutsideRom {
        paddr: u64,
        size: u64,
        rom_start: u64,
    },
    #[error("guest ELF: a segment's file range is out of bounds")]
    Truncated,
}

/// The flat ROM image: the file bytes of every PT_LOAD segment at `p_paddr - rom_start`.
pub fn flatten(elf: &[u8], rom_size: u64) -> Result<Vec<u8>, ElfError> {
    let rom_start = (1u64 << 32) - rom_size;
    let hdr = FileHeader64::<LE>::parse(elf)?;
    let e = hdr.endian()?;
    let mut image = vec![0u8; rom_size as usize];
    for ph in hdr.program_headers(e, elf)? {
        if ph.p_type(e) != PT_LOAD || ph.p_filesz(e) == 0 {
            continue;
        }
        let (paddr, size) = (ph.p_paddr(e), ph.p_filesz(e));
        if paddr < rom_start || paddr.checked_add(size).is_none_or(|end| end > 1 << 32) {
            return Err(ElfError::SegmentOutsideRom {
                paddr,
                size,
                rom_start,
            });
        }
        let bytes = ph.data(e, elf).map_err(|()| ElfError::Truncated)?;
        let off = (paddr - rom_start) as usize;
        image[off..off + bytes.len()].copy_from_slice(bytes);
    }
    Ok(image)
}

/// Every SHF_ALLOC section with its run-time and load addresses.
pub fn alloc_sections(elf: &[u8]) -> Result<Vec<AllocSection>, ElfError> {
    let hdr = FileHeader64::<LE>::parse(elf)?;
    let e = hdr.endian()?;
    let sections = hdr.sections(e, elf)?;
    let segments = hdr.program_headers(e, elf)?;
    let mut out = Vec::new();
    for sh in sections.iter() {
        if sh.sh_flags(e) & u64::from(SHF_ALLOC) == 0 || sh.sh_size(e) == 0 {
            continue;
        }
        let name = String::from_utf8_lossy(sections.section_name(e, sh)?).into_owned();
        let vma = sh.sh_addr(e);
        let nobits = sh.sh_type(e) == SHT_NOBITS;
        // LMA: from the PT_LOAD segment that holds this section's file bytes.
        let lma = segments
            .iter()
            .find(|ph| {
                ph.p_type(e) == PT_LOAD
                    && !nobits
                    && sh.sh_offset(e) >= ph.p_offset(e)
                    && sh.sh_offset(e) < ph.p_offset(e) + ph.p_filesz(e)
            })
            .map(|ph| ph.p_paddr(e) + (sh.sh_offset(e) - ph.p_offset(e)))
            .unwrap_or(vma);
        out.push(AllocSection {
            name,
            vma,
            lma,
            size: sh.sh_size(e),
            nobits,
        });
    }
    Ok(out)
}
