//! Direct Linux boot: when QEMU provides a kernel through fw_cfg (`-kernel`, `-initrd`,
//! `-append`), load it, build its zero page and hand over (the decisions are in the library,
//! `pupa_guest::linux`; the jump is `arch::linux::enter_linux64`).
//!
//! What differs per TEE is [`Platform::linux_handover`]: a plain VM only logs the digests;
//! SEV-SNP checks the payload against QEMU's launch-measured SEV hashes table, validates low
//! RAM and passes the CC blob (`snp_linux.rs`); TDX refuses for now (its RTMR measurement is
//! not wired), rather than run an unmeasured kernel.

use alloc::vec::Vec;

use pupa_guest::banner::Hex;
use pupa_guest::linux::{self, LinuxError, PartDigests, PayloadDigests, Placement};
use pupa_guest::memmap::Region;
use zerocopy::IntoBytes;

use super::fw_cfg::{self, key};
use super::linux_acpi::LinuxAcpi;
use super::{layout, BootError, Platform, Ram};
use crate::println;

/// Largest kernel or initrd item read (fw_cfg sizes are the host's word).
const MAX_ITEM: u32 = 512 << 20;
/// Largest setup or command-line item read.
const MAX_SMALL_ITEM: u32 = 64 << 10;

/// Why the Linux payload could not be booted.
#[derive(Debug, thiserror::Error)]
pub enum LinuxBootError {
    #[error("{0}")]
    Kernel(#[from] LinuxError),
    #[error("fw_cfg item {key:#x} of {size} bytes exceeds the limit of {max}")]
    ItemTooLarge { key: u16, size: u32, max: u32 },
    #[error("{0}")]
    Platform(#[from] BootError),
}

/// Whether QEMU was given `-kernel` (fw_cfg present and a non-zero kernel size).
pub fn kernel_present() -> bool {
    matches!(fw_cfg::item_u32(key::KERNEL_SIZE), Ok(n) if n != 0)
}

fn item_len(size_key: u16, max: u32) -> Result<usize, LinuxBootError> {
    let size = fw_cfg::item_u32(size_key).unwrap_or(0);
    if size > max {
        return Err(LinuxBootError::ItemTooLarge {
            key: size_key,
            size,
            max,
        });
    }
    Ok(size as usize)
}

fn read_item(size_key: u16, data_key: u16, max: u32) -> Result<Vec<u8>, LinuxBootError> {
    let mut v = alloc::vec![0u8; item_len(size_key, max)?];
    fw_cfg::read_item_into(data_key, &mut v);
    Ok(v)
}

/// A zeroed, leaked heap buffer of `size` bytes aligned to `align` (a power of two): the
/// firmware never frees what it hands to Linux.
fn leak_aligned(size: usize, align: usize) -> &'static mut [u8] {
    let buf = alloc::vec![0u8; size + align].leak();
    let off = buf.as_ptr().align_offset(align).min(align);
    &mut buf[off..off + size]
}

/// The kernel's buffer: its runtime range `[runtime start, + init_size)` inside a leaked heap
/// block (`KernelLayout::runtime_start`), so that nothing the firmware hands Linux (initrd,
/// boot parameters, tables) lies where the kernel decompresses itself.
fn kernel_buffer(kl: &linux::KernelLayout) -> Result<&'static mut [u8], LinuxBootError> {
    let block = leak_aligned(kl.block_len() as usize, 4096);
    let start = block.as_ptr() as u64;
    let at = kl
        .runtime_start(start)
        .ok_or(LinuxError::PrefAddress(kl.pref_address))?;
    let off = (at - start) as usize;
    Ok(&mut block[off..off + kl.size as usize])
}

