//! Errors of the OVMF parser.

use crate::guid::{self, Guid};

/// What is wrong with a firmware image.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OvmfError {
    /// Too small to hold the footer table.
    #[error("firmware is {size} bytes: too small to hold an OVMF footer table")]
    TooSmall {
        /// File size.
        size: usize,
    },
    /// The size is not a whole number of 4 KiB pages.
    #[error("firmware size {size:#x} is not a multiple of 4 KiB")]
    NotPageMultiple {
        /// File size.
        size: usize,
    },
    /// The image would not fit below 4 GiB.
    #[error("firmware size {size:#x} does not fit below 4 GiB")]
    TooLarge {
        /// File size.
        size: usize,
    },
    /// No footer GUID at end − 0x30.
    #[error(
        "no OVMF table footer: found GUID {found} at end-0x30, want {}",
        guid::OVMF_TABLE_FOOTER
    )]
    NoFooter {
        /// What sits where the footer GUID should be.
        found: Guid,
    },
    /// The table length in the footer is impossible.
    #[error("OVMF table length {len} is invalid (must be 18..={max})")]
    BadTableLength {
        /// Declared length.
        len: usize,
        /// Largest length that fits in the file.
        max: usize,
    },
    /// An entry's length is smaller than its header or runs past the table start.
    #[error("OVMF table entry {guid} at file offset {offset:#x} has length {len}, but only {remaining} bytes of table remain (minimum 18)")]
    BadEntryLength {
        /// Entry GUID.
        guid: Guid,
        /// File offset of the entry's length field.
        offset: usize,
        /// Declared length.
        len: usize,
        /// Table bytes left before this entry's end.
        remaining: usize,
    },
    /// Bytes left at the start of the table that do not form an entry.
    #[error("OVMF table has {0} stray bytes before its first entry")]
    TrailingBytes(usize),
    /// The same GUID appears twice (QEMU and sev-snp-measure would pick different copies).
    #[error("OVMF table has two entries with GUID {0}")]
    DuplicateEntry(Guid),
    /// An entry's data is shorter than its format needs.
    #[error("OVMF table entry {guid} ({name}) has {len} data bytes, needs at least {need}")]
    EntryTooShort {
        /// Entry GUID.
        guid: Guid,
        /// Its name.
        name: &'static str,
        /// Data length.
        len: usize,
        /// Needed.
        need: usize,
    },
    /// A metadata block lies (partly) outside the file.
    #[error("{what} block at offset-from-end {offset_from_end:#x} (length {len:#x}) lies outside the {size:#x}-byte file")]
    OutOfFile {
        /// Which block.
        what: &'static str,
        /// Offset from the end of the image, as stored.
        offset_from_end: u64,
        /// Block length needed.
        len: u64,
        /// File size.
        size: usize,
    },
    /// Wrong 4-byte signature.
    #[error("{what} block has signature {found:?}, want {want:?}")]
    BadSignature {
        /// Which block.
        what: &'static str,
        /// Found.
        found: [u8; 4],
        /// Wanted.
        want: [u8; 4],
    },
    /// Unsupported version.
    #[error("{what} block has version {version}, only 1 is defined")]
    BadVersion {
        /// Which block.
        what: &'static str,
        /// Found version.
        version: u32,
    },
    /// The block's length field disagrees with its section count.
    #[error("{what} block length {length:#x} does not match {count} sections (want {want:#x})")]
    BadBlockLength {
        /// Which block.
        what: &'static str,
        /// Declared length.
        length: u32,
        /// Declared section count.
        count: u32,
        /// Length the count implies.
        want: u64,
    },
    /// A metadata block declares no sections.
    #[error("{0} block declares no sections")]
    NoSections(&'static str),
    /// Unknown SEV section type.
    #[error("SEV metadata section {index} has unknown type {kind:#x}")]
    UnknownSevType {
        /// Section index.
        index: usize,
        /// Type value.
        kind: u32,
    },
    /// Unknown TDVF section type.
    #[error("TDVF section {index} has unknown type {kind}")]
    UnknownTdvfType {
        /// Section index.
        index: usize,
        /// Type value.
        kind: u32,
    },
    /// A section is empty, not page-aligned, or crosses 4 GiB (SEV) / wraps (TDX).
    #[error("{what} section {index} (gpa {gpa:#x}, size {size:#x}) is {problem}")]
    BadSection {
        /// `SEV` or `TDVF`.
        what: &'static str,
        /// Section index.
        index: usize,
        /// Guest-physical start.
        gpa: u64,
        /// Size in guest memory.
        size: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// Two sections claim the same guest memory.
    #[error("{what} sections {a} and {b} overlap in guest memory")]
    Overlap {
        /// `SEV` or `TDVF`.
        what: &'static str,
        /// First section index.
        a: usize,
        /// Second section index.
        b: usize,
    },
    /// A SEV section overlaps the firmware image itself (mapped below 4 GiB).
    #[error(
        "SEV section {index} (gpa {gpa:#x}) overlaps the firmware image at {load_gpa:#x}..4GiB"
    )]
    OverlapsFirmware {
        /// Section index.
        index: usize,
        /// Its GPA.
        gpa: u64,
        /// Where the image is mapped.
        load_gpa: u64,
    },
    /// A TDVF section violates a rule of the TDVF format.
    #[error("TDVF section {index}: {problem}")]
    BadTdvfSection {
        /// Section index.
        index: usize,
        /// What is wrong.
        problem: String,
    },
    /// The TDVF sections declare implausibly much memory.
    #[error("TDVF sections declare {total:#x} bytes of guest memory in total (more than the {:#x} this tool accepts)", super::MAX_TDVF_MEMORY)]
    TdvfTooLarge {
        /// Sum of the sections' memory sizes.
        total: u64,
    },
}
