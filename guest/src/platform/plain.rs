//! A plain VM (no TEE): development and tests. Memory is usable as the host describes it,
//! devices see the heap, port I/O and MMIO are the plain instructions, and the evidence is
//! the insecure software report.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use pupa_guest::memmap::{self, Region};
use pupa_guest::tee::TeeKind;
use pupa_runtime::DevTee;

use super::virtio_net::{DmaPool, PlainDma};
use super::{fw_cfg, BootArgs, BootError, BootFacts, Handover, Interrupts, Platform, Ram, Width};
use crate::arch::cpu::halt_with_interrupts;
use crate::arch::io::{raw_in, raw_out};
use crate::arch::mmio::raw_access;
use pupa_guest::linux::PayloadDigests;

/// The memory map from QEMU's fw_cfg file `etc/e820` (plain VMs and SEV-SNP).
pub fn e820_map() -> Result<(Vec<Region>, &'static str), BootError> {
    const SOURCE: &str = "fw_cfg etc/e820";
    let err = |why| BootError::MemoryMap {
        source_name: SOURCE,
        why,
    };
    let bytes = fw_cfg::read_file("etc/e820").map_err(|e| err(format!("{e}")))?;
    let map = memmap::parse_e820(&bytes).map_err(|e| err(format!("{e}")))?;
    Ok((map, SOURCE))
}

/// The plain-VM platform.
pub struct Plain;

impl Platform for Plain {
    fn kind(&self) -> TeeKind {
        TeeKind::Dev
    }

    fn init(&self, _boot: &BootArgs) -> Result<(), BootError> {
        Ok(())
    }

    fn memory_map(&self) -> Result<(Vec<Region>, &'static str), BootError> {
        e820_map()
    }

    fn accept_ram(&self, map: &[Region], early: (u64, u64)) -> Result<Ram, BootError> {
        Ok(Ram {
            ranges: memmap::usable_ram(map, 0x10_0000, 1 << 32, &[early]),
            accepted_bytes: 0,
        })
    }

    fn dma_pool(&self) -> Result<Box<dyn DmaPool>, BootError> {
        Ok(Box::new(PlainDma))
    }

    /// Nothing to check or measure: the digests are in the boot log, and all RAM is Linux's.
    fn linux_handover(
        &self,
        _map: &[Region],
        _ram: &Ram,
        _payload: &PayloadDigests,
        _acpi: Option<&mut super::linux_acpi::LinuxAcpi>,
    ) -> Result<Handover, BootError> {
        #[cfg(feature = "fault-test")]
        test_ccel(_acpi)?;
        Ok(Handover {
            map: None,
            usable: None,
            setup_data: 0,
        })
    }

    fn evidence(
        &self,
        _dma: &mut dyn DmaPool,
        facts: &BootFacts,
    ) -> Result<Box<dyn pupa_runtime::Tee>, BootError> {
        Ok(Box::new(DevTee {
            image_sha384: facts.image_sha384,
        }))
    }

    fn start_aps(&self, tsc: pupa_guest::clock::Tsc) -> (u32, u32) {
        super::smp::start_plain(tsc)
    }

    fn evidence_description(&self) -> &'static str {
        "dev (INSECURE: software report, no TEE)"
    }

    fn interrupts(&self) -> Interrupts {
        Interrupts {
            legacy_pic: true,
            x2apic_only: false,
        }
    }

    fn halt(&self) {
        halt_with_interrupts()
    }

    unsafe fn port_read(&self, port: u16, width: Width) -> u32 {
        // SAFETY: forwarded from the caller.
        unsafe { raw_in(port, width) }
    }

    unsafe fn port_write(&self, port: u16, width: Width, value: u32) {
        // SAFETY: forwarded from the caller.
        unsafe { raw_out(port, width, value) }
    }

    unsafe fn mmio(&self, addr: u64, size: u8, write: bool, value: u64) -> u64 {
        // SAFETY: forwarded from the caller; device windows are mapped UC (pci.rs).
        unsafe { raw_access(addr, size, write, value) }
    }
}

/// Test builds only: with the fw_cfg file `opt/pupa/linux-ccel`, publish a CCEL table over a
/// small event log as the TDX hand-over does (`tdx_linux.rs`), so that a plain-VM test can show
/// Linux finding the table through the extended root tables.
#[cfg(feature = "fault-test")]
fn test_ccel(acpi: Option<&mut super::linux_acpi::LinuxAcpi>) -> Result<(), BootError> {
    let (Ok(_), Some(acpi)) = (fw_cfg::read_file("opt/pupa/linux-ccel"), acpi) else {
        return Ok(());
    };
    let log = pupa_guest::tdx::rtmr::EventLog::new();
    let area = acpi.reserve(log.bytes().len());
    area.fill(0xFF);
    area[..log.bytes().len()].copy_from_slice(log.bytes());
    let table = super::linux_acpi::ccel_table(area.as_ptr() as u64, area.len() as u64);
    acpi.add_table(&table)
        .map_err(|e| BootError::Linux(format!("CCEL: {e}")))?;
    crate::println!(
        "pupa: fault-test: CCEL table added ({} log bytes)",
        log.bytes().len()
    );
    Ok(())
}
