//! Direct Linux boot: the host-testable half of loading a bzImage that QEMU hands over through
//! fw_cfg (`-kernel`, `-initrd`, `-append`) and entering it with the x86 64-bit boot protocol
//! (Linux `Documentation/arch/x86/boot.rst`, "64-bit Boot Protocol").
//!
//! Everything here works on host-supplied bytes (the setup header QEMU gives as the setup item,
//! item sizes, the memory map) and is bounded and fallible: a malformed kernel is a typed
//! [`LinuxError`], never a panic. The firmware side (`platform/linux_boot.rs`) reads the items,
//! places them and jumps.

pub mod acpi;
pub mod bootparam;
pub mod sev_hashes;
pub mod tdx_measure;
#[cfg(test)]
mod tests;

use alloc::vec::Vec;
use sha2::{Digest, Sha256, Sha384};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::memmap::{Region, RegionKind};
use bootparam::*;
use pupa_protocol::boot_digests::{BootDigests, SETUP_PUPA_BOOT_DIGESTS};

/// The largest `init_size` (memory the kernel needs from its load address) pupa accepts.
pub const MAX_INIT_SIZE: u64 = 1 << 30;
/// Highest `pref_address` accepted (distribution kernels use 16 MiB; the firmware reserves
/// that much below the kernel, see [`KernelLayout::block_len`]).
pub const MAX_PREF_ADDRESS: u64 = 256 << 20;
/// The legacy VGA/BIOS hole a PC has below 1 MiB: reported reserved to Linux (QEMU's
/// `etc/e820` lists it as RAM and leaves it to the firmware, as SeaBIOS and OVMF do).
pub const LEGACY_HOLE: (u64, u64) = (0xA_0000, 0x10_0000);

/// Why a Linux payload cannot be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinuxError {
    /// The setup item is shorter than the header it must hold (bytes).
    #[error("setup of {0} bytes is too short for a boot-protocol 2.12 header")]
    SetupTooShort(usize),
    /// No "HdrS" magic or 0xAA55 boot flag.
    #[error("not a bzImage (no HdrS header)")]
    NotBzImage,
    /// Boot protocol older than 2.12 (no `xloadflags`).
    #[error("boot protocol {0:#x} is older than 2.12")]
    ProtocolTooOld(u16),
    /// The header's own length (0x202 + byte at 0x201) lies outside the setup item or the
    /// zero page's header area.
    #[error("setup header end {0:#x} out of bounds")]
    HeaderLength(usize),
    /// `(setup_sects + 1) * 512` differs from the setup item's size.
    #[error("setup_sects says {sects_bytes} bytes, the setup item has {setup_len}")]
    SetupSize {
        sects_bytes: usize,
        setup_len: usize,
    },
    /// No 64-bit entry point (`XLF_KERNEL_64` clear).
    #[error("kernel has no 64-bit entry point")]
    No64BitEntry,
    /// Not relocatable: pupa places the kernel where its heap has room.
    #[error("kernel is not relocatable")]
    NotRelocatable,
    /// `kernel_alignment` is not a power of two in [4 KiB, 1 GiB].
    #[error("kernel_alignment {0:#x} unusable")]
    Alignment(u32),
    /// `pref_address` is not aligned to `kernel_alignment` or above [`MAX_PREF_ADDRESS`].
    #[error("pref_address {0:#x} unusable")]
    PrefAddress(u64),
    /// `init_size` is below the kernel's size or above [`MAX_INIT_SIZE`].
    #[error("init_size {init_size:#x} unusable for a kernel of {kernel_len:#x} bytes")]
    InitSize { init_size: u32, kernel_len: usize },
    /// The command line (without its NUL) is longer than the kernel's `cmdline_size`.
    #[error("command line of {len} bytes exceeds the kernel's limit of {max}")]
    CmdlineTooLong { len: usize, max: u32 },
    /// An address the 32-bit header fields cannot hold, above `initrd_addr_max`, or a range
    /// that overflows.
    #[error("{0} at {1:#x} is not addressable by the boot protocol")]
    Address(&'static str, u64),
    /// The memory map has unaccepted memory (TDX), which Linux cannot learn of without UEFI.
    #[error("memory map has unaccepted memory")]
    Unaccepted,
    /// More E820 entries than the zero page holds.
    #[error("more than 128 E820 entries")]
    TooManyE820,
}

