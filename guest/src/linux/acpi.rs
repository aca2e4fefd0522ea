//! QEMU's ACPI tables for a Linux payload: the fw_cfg file `etc/table-loader` is a script of
//! 128-byte commands (QEMU `hw/acpi/bios-linker-loader.c`, the "BIOS linker/loader" interface
//! SeaBIOS and OVMF implement) that says which fw_cfg files to load (`etc/acpi/tables`,
//! `etc/acpi/rsdp`, ...), which pointers inside them to patch with the address a file was
//! loaded at, and which checksums to recompute afterwards.
//!
//! The script and the files are host input: every name, offset, size and length is checked,
//! the number and size of the files are bounded, and a failure is a typed [`AcpiError`] (the
//! firmware then boots Linux without ACPI). The firmware places all files in one region that
//! Linux's E820 table reserves; Linux finds the RSDP through `boot_params.acpi_rsdp_addr`, so
//! the RSDP's FSEG zone request is not needed. WRITE_POINTER (which writes an address back to
//! QEMU, for vmgenid and vmcoreinfo) needs the fw_cfg DMA interface pupa does not drive: such
//! commands are counted and skipped.
//!
//! Written by hand: no maintained `no_std` crate implements the loader interface.

use alloc::string::String;
use alloc::vec::Vec;
use core::mem::size_of;
use zerocopy::{FromBytes, Immutable, KnownLayout};

/// Bytes of one loader command (`BiosLinkerLoaderEntry`).
pub const ENTRY_LEN: usize = 128;
/// Bytes of a file name field (`BIOS_LINKER_LOADER_FILESZ`), NUL-terminated.
pub const FILESZ: usize = 56;
/// At most this many files are loaded.
pub const MAX_FILES: usize = 16;
/// At most this many bytes in all files together.
pub const MAX_TOTAL: usize = 4 << 20;
/// The file whose address Linux gets as the RSDP.
pub const RSDP_FILE: &str = "etc/acpi/rsdp";

const CMD_ALLOCATE: u32 = 1;
const CMD_ADD_POINTER: u32 = 2;
const CMD_ADD_CHECKSUM: u32 = 3;
const CMD_WRITE_POINTER: u32 = 4;

/// `BIOS_LINKER_LOADER_COMMAND_ALLOCATE`'s body.
#[derive(FromBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct Allocate {
    file: [u8; FILESZ],
    align: u32,
    zone: u8,
}

/// `BIOS_LINKER_LOADER_COMMAND_ADD_POINTER`'s body.
#[derive(FromBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct AddPointer {
    dest_file: [u8; FILESZ],
    src_file: [u8; FILESZ],
    offset: u32,
    size: u8,
}

/// `BIOS_LINKER_LOADER_COMMAND_ADD_CHECKSUM`'s body.
#[derive(FromBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
struct AddChecksum {
    file: [u8; FILESZ],
    offset: u32,
    start: u32,
    length: u32,
}

const _: () = {
    assert!(size_of::<Allocate>() == 61);
    assert!(size_of::<AddPointer>() == 117);
    assert!(size_of::<AddChecksum>() == 68);
};

/// Why QEMU's ACPI tables cannot be installed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AcpiError {
    #[error("table-loader of {0} bytes is not a whole number of 128-byte commands")]
    LoaderLength(usize),
    #[error("command {0}: file name not NUL-terminated or not UTF-8")]
    Name(usize),
    #[error("command {0}: alignment {1} is not a power of two up to 4096")]
    Align(usize, u32),
    #[error("command {0}: file {1:?} allocated twice")]
    Duplicate(usize, String),
    #[error("more than {MAX_FILES} files, or more than {MAX_TOTAL} bytes in all")]
    TooMuch,
    #[error("command {0}: file {1:?} was not allocated first")]
    Unallocated(usize, String),
    #[error("command {0}: offset, size or length out of the file's bounds")]
    Bounds(usize),
    #[error("command {0}: the patched pointer does not fit its {1} bytes")]
    PointerOverflow(usize, u8),
    #[error("fw_cfg file {0:?}: {1}")]
    File(String, String),
    #[error("no {RSDP_FILE} among the loaded files")]
    NoRsdp,
}

/// One loaded file: its bytes (patched in place by [`Tables::link`]) and where it goes,
/// relative to the region's start.
pub struct Blob {
    pub name: String,
    pub bytes: Vec<u8>,
    pub offset: usize,
}

/// QEMU's ACPI files, loaded, laid out in one region and (after [`Tables::link`]) patched.
pub struct Tables {
    pub blobs: Vec<Blob>,
    /// Bytes of the region (every file at its aligned offset).
    pub len: usize,
    /// WRITE_POINTER and unknown commands skipped.
    pub skipped: usize,
    commands: Vec<(usize, u32, [u8; ENTRY_LEN - 4])>,
}

fn name(i: usize, field: &[u8; FILESZ]) -> Result<String, AcpiError> {
    let len = field
        .iter()
        .position(|&b| b == 0)
        .ok_or(AcpiError::Name(i))?;
    core::str::from_utf8(&field[..len])
        .map(String::from)
        .map_err(|_| AcpiError::Name(i))
}

