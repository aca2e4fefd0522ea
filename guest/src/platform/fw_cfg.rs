//! QEMU's firmware configuration device, legacy I/O interface (QEMU docs/specs/fw_cfg.rst):
//! selector port 0x510 (16-bit), data port 0x511 (8-bit), signature "QEMU" at key 0, the file
//! directory at key 0x19 (big-endian `{u32 size, u16 select, u16 reserved, char name[56]}`).

use alloc::vec::Vec;

use crate::arch::io::{inb, outw};

const PORT_SELECTOR: u16 = 0x510;
const PORT_DATA: u16 = 0x511;
const KEY_SIGNATURE: u16 = 0x0000;
const KEY_FILE_DIR: u16 = 0x0019;
/// Files bigger than this are refused (the host controls fw_cfg; the guest bounds what it takes).
const MAX_FILE: u32 = 1 << 20;

/// Why fw_cfg could not give a file.
#[derive(Debug)]
pub enum FwCfgError {
    /// No "QEMU" signature: not QEMU, or the device is absent.
    NotPresent,
    NotFound,
    TooLarge(u32),
}

impl core::fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FwCfgError::NotPresent => write!(f, "no fw_cfg device (no \"QEMU\" signature)"),
            FwCfgError::NotFound => write!(f, "file not found"),
            FwCfgError::TooLarge(n) => write!(f, "file of {n} bytes exceeds the 1 MiB limit"),
        }
    }
}

fn select(key: u16) {
    // SAFETY: writing the fw_cfg selector only chooses which item the data port reads.
    unsafe { outw(PORT_SELECTOR, key) }
}

fn read(buf: &mut [u8]) {
    for b in buf {
        // SAFETY: reading the fw_cfg data port returns the next byte of the selected item.
        *b = unsafe { inb(PORT_DATA) };
    }
}

/// Whether the device answers with its signature.
pub fn present() -> bool {
    select(KEY_SIGNATURE);
    let mut sig = [0u8; 4];
    read(&mut sig);
    &sig == b"QEMU"
}

/// Read a named file (e.g. `etc/e820`).
pub fn read_file(name: &str) -> Result<Vec<u8>, FwCfgError> {
    let (key, size) = find(name)?;
    if size > MAX_FILE {
        return Err(FwCfgError::TooLarge(size));
    }
    select(key);
    let mut out = alloc::vec![0u8; size as usize];
    read(&mut out);
    Ok(out)
}

/// Selects a named file and gives `f` a reader of its bytes, in order, and its size: for a
/// caller that needs only the start of a large file (`madt::find_table`). Reading past the
/// end gives zeros (QEMU's data port does).
pub fn stream_file<R>(
    name: &str,
    f: impl FnOnce(&mut dyn FnMut(&mut [u8]), usize) -> R,
) -> Result<R, FwCfgError> {
    let (key, size) = find(name)?;
    select(key);
    Ok(f(&mut |buf| read(buf), size as usize))
}

/// The selector key and size of a named file.
fn find(name: &str) -> Result<(u16, u32), FwCfgError> {
    if !present() {
        return Err(FwCfgError::NotPresent);
    }
    select(KEY_FILE_DIR);
    let mut n = [0u8; 4];
    read(&mut n);
    let count = u32::from_be_bytes(n).min(4096);
    for _ in 0..count {
        let mut e = [0u8; 64];
        read(&mut e);
        let size = u32::from_be_bytes([e[0], e[1], e[2], e[3]]);
        let key = u16::from_be_bytes([e[4], e[5]]);
        let fname = &e[8..];
        let len = fname.iter().position(|&c| c == 0).unwrap_or(fname.len());
        if &fname[..len] == name.as_bytes() {
            return Ok((key, size));
        }
    }
    Err(FwCfgError::NotFound)
}

/// The legacy items QEMU fills for `-kernel`/`-initrd`/`-append` (QEMU `include/standard-headers/
/// linux/qemu_fw_cfg.h`; `hw/i386/x86.c::x86_load_linux`): sizes are little-endian u32.
pub mod key {
    /// `FW_CFG_NB_CPUS`: the boot vCPUs (`-smp`), u16.
    pub const NB_CPUS: u16 = 0x05;
    pub const KERNEL_SIZE: u16 = 0x08;
    pub const INITRD_SIZE: u16 = 0x0B;
    pub const KERNEL_DATA: u16 = 0x11;
    pub const INITRD_DATA: u16 = 0x12;
    pub const CMDLINE_SIZE: u16 = 0x14;
    pub const CMDLINE_DATA: u16 = 0x15;
    pub const SETUP_SIZE: u16 = 0x17;
    pub const SETUP_DATA: u16 = 0x18;
}

/// A little-endian u32 item (a size), or `NotPresent` without the device.
pub fn item_u32(key: u16) -> Result<u32, FwCfgError> {
    if !present() {
        return Err(FwCfgError::NotPresent);
    }
    select(key);
    let mut b = [0u8; 4];
    read(&mut b);
    Ok(u32::from_le_bytes(b))
}

/// Reads the first `buf.len()` bytes of item `key` into `buf` (the caller sized it from the
/// item's size item, bounded).
pub fn read_item_into(key: u16, buf: &mut [u8]) {
    select(key);
    read(buf);
}