/// What the setup header says about how to load the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelLayout {
    /// Bytes of setup (real-mode part) before the protected-mode kernel in the bzImage.
    pub setup_len: usize,
    /// Alignment of the load address (`kernel_alignment`).
    pub align: u64,
    /// Bytes the kernel needs from its load address (max of `init_size` and its own size).
    pub size: u64,
    /// Longest command line, without the NUL (`cmdline_size`).
    pub cmdline_max: u32,
    /// Highest address the initrd may end at (`initrd_addr_max`, inclusive), or `u64::MAX`.
    pub initrd_max: u64,
    /// `pref_address`: a relocatable kernel loaded below it runs from it (below).
    pub pref_address: u64,
}

impl KernelLayout {
    /// Bytes of a block that always holds the kernel's runtime range, wherever the heap puts
    /// the block: `pref_address + size + align` (see [`KernelLayout::runtime_start`]).
    pub fn block_len(&self) -> u64 {
        self.pref_address + self.size + self.align
    }

    /// Where the kernel is loaded in a block at `start` of [`KernelLayout::block_len`] bytes.
    ///
    /// Boot protocol (Documentation/arch/x86/boot.rst, `init_size`): a relocatable kernel's
    /// runtime start is its load address aligned up to `kernel_alignment`, but not below
    /// `pref_address` (the decompressor, `arch/x86/boot/compressed/head_64.S`, moves a kernel
    /// loaded lower up to `LOAD_PHYSICAL_ADDR`), and it needs `init_size` bytes from there. So
    /// the load address is that runtime start itself, and the whole range lies in the block:
    /// either `start` is at least `pref_address` and the range starts within `align` of it, or
    /// it is below and the range `[pref_address, pref_address + size)` ends before
    /// `start + block_len`. `None` if the sum overflows.
    pub fn runtime_start(&self, start: u64) -> Option<u64> {
        let aligned = start.checked_next_multiple_of(self.align)?;
        let at = aligned.max(self.pref_address);
        let end = start.checked_add(self.block_len())?;
        (at.checked_add(self.size)? <= end).then_some(at)
    }
}

fn rd<T: FromBytes>(b: &[u8], off: usize) -> Option<T> {
    T::read_from_prefix(b.get(off..)?).ok().map(|(v, _)| v)
}

/// The end of the setup header in the image (0x202 + the byte at 0x201), checked to lie
/// inside `setup` and before the zero page's next field (0x290).
fn header_end(setup: &[u8]) -> Result<usize, LinuxError> {
    let jump = rd::<u8>(setup, 0x201).ok_or(LinuxError::SetupTooShort(setup.len()))?;
    let end = 0x202 + jump as usize;
    if end > setup.len() || !(0x264..=0x290).contains(&end) {
        return Err(LinuxError::HeaderLength(end));
    }
    Ok(end)
}

/// Parses and checks the setup header of QEMU's setup item against the kernel item's size.
pub fn parse_setup(setup: &[u8], kernel_len: usize) -> Result<KernelLayout, LinuxError> {
    let hdr = rd::<SetupHeader>(setup, SETUP_HEADER_OFFSET)
        .ok_or(LinuxError::SetupTooShort(setup.len()))?;
    if hdr.header != HDRS_MAGIC || hdr.boot_flag != BOOT_FLAG {
        return Err(LinuxError::NotBzImage);
    }
    if hdr.version < 0x020C {
        return Err(LinuxError::ProtocolTooOld(hdr.version));
    }
    header_end(setup)?;
    let sects = if hdr.setup_sects == 0 {
        4
    } else {
        hdr.setup_sects as usize
    };
    let sects_bytes = (sects + 1) * 512;
    if sects_bytes != setup.len() {
        return Err(LinuxError::SetupSize {
            sects_bytes,
            setup_len: setup.len(),
        });
    }
    if hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(LinuxError::No64BitEntry);
    }
    if hdr.relocatable_kernel == 0 {
        return Err(LinuxError::NotRelocatable);
    }
    let align = hdr.kernel_alignment;
    if !align.is_power_of_two() || !(0x1000..=1 << 30).contains(&align) {
        return Err(LinuxError::Alignment(align));
    }
    let init_size = hdr.init_size;
    if (init_size as usize) < kernel_len || init_size as u64 > MAX_INIT_SIZE {
        return Err(LinuxError::InitSize {
            init_size,
            kernel_len,
        });
    }
    let pref_address = hdr.pref_address;
    if !pref_address.is_multiple_of(align as u64) || pref_address > MAX_PREF_ADDRESS {
        return Err(LinuxError::PrefAddress(pref_address));
    }
    let initrd_max = if hdr.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0 {
        u64::MAX
    } else {
        hdr.initrd_addr_max as u64
    };
    Ok(KernelLayout {
        setup_len: setup.len(),
        align: align as u64,
        size: init_size as u64,
        cmdline_max: hdr.cmdline_size,
        initrd_max,
        pref_address,
    })
}

