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
    #[error("the RSDP's RSDT/XSDT are malformed or outside the loaded files")]
    Root,
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

    /// The bytes of the linked region (placed at `base`) from address `addr` to the end of
    /// the file holding it.
    fn at(&self, base: u64, addr: u64) -> Option<&[u8]> {
        let off = usize::try_from(addr.checked_sub(base)?).ok()?;
        let b = self
            .blobs
            .iter()
            .find(|b| b.offset <= off && off < b.offset + b.bytes.len())?;
        Some(&b.bytes[off - b.offset..])
    }

    /// Adds the table at `table` to the root tables: returns a copy of the RSDT (and, for an
    /// ACPI 2.0+ RSDP with an XSDT, of the XSDT) with one more entry, length and checksum
    /// fixed, for the caller to place at `rsdt_at` (and `xsdt_at`), and points the RSDP (in
    /// its blob: copy it into place again) at them, its checksums fixed (ACPI 6.5 §5.2.5.3,
    /// §5.2.7, §5.2.8). Call after [`Tables::link`] with the same `base`.
    pub fn add_root_entry(
        &mut self,
        base: u64,
        table: u64,
        rsdt_at: u32,
        xsdt_at: u64,
    ) -> Result<RootTables, AcpiError> {
        let r = self.blob(RSDP_FILE).ok_or(AcpiError::NoRsdp)?;
        let rsdp = &self.blobs[r].bytes;
        let revision = *rsdp.get(15).ok_or(AcpiError::Root)?;
        let rsdt_addr = rd32(rsdp, 16)?;
        let xsdt_addr = match revision {
            0 => 0,
            _ => u64::from(rd32(rsdp, 24)?) | u64::from(rd32(rsdp, 28)?) << 32,
        };
        let entry = u32::try_from(table).map_err(|_| AcpiError::Root)?;
        let rsdt = self.extended_sdt(base, u64::from(rsdt_addr), &entry.to_le_bytes())?;
        let xsdt = match xsdt_addr {
            0 => None,
            a => Some(self.extended_sdt(base, a, &table.to_le_bytes())?),
        };
        let rsdp = &mut self.blobs[r].bytes;
        rsdp[16..20].copy_from_slice(&rsdt_at.to_le_bytes());
        checksum(rsdp, 8, 20).ok_or(AcpiError::Root)?;
        if revision != 0 {
            if xsdt.is_some() {
                rsdp.get_mut(24..32)
                    .ok_or(AcpiError::Root)?
                    .copy_from_slice(&xsdt_at.to_le_bytes());
            }
            let len = rd32(rsdp, 20)? as usize;
            checksum(rsdp, 32, len).ok_or(AcpiError::Root)?;
        }
        Ok(RootTables { rsdt, xsdt })
    }

    /// A copy of the RSDT/XSDT at `addr` with `entry` appended.
    fn extended_sdt(&self, base: u64, addr: u64, entry: &[u8]) -> Result<Vec<u8>, AcpiError> {
        let bytes = self.at(base, addr).ok_or(AcpiError::Root)?;
        let len = bytes
            .get(4..8)
            .map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]) as usize)
            .ok_or(AcpiError::Root)?;
        if len < SDT_HEADER_LEN
            || len > bytes.len()
            || !(len - SDT_HEADER_LEN).is_multiple_of(entry.len())
        {
            return Err(AcpiError::Root);
        }
        let mut sdt = Vec::with_capacity(len + entry.len());
        sdt.extend_from_slice(&bytes[..len]);
        sdt.extend_from_slice(entry);
        let new_len = sdt.len() as u32;
        sdt[4..8].copy_from_slice(&new_len.to_le_bytes());
        checksum(&mut sdt, 9, new_len as usize).ok_or(AcpiError::Root)?;
        Ok(sdt)
    }
}

/// The little-endian u32 at `o`.
fn rd32(b: &[u8], o: usize) -> Result<u32, AcpiError> {
    let v = b.get(o..o + 4).ok_or(AcpiError::Root)?;
    Ok(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
}

/// Bytes of a system description table's header (ACPI 6.5 §5.2.6).
pub const SDT_HEADER_LEN: usize = 36;

/// Sets `b[at]` so that `b[..len]` sums to zero; `None` when out of bounds.
fn checksum(b: &mut [u8], at: usize, len: usize) -> Option<()> {
    if at >= len || len > b.len() {
        return None;
    }
    b[at] = 0;
    let sum = b[..len].iter().fold(0u8, |s, &x| s.wrapping_add(x));
    b[at] = 0u8.wrapping_sub(sum);
    Some(())
}

/// The root tables [`Tables::add_root_entry`] made.
pub struct RootTables {
    pub rsdt: Vec<u8>,
    pub xsdt: Option<Vec<u8>>,
}

/// `CC_TYPE` of the CCEL table for Intel TDX.
pub const CCEL_CC_TYPE_TDX: u8 = 2;

/// The CC Event Log table (ACPI 6.5 §5.2.34, "CCEL"): where a TD's TCG event log of its RTMR
/// measurements lies (Linux exposes the area as `/sys/firmware/acpi/tables/data/CCEL`).
pub fn ccel_table(lasa: u64, laml: u64) -> [u8; CCEL_LEN] {
    let mut t = [0u8; CCEL_LEN];
    t[0..4].copy_from_slice(b"CCEL");
    t[4..8].copy_from_slice(&(CCEL_LEN as u32).to_le_bytes());
    t[8] = 1; // revision
    t[10..16].copy_from_slice(b"PUPA  ");
    t[16..24].copy_from_slice(b"PUPAFW  ");
    t[24..28].copy_from_slice(&1u32.to_le_bytes());
    t[28..32].copy_from_slice(b"PUPA");
    t[32..36].copy_from_slice(&1u32.to_le_bytes());
    t[36] = CCEL_CC_TYPE_TDX;
    t[40..48].copy_from_slice(&laml.to_le_bytes());
    t[48..56].copy_from_slice(&lasa.to_le_bytes());
    let _ = checksum(&mut t, 9, CCEL_LEN);
    t
}

/// Bytes of the CCEL table.
pub const CCEL_LEN: usize = 56;

#[cfg(test)]
#[path = "acpi_tests.rs"]
mod tests;
