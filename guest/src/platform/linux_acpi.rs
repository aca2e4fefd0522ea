//! QEMU's ACPI tables for a Linux payload, installed in memory (the loader script's logic is
//! `pupa_guest::linux::acpi`, host-tested; this file reads fw_cfg, places the region and keeps
//! the list of ranges Linux's E820 table must reserve).

use alloc::vec::Vec;

use pupa_guest::linux::acpi::{self, AcpiError, Tables};

use super::{fw_cfg, pci};
use crate::println;

/// A zeroed, leaked, page-aligned heap buffer of `len` bytes rounded up to whole pages (the
/// firmware never frees what it hands to Linux).
pub fn leak_pages(len: usize) -> &'static mut [u8] {
    let len = len.next_multiple_of(4096);
    let buf = alloc::vec![0u8; len + 4096].leak();
    let off = buf.as_ptr().align_offset(4096).min(4096);
    &mut buf[off..off + len]
}

fn range(b: &[u8]) -> (u64, u64) {
    let s = b.as_ptr() as u64;
    (s, s + b.len() as u64)
}

/// The installed tables.
pub struct LinuxAcpi {
    tables: Tables,
    region: &'static mut [u8],
    /// Where the RSDP is (for `boot_params.acpi_rsdp_addr`).
    pub rsdp: u64,
    /// Every range holding tables or data they point to: reserved in Linux's E820 table.
    pub reserved: Vec<(u64, u64)>,
}

impl LinuxAcpi {
    /// Places and enables the ACPI PM block (QEMU builds the FADT from it), then runs QEMU's
    /// loader script. `None` (and one line saying why) without tables or with a malformed
    /// script: host input, and Linux boots without ACPI on one vCPU.
    pub fn install() -> Option<Self> {
        if !pci::enable_acpi_pm() {
            println!("pupa: linux: no ICH9 LPC bridge: the ACPI PM block stays where QEMU put it");
        }
        let loader = match fw_cfg::read_file("etc/table-loader") {
            Ok(l) => l,
            Err(e) => {
                println!("pupa: linux: no ACPI tables (etc/table-loader: {e})");
                return None;
            }
        };
        match Self::load(&loader) {
            Ok(me) => Some(me),
            Err(e) => {
                println!("pupa: linux: no ACPI tables ({e})");
                None
            }
        }
    }

    fn load(loader: &[u8]) -> Result<Self, AcpiError> {
        let mut tables = Tables::load(loader, fw_cfg::read_file)?;
        let region = leak_pages(tables.len);
        let base = region.as_ptr() as u64;
        tables.link(base)?;
        for b in &tables.blobs {
            region[b.offset..b.offset + b.bytes.len()].copy_from_slice(&b.bytes);
        }
        let rsdp = base + tables.rsdp_offset() as u64;
        println!(
            "pupa: linux ACPI tables: {} files, {} bytes at {base:#x}, RSDP at {rsdp:#x} ({} commands skipped)",
            tables.blobs.len(),
            tables.len,
            tables.skipped
        );
        let reserved = alloc::vec![range(region)];
        Ok(LinuxAcpi {
            tables,
            region,
            rsdp,
            reserved,
        })
    }

    /// The loaded files (names and bytes, linked), for a TEE that measures them.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.tables
            .blobs
            .iter()
            .map(|b| (b.name.as_str(), b.bytes.as_slice()))
    }

    /// Leaks `len` bytes of page-aligned memory that Linux's E820 table will reserve (a data
    /// area a table points to).
    pub fn reserve(&mut self, len: usize) -> &'static mut [u8] {
        let area = leak_pages(len);
        self.reserved.push(range(area));
        area
    }

    /// Adds `table` (a complete ACPI table, checksum set) to the RSDT/XSDT: the table and the
    /// extended root tables go into a new reserved area, the RSDP is pointed at them.
    pub fn add_table(&mut self, table: &[u8]) -> Result<(), AcpiError> {
        let base = self.region.as_ptr() as u64;
        let r = self.rsdp - base;
        // room for the table, the RSDT and the XSDT, each 64-byte aligned
        let room = |n: usize| n.next_multiple_of(64);
        let sdt_max = self.tables.len; // a root table lies inside the loaded files
        let area = self.reserve(room(table.len()) + 2 * room(sdt_max + 8));
        let at = area.as_ptr() as u64;
        let rsdt_at = at + room(table.len()) as u64;
        let xsdt_at = rsdt_at + room(sdt_max + 8) as u64;
        let rsdt_at32 = u32::try_from(rsdt_at).map_err(|_| AcpiError::Root)?;
        let roots = self.tables.add_root_entry(base, at, rsdt_at32, xsdt_at)?;
        area[..table.len()].copy_from_slice(table);
        let o = (rsdt_at - at) as usize;
        area[o..o + roots.rsdt.len()].copy_from_slice(&roots.rsdt);
        if let Some(x) = &roots.xsdt {
            let o = (xsdt_at - at) as usize;
            area[o..o + x.len()].copy_from_slice(x);
        }
        // the RSDP changed in its blob: copy it into place again
        for b in self.tables.blobs.iter().filter(|b| b.offset as u64 == r) {
            self.region[b.offset..b.offset + b.bytes.len()].copy_from_slice(&b.bytes);
        }
        Ok(())
    }
}

/// Re-exported for the TEE hooks.
pub use acpi::ccel_table;