/// The command line as Linux wants it: QEMU's bytes up to the first NUL, NUL-terminated,
/// within the kernel's limit.
pub fn cmdline_bytes(raw: &[u8], max: u32) -> Result<Vec<u8>, LinuxError> {
    let len = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    if len > max as usize {
        return Err(LinuxError::CmdlineTooLong { len, max });
    }
    let mut v = Vec::with_capacity(len + 1);
    v.extend_from_slice(&raw[..len]);
    v.push(0);
    Ok(v)
}

/// Linux's E820 table from the firmware's memory map: RAM inside `reserved` (the firmware's
/// own memory still in use at the hand-over, TEE pages) and inside [`LEGACY_HOLE`] becomes
/// `E820_TYPE_RESERVED`, and so does RAM outside `usable` when that is given (SEV-SNP: memory
/// the firmware has not validated, which Linux booted without UEFI would otherwise use as if
/// it were, and fault). Everything else keeps its kind. `map` must be sorted and disjoint (as
/// `memmap::parse_e820` returns it); `usable` need not be sorted.
pub fn e820_table(
    map: &[Region],
    reserved: &[(u64, u64)],
    usable: Option<&[(u64, u64)]>,
) -> Result<Vec<E820Entry>, LinuxError> {
    let mut cuts: Vec<(u64, u64)> = reserved.iter().copied().chain([LEGACY_HOLE]).collect();
    cuts.sort_unstable();
    let mut usable: Option<Vec<(u64, u64)>> = usable.map(<[_]>::to_vec);
    if let Some(u) = usable.as_mut() {
        u.sort_unstable();
    }
    let mut out: Vec<E820Entry> = Vec::new();
    for r in map {
        match r.kind {
            RegionKind::Unaccepted => return Err(LinuxError::Unaccepted),
            RegionKind::Reserved => push(&mut out, r.start, r.end(), E820_TYPE_RESERVED),
            RegionKind::Ram => {
                let whole = [(r.start, r.end())];
                let mut at = r.start;
                for &(us, ue) in usable.as_deref().unwrap_or(&whole) {
                    let (s, e) = (us.max(r.start), ue.min(r.end()));
                    if s >= e {
                        continue;
                    }
                    push(&mut out, at, s, E820_TYPE_RESERVED);
                    ram_with_cuts(&mut out, s, e, &cuts);
                    at = e;
                }
                push(&mut out, at, r.end(), E820_TYPE_RESERVED);
            }
        }
    }
    if out.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(LinuxError::TooManyE820);
    }
    Ok(out)
}

/// Appends RAM [start, end) with every range of `cuts` (sorted) inside it reserved.
fn ram_with_cuts(out: &mut Vec<E820Entry>, start: u64, end: u64, cuts: &[(u64, u64)]) {
    let mut at = start;
    for &(cs, ce) in cuts {
        let (s, e) = (cs.max(at), ce.min(end));
        if s >= e {
            continue;
        }
        push(out, at, s, E820_TYPE_RAM);
        push(out, s, e, E820_TYPE_RESERVED);
        at = e;
    }
    push(out, at, end, E820_TYPE_RAM);
}