/// Boots the fw_cfg kernel if there is one (never returns then); returns without one.
pub fn boot_if_present(
    platform: &dyn Platform,
    map: &[Region],
    ram: &Ram,
    image_sha384: &[u8; 48],
) -> Result<(), LinuxBootError> {
    if !kernel_present() {
        return Ok(());
    }
    let setup = read_item(key::SETUP_SIZE, key::SETUP_DATA, MAX_SMALL_ITEM)?;
    let kernel_len = item_len(key::KERNEL_SIZE, MAX_ITEM)?;
    let kl = linux::parse_setup(&setup, kernel_len)?;
    let kernel = kernel_buffer(&kl)?;
    fw_cfg::read_item_into(key::KERNEL_DATA, &mut kernel[..kernel_len]);
    let initrd_len = item_len(key::INITRD_SIZE, MAX_ITEM)?;
    let initrd = leak_aligned(initrd_len, 4096);
    fw_cfg::read_item_into(key::INITRD_DATA, initrd);
    let raw_cmdline = read_item(key::CMDLINE_SIZE, key::CMDLINE_DATA, MAX_SMALL_ITEM)?;
    let cmdline = linux::cmdline_bytes(&raw_cmdline, kl.cmdline_max)?.leak();

    let digests = PayloadDigests {
        kernel: PartDigests::of(&[&setup, &kernel[..kernel_len]]),
        kernel_neutral: PartDigests::of(&[
            &linux::loader_neutral_setup(&setup),
            &kernel[..kernel_len],
        ]),
        initrd: PartDigests::of(&[initrd]),
        cmdline: PartDigests::of(&[&raw_cmdline]),
    };
    print_digests("kernel", &digests.kernel);
    print_digests("kernel (loader fields zeroed)", &digests.kernel_neutral);
    print_digests("initrd", &digests.initrd);
    print_digests("cmdline", &digests.cmdline);
    let shown = core::str::from_utf8(&cmdline[..cmdline.len() - 1]).unwrap_or("(not UTF-8)");
    println!("pupa: linux cmdline \"{shown}\"");

    let mut acpi = LinuxAcpi::install();
    let handover = platform.linux_handover(map, ram, &digests, acpi.as_mut())?;
    let mut reserved = alloc::vec![layout::early_ram()];
    reserved.extend(acpi.iter().flat_map(|a| a.reserved.iter().copied()));
    let map = handover.map.as_deref().unwrap_or(map);
    let e820 = linux::e820_table(map, &reserved, handover.usable.as_deref())?;
    let at = Placement {
        kernel: kernel.as_ptr() as u64,
        initrd: (initrd.as_ptr() as u64, initrd_len as u64),
        cmdline: cmdline.as_ptr() as u64,
        // What the firmware loaded, first in the list (for pupa-worker's dev evidence; Linux
        // reserves setup_data nodes, so the leaked heap node stays intact).
        setup_data: alloc::boxed::Box::leak(alloc::boxed::Box::new(linux::boot_digests_node(
            image_sha384,
            &digests,
            handover.setup_data,
        )))
        .as_bytes()
        .as_ptr() as u64,
        acpi_rsdp: acpi.as_ref().map_or(0, |a| a.rsdp),
    };
    let bp = alloc::boxed::Box::leak(alloc::boxed::Box::new(linux::boot_params(
        &setup, &kl, &at, &e820,
    )?));
    let entry = at.kernel + linux::bootparam::STARTUP_64_OFFSET;
    println!(
        "pupa: linux kernel {kernel_len} bytes at {:#x} (init_size {:#x}), initrd {initrd_len} bytes at {:#x}, {} e820 entries",
        at.kernel,
        kl.size,
        at.initrd.0,
        e820.len()
    );
    println!("pupa: linux entering startup_64 at {entry:#x}");
    let bp_addr = bp.as_bytes().as_ptr() as u64;
    // SAFETY: `entry` is startup_64 of the kernel just loaded at its aligned load address with
    // init_size bytes leaked for it; the zero page, command line and initrd are leaked heap
    // memory below 4 GiB, identity-mapped by the boot stub; nothing of pupa runs afterwards.
    unsafe { crate::arch::linux::enter_linux64(entry, bp_addr) }
}

fn print_digests(what: &str, d: &PartDigests) {
    println!("pupa: linux {what} sha384 {}", Hex(&d.sha384));
    println!("pupa: linux {what} sha256 {}", Hex(&d.sha256));
}