impl Tables {
    /// Parses the script and loads every ALLOCATE'd file through `read` (the fw_cfg file
    /// reader), laying them out in order, each at its alignment.
    pub fn load<E: core::fmt::Display>(
        loader: &[u8],
        mut read: impl FnMut(&str) -> Result<Vec<u8>, E>,
    ) -> Result<Self, AcpiError> {
        if !loader.len().is_multiple_of(ENTRY_LEN) {
            return Err(AcpiError::LoaderLength(loader.len()));
        }
        let mut t = Tables {
            blobs: Vec::new(),
            len: 0,
            skipped: 0,
            commands: Vec::new(),
        };
        for (i, e) in loader.chunks_exact(ENTRY_LEN).enumerate() {
            let cmd = u32::from_le_bytes([e[0], e[1], e[2], e[3]]);
            let mut body = [0u8; ENTRY_LEN - 4];
            body.copy_from_slice(&e[4..]);
            match cmd {
                CMD_ALLOCATE => t.allocate(i, &body, &mut read)?,
                CMD_ADD_POINTER | CMD_ADD_CHECKSUM => t.commands.push((i, cmd, body)),
                CMD_WRITE_POINTER => t.skipped += 1,
                0 => {} // padding
                _ => t.skipped += 1,
            }
        }
        if t.blob(RSDP_FILE).is_none() {
            return Err(AcpiError::NoRsdp);
        }
        Ok(t)
    }

    fn allocate<E: core::fmt::Display>(
        &mut self,
        i: usize,
        body: &[u8; ENTRY_LEN - 4],
        read: &mut impl FnMut(&str) -> Result<Vec<u8>, E>,
    ) -> Result<(), AcpiError> {
        let (a, _) = Allocate::read_from_prefix(body).map_err(|_| AcpiError::Bounds(i))?;
        let file = name(i, &a.file)?;
        let align = a.align;
        if !align.is_power_of_two() || align > 4096 {
            return Err(AcpiError::Align(i, align));
        }
        if self.blob(&file).is_some() {
            return Err(AcpiError::Duplicate(i, file));
        }
        if self.blobs.len() == MAX_FILES {
            return Err(AcpiError::TooMuch);
        }
        let bytes =
            read(&file).map_err(|e| AcpiError::File(file.clone(), alloc::format!("{e}")))?;
        let offset = self.len.next_multiple_of(align as usize);
        let end = offset + bytes.len();
        if end > MAX_TOTAL {
            return Err(AcpiError::TooMuch);
        }
        self.len = end;
        self.blobs.push(Blob {
            name: file,
            bytes,
            offset,
        });
        Ok(())
    }

    fn blob(&self, name: &str) -> Option<usize> {
        self.blobs.iter().position(|b| b.name == name)
    }

    fn file(&self, i: usize, field: &[u8; FILESZ]) -> Result<usize, AcpiError> {
        let n = name(i, field)?;
        self.blob(&n).ok_or(AcpiError::Unallocated(i, n))
    }

    /// Applies ADD_POINTER and ADD_CHECKSUM in script order, for the region placed at `base`
    /// (4 KiB aligned).
    pub fn link(&mut self, base: u64) -> Result<(), AcpiError> {
        let commands = core::mem::take(&mut self.commands);
        for (i, cmd, body) in &commands {
            match *cmd {
                CMD_ADD_POINTER => self.add_pointer(*i, body, base)?,
                _ => self.add_checksum(*i, body)?,
            }
        }
        Ok(())
    }

    fn add_pointer(&mut self, i: usize, body: &[u8; 124], base: u64) -> Result<(), AcpiError> {
        let (p, _) = AddPointer::read_from_prefix(body).map_err(|_| AcpiError::Bounds(i))?;
        let (dest, src) = (self.file(i, &p.dest_file)?, self.file(i, &p.src_file)?);
        let size = p.size;
        if !matches!(size, 1 | 2 | 4 | 8) {
            return Err(AcpiError::Bounds(i));
        }
        let at = p.offset as usize;
        let field = self.blobs[dest]
            .bytes
            .get_mut(at..at + size as usize)
            .ok_or(AcpiError::Bounds(i))?;
        let mut v = [0u8; 8];
        v[..size as usize].copy_from_slice(field);
        // the field holds an offset into the source file; it becomes an address
        let addr = u64::from_le_bytes(v)
            .checked_add(base + self.blobs[src].offset as u64)
            .ok_or(AcpiError::PointerOverflow(i, size))?;
        if size < 8 && addr >> (8 * size as u32) != 0 {
            return Err(AcpiError::PointerOverflow(i, size));
        }
        let field = &mut self.blobs[dest].bytes[at..at + size as usize];
        field.copy_from_slice(&addr.to_le_bytes()[..size as usize]);
        Ok(())
    }

    fn add_checksum(&mut self, i: usize, body: &[u8; 124]) -> Result<(), AcpiError> {
        let (c, _) = AddChecksum::read_from_prefix(body).map_err(|_| AcpiError::Bounds(i))?;
        let f = self.file(i, &c.file)?;
        let bytes = &mut self.blobs[f].bytes;
        let (off, start, len) = (c.offset as usize, c.start as usize, c.length as usize);
        let end = start.checked_add(len).ok_or(AcpiError::Bounds(i))?;
        if off >= bytes.len() || end > bytes.len() {
            return Err(AcpiError::Bounds(i));
        }
        bytes[off] = 0;
        let sum = bytes[start..end]
            .iter()
            .fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[off] = 0u8.wrapping_sub(sum);
        Ok(())
    }

    /// The RSDP's offset in the region.
    pub fn rsdp_offset(&self) -> usize {
        self.blob(RSDP_FILE).map_or(0, |i| self.blobs[i].offset)
    }
}

#[cfg(test)]
#[path = "acpi_tests.rs"]
mod tests;