/// Appends [start, end) of type `typ`, merging with the previous entry when they touch.
fn push(out: &mut Vec<E820Entry>, start: u64, end: u64, typ: u32) {
    if start >= end {
        return;
    }
    if let Some(last) = out.last_mut() {
        let (la, ls, lt) = (last.addr, last.size, last.typ);
        if lt == typ && la + ls == start {
            last.size = end - la;
            return;
        }
    }
    out.push(E820Entry {
        addr: start,
        size: end - start,
        typ,
    });
}

/// Where the firmware placed the pieces (guest-physical addresses, identity-mapped).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The protected-mode kernel's load address (aligned to `kernel_alignment`).
    pub kernel: u64,
    /// The initrd and its length (0, 0 without one).
    pub initrd: (u64, u64),
    /// The NUL-terminated command line.
    pub cmdline: u64,
    /// The first `setup_data` node (0: none; QEMU's own list is never passed on).
    pub setup_data: u64,
    /// The ACPI RSDP (0: none), for `boot_params.acpi_rsdp_addr`.
    pub acpi_rsdp: u64,
}

fn lo32(what: &'static str, a: u64) -> Result<u32, LinuxError> {
    u32::try_from(a).map_err(|_| LinuxError::Address(what, a))
}

/// Builds the zero page: the image's setup header copied as boot.rst asks (0x1F1 to its end),
/// then the loader's fields (loader type, command line, initrd, the firmware's setup_data
/// list) and the E820 table.
pub fn boot_params(
    setup: &[u8],
    layout: &KernelLayout,
    at: &Placement,
    e820: &[E820Entry],
) -> Result<BootParams, LinuxError> {
    let end = header_end(setup)?;
    if e820.len() > E820_MAX_ENTRIES_ZEROPAGE {
        return Err(LinuxError::TooManyE820);
    }
    let (rd_start, rd_len) = at.initrd;
    let rd_end = rd_start
        .checked_add(rd_len)
        .ok_or(LinuxError::Address("initrd", rd_start))?;
    if rd_len != 0 && rd_end - 1 > layout.initrd_max {
        return Err(LinuxError::Address("initrd", rd_start));
    }
    let mut bp = BootParams::new_zeroed();
    bp.as_mut_bytes()[SETUP_HEADER_OFFSET..end].copy_from_slice(&setup[SETUP_HEADER_OFFSET..end]);
    // Whatever the host's loader wrote into these is dropped: every byte of the header Linux
    // gets is either measured (`loader_neutral_setup`) or pupa's own.
    for &(s, e) in &LOADER_FIELDS {
        bp.as_mut_bytes()[s..e.min(end)].fill(0);
    }
    bp.hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    bp.hdr.loadflags = LOADED_HIGH;
    bp.hdr.code32_start = lo32("kernel", at.kernel)?;
    bp.hdr.cmd_line_ptr = lo32("command line", at.cmdline)?;
    bp.hdr.ramdisk_image = lo32("initrd", rd_start)?;
    bp.hdr.ramdisk_size = lo32("initrd size", rd_len)?;
    // QEMU's setup_data list points into where *it* would have loaded the kernel: only the
    // firmware's own list goes on.
    bp.hdr.setup_data = at.setup_data;
    bp.acpi_rsdp_addr = at.acpi_rsdp;
    for (slot, e) in bp.e820_table.iter_mut().zip(e820) {
        *slot = *e;
    }
    bp.e820_entries = e820.len() as u8;
    Ok(bp)
}

/// The setup-header fields a boot loader writes (Linux `Documentation/arch/x86/boot.rst`,
/// "Details of header fields": vid_mode; type_of_loader, loadflags, setup_move_size,
/// code32_start, ramdisk_image, ramdisk_size; heap_end_ptr, ext_loader_ver, ext_loader_type,
/// cmd_line_ptr; hardware_subarch, hardware_subarch_data; setup_data), as [start, end) offsets
/// in the bzImage. QEMU patches them in the setup item it serves, except under SEV (QEMU
/// `hw/i386/x86-common.c`, `x86_load_linux`), so their values depend on the VMM, not on the
/// kernel. pupa zeroes them before measuring the kernel under TDX and writes its own values
/// into the zero page.
pub const LOADER_FIELDS: [(usize, usize); 5] = [
    (0x1FA, 0x1FC),
    (0x210, 0x220),
    (0x224, 0x22C),
    (0x23C, 0x248),
    (0x250, 0x258),
];

