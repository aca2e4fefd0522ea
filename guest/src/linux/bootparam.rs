//! The x86 boot protocol's structures (Linux `arch/x86/include/uapi/asm/bootparam.h`,
//! `Documentation/arch/x86/boot.rst`): the setup header at 0x1F1 of a bzImage, the zero page
//! (`struct boot_params`, 4 KiB) that carries it to the kernel, and the E820 entries in it.
//! Offsets are asserted against the header file's comments.

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `struct setup_header` (packed, at offset 0x1F1 of the image and of the zero page).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct SetupHeader {
    pub setup_sects: u8,
    pub root_flags: u16,
    pub syssize: u32,
    pub ram_size: u16,
    pub vid_mode: u16,
    pub root_dev: u16,
    pub boot_flag: u16,
    pub jump: u16,
    pub header: u32,
    pub version: u16,
    pub realmode_swtch: u32,
    pub start_sys_seg: u16,
    pub kernel_version: u16,
    pub type_of_loader: u8,
    pub loadflags: u8,
    pub setup_move_size: u16,
    pub code32_start: u32,
    pub ramdisk_image: u32,
    pub ramdisk_size: u32,
    pub bootsect_kludge: u32,
    pub heap_end_ptr: u16,
    pub ext_loader_ver: u8,
    pub ext_loader_type: u8,
    pub cmd_line_ptr: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable_kernel: u8,
    pub min_alignment: u8,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub hardware_subarch: u32,
    pub hardware_subarch_data: u64,
    pub payload_offset: u32,
    pub payload_length: u32,
    pub setup_data: u64,
    pub pref_address: u64,
    pub init_size: u32,
    pub handover_offset: u32,
    pub kernel_info_offset: u32,
}

/// Where the setup header starts, in the image and in the zero page.
pub const SETUP_HEADER_OFFSET: usize = 0x1F1;
/// "HdrS", the header's magic (at 0x202).
pub const HDRS_MAGIC: u32 = 0x5372_6448;
/// The boot sector signature (at 0x1FE).
pub const BOOT_FLAG: u16 = 0xAA55;
/// `xloadflags` bit 0: the kernel has the legacy 64-bit entry point at 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: kernel, boot_params, command line and ramdisk may be above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000 ("high").
pub const LOADED_HIGH: u8 = 1 << 0;
/// `type_of_loader` 0xFF: a boot loader without an assigned id.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xFF;
/// The 64-bit entry point's offset from the load address (`startup_64`).
pub const STARTUP_64_OFFSET: u64 = 0x200;

/// `struct boot_e820_entry` (packed, 20 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub typ: u32,
}

impl E820Entry {
    /// The first address after the entry.
    pub fn end(&self) -> u64 {
        self.addr + self.size
    }
}

/// E820 types Linux knows (`arch/x86/include/asm/e820/types.h`).
pub const E820_TYPE_RAM: u32 = 1;
pub const E820_TYPE_RESERVED: u32 = 2;
/// `E820_MAX_ENTRIES_ZEROPAGE`: the zero page's table holds this many entries.
pub const E820_MAX_ENTRIES_ZEROPAGE: usize = 128;

/// `struct boot_params`, the zero page. Fields pupa does not fill are byte arrays.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct BootParams {
    pub screen_info: [u8; 0x40],
    pub apm_bios_info: [u8; 0x14],
    pub _pad2: [u8; 4],
    pub tboot_addr: u64,
    pub ist_info: [u8; 0x10],
    pub acpi_rsdp_addr: u64,
    pub _pad3: [u8; 8],
    pub hd0_info: [u8; 16],
    pub hd1_info: [u8; 16],
    pub sys_desc_table: [u8; 0x10],
    pub olpc_ofw_header: [u8; 0x10],
    pub ext_ramdisk_image: u32,
    pub ext_ramdisk_size: u32,
    pub ext_cmd_line_ptr: u32,
    pub _pad4: [u8; 112],
    pub cc_blob_address: u32,
    pub edid_info: [u8; 0x80],
    pub efi_info: [u8; 0x20],
    pub alt_mem_k: u32,
    pub scratch: u32,
    pub e820_entries: u8,
    pub eddbuf_entries: u8,
    pub edd_mbr_sig_buf_entries: u8,
    pub kbd_status: u8,
    pub secure_boot: u8,
    pub _pad5: [u8; 2],
    pub sentinel: u8,
    pub _pad6: [u8; 1],
    pub hdr: SetupHeader,
    pub _pad7: [u8; 0x290 - 0x1F1 - size_of::<SetupHeader>()],
    pub edd_mbr_sig_buffer: [u32; 16],
    pub e820_table: [E820Entry; E820_MAX_ENTRIES_ZEROPAGE],
    pub _pad8: [u8; 48],
    pub eddbuf: [u8; 0x1EC],
    pub _pad9: [u8; 276],
}