/// The setup item with [`LOADER_FIELDS`] zeroed: what the TDX measurement of the kernel
/// covers (with the kernel item after it), so that a verifier gets the same digest from the
/// bzImage file by zeroing the same bytes.
pub fn loader_neutral_setup(setup: &[u8]) -> Vec<u8> {
    let mut s = setup.to_vec();
    for &(a, b) in &LOADER_FIELDS {
        if let Some(f) = s.get_mut(a..b) {
            f.fill(0);
        }
    }
    s
}

/// SHA-256 and SHA-384 of one part of the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartDigests {
    pub sha256: [u8; 32],
    pub sha384: [u8; 48],
}

impl PartDigests {
    /// The digests of the concatenation of `parts`.
    pub fn of(parts: &[&[u8]]) -> Self {
        let (mut a, mut b) = (Sha256::new(), Sha384::new());
        for p in parts {
            a.update(p);
            b.update(p);
        }
        PartDigests {
            sha256: a.finalize().into(),
            sha384: b.finalize().into(),
        }
    }
}

/// The three parts of a payload, digested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayloadDigests {
    /// The setup item then the kernel item (under SEV QEMU leaves the setup header as in the
    /// file, so this is the bzImage file's digest; on a plain VM QEMU has patched it).
    pub kernel: PartDigests,
    /// The same with [`LOADER_FIELDS`] zeroed ([`loader_neutral_setup`]): the bzImage file's
    /// digest after zeroing those bytes, whatever the VMM patched (the TDX measurement).
    pub kernel_neutral: PartDigests,
    /// The initrd item (the empty string's digests without one).
    pub initrd: PartDigests,
    /// The command-line item as QEMU gives it: the string with its NUL.
    pub cmdline: PartDigests,
}

impl PayloadDigests {
    /// The SHA-256s, as the SEV hashes table lists them.
    pub fn sev_hashes(&self) -> sev_hashes::Hashes {
        sev_hashes::Hashes {
            kernel: self.kernel.sha256,
            initrd: self.initrd.sha256,
            cmdline: self.cmdline.sha256,
        }
    }
}

/// The `setup_data` node that tells the payload what the firmware loaded (see
/// `pupa_protocol::boot_digests`): the firmware image's SHA-384 and the payload's (the kernel
/// loader-neutral, the command line with its NUL); `next` continues the list.
pub fn boot_digests_node(
    firmware_sha384: &[u8; 48],
    payload: &PayloadDigests,
    next: u64,
) -> BootDigestsSetupData {
    let d = BootDigests {
        magic: BootDigests::MAGIC,
        firmware: *firmware_sha384,
        kernel: payload.kernel_neutral.sha384,
        initrd: payload.initrd.sha384,
        cmdline: payload.cmdline.sha384,
    };
    BootDigestsSetupData {
        header: SetupDataHeader {
            next,
            typ: SETUP_PUPA_BOOT_DIGESTS,
            len: BootDigests::LEN as u32,
        },
        data: d.to_bytes(),
    }
}

/// The SEV-SNP confidential-computing blob for a kernel booted without UEFI, and the
/// setup_data node that points to it (at `blob_addr`, which must be below 4 GiB: the node
/// holds a 32-bit address). Linux `arch/x86/boot/compressed/sev.c` (`find_cc_blob`,
/// `snp_init`) terminates the guest without it.
pub fn snp_cc_blob(
    secrets: u64,
    cpuid: u64,
    blob_addr: u64,
) -> Result<(CcBlobSevInfo, CcSetupData), LinuxError> {
    let blob = CcBlobSevInfo {
        magic: CC_BLOB_SEV_HDR_MAGIC,
        version: 1,
        reserved: 0,
        secrets_phys: secrets,
        secrets_len: 4096,
        rsvd1: 0,
        cpuid_phys: cpuid,
        cpuid_len: 4096,
        rsvd2: 0,
    };
    let node = CcSetupData {
        header: SetupDataHeader {
            next: 0,
            typ: SETUP_CC_BLOB,
            len: core::mem::size_of::<u32>() as u32,
        },
        cc_blob_address: lo32("CC blob", blob_addr)?,
    };
    Ok((blob, node))
}