const _: () = {
    assert!(size_of::<SetupHeader>() == 0x26C - 0x1F1);
    assert!(offset_of!(SetupHeader, boot_flag) == 0x1FE - 0x1F1);
    assert!(offset_of!(SetupHeader, header) == 0x202 - 0x1F1);
    assert!(offset_of!(SetupHeader, type_of_loader) == 0x210 - 0x1F1);
    assert!(offset_of!(SetupHeader, ramdisk_image) == 0x218 - 0x1F1);
    assert!(offset_of!(SetupHeader, cmd_line_ptr) == 0x228 - 0x1F1);
    assert!(offset_of!(SetupHeader, kernel_alignment) == 0x230 - 0x1F1);
    assert!(offset_of!(SetupHeader, xloadflags) == 0x236 - 0x1F1);
    assert!(offset_of!(SetupHeader, setup_data) == 0x250 - 0x1F1);
    assert!(offset_of!(SetupHeader, pref_address) == 0x258 - 0x1F1);
    assert!(offset_of!(SetupHeader, init_size) == 0x260 - 0x1F1);
    assert!(size_of::<E820Entry>() == 20);
    assert!(size_of::<BootParams>() == 4096);
    assert!(offset_of!(BootParams, acpi_rsdp_addr) == 0x070);
    assert!(offset_of!(BootParams, ext_ramdisk_image) == 0x0C0);
    assert!(offset_of!(BootParams, ext_cmd_line_ptr) == 0x0C8);
    assert!(offset_of!(BootParams, cc_blob_address) == 0x13C);
    assert!(offset_of!(BootParams, e820_entries) == 0x1E8);
    assert!(offset_of!(BootParams, sentinel) == 0x1EF);
    assert!(offset_of!(BootParams, hdr) == SETUP_HEADER_OFFSET);
    assert!(offset_of!(BootParams, edd_mbr_sig_buffer) == 0x290);
    assert!(offset_of!(BootParams, e820_table) == 0x2D0);
    assert!(offset_of!(BootParams, eddbuf) == 0xD00);
};

/// `struct setup_data` without its payload (bootparam.h): a node of the singly linked list
/// that starts at `hdr.setup_data` (physical addresses; `next` 0 ends the list).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct SetupDataHeader {
    pub next: u64,
    pub typ: u32,
    /// Bytes of payload after this header.
    pub len: u32,
}

/// pupa's boot-digests node (`pupa_protocol::boot_digests`): `struct setup_data` with type
/// `SETUP_PUPA_BOOT_DIGESTS` and the digests' bytes.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct BootDigestsSetupData {
    pub header: SetupDataHeader,
    pub data: [u8; pupa_protocol::boot_digests::BootDigests::LEN],
}

const _: () = assert!(core::mem::size_of::<BootDigestsSetupData>() == 16 + 200);

/// `SETUP_CC_BLOB`: the node carries the 32-bit address of a confidential-computing blob.
pub const SETUP_CC_BLOB: u32 = 7;

/// `struct cc_setup_data` (Linux `arch/x86/include/asm/sev.h`): how a loader without UEFI
/// tells an SEV-SNP kernel where its CPUID and secrets pages are
/// (`arch/x86/boot/compressed/sev.c`, `find_cc_blob_setup_data`).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct CcSetupData {
    pub header: SetupDataHeader,
    pub cc_blob_address: u32,
}

/// `CC_BLOB_SEV_HDR_MAGIC` ("AMDE").
pub const CC_BLOB_SEV_HDR_MAGIC: u32 = 0x4544_4d41;

/// `struct cc_blob_sev_info` (Linux `arch/x86/include/asm/sev.h`, the same layout as edk2's
/// `CONFIDENTIAL_COMPUTING_SNP_BLOB_LOCATION`). Linux checks the magic and that the CPUID
/// page is at least 4 KiB (`snp_setup_cpuid_table`'s caller terminates otherwise).
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, packed)]
pub struct CcBlobSevInfo {
    pub magic: u32,
    pub version: u16,
    pub reserved: u16,
    pub secrets_phys: u64,
    pub secrets_len: u32,
    pub rsvd1: u32,
    pub cpuid_phys: u64,
    pub cpuid_len: u32,
    pub rsvd2: u32,
}

const _: () = {
    assert!(size_of::<SetupDataHeader>() == 16);
    assert!(size_of::<CcSetupData>() == 20);
    assert!(offset_of!(CcSetupData, cc_blob_address) == 16);
    assert!(size_of::<CcBlobSevInfo>() == 40);
    assert!(offset_of!(CcBlobSevInfo, secrets_phys) == 8);
    assert!(offset_of!(CcBlobSevInfo, cpuid_phys) == 24);
};
