//! Host tests of the setup-header parser, the E820 table and the zero page.

use super::bootparam::*;
use super::*;
use crate::memmap::{Region, RegionKind};

/// A setup item as a 6.x bzImage has it: 4 setup sectors + the boot sector, protocol 2.15.
fn setup() -> Vec<u8> {
    let mut s = vec![0u8; 5 * 512];
    s[0x1F1] = 4;
    s[0x1FE..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
    s[0x201] = 0x6A; // header end 0x26C
    s[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
    s[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    s[0x210] = 0xB0; // QEMU's loader id, overwritten
    s[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    s[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
    s[0x234] = 1;
    s[0x236..0x238].copy_from_slice(&(XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).to_le_bytes());
    s[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
    s[0x250..0x258].copy_from_slice(&0x1234_5678u64.to_le_bytes()); // QEMU's setup_data
    s[0x260..0x264].copy_from_slice(&0x300_0000u32.to_le_bytes());
    s[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
    s
}

#[test]
fn a_good_header_parses() {
    let l = parse_setup(&setup(), 0x100_0000).unwrap();
    assert_eq!(
        l,
        KernelLayout {
            setup_len: 2560,
            align: 0x20_0000,
            size: 0x300_0000,
            cmdline_max: 2047,
            initrd_max: u64::MAX,
            pref_address: 0x100_0000,
        }
    );
}

/// The runtime range [pref_address or aligned load address, + init_size) always lies inside
/// the block the firmware allocates, wherever the heap puts it (a kernel loaded below
/// pref_address decompresses at pref_address: with the range outside the block, the kernel
/// overwrote the initrd that followed it, which QEMU showed with a 110 MB initramfs).
#[test]
fn the_kernel_runs_inside_its_block() {
    let l = parse_setup(&setup(), 0x100_0000).unwrap();
    assert_eq!(l.block_len(), 0x100_0000 + 0x300_0000 + 0x20_0000);
    for start in [
        0x10_0000u64,
        0x60_0000,
        0x60_1000,
        0xFF_F000,
        0x100_0000,
        0x1234_5000,
    ] {
        let at = l.runtime_start(start).unwrap();
        assert!(
            at >= l.pref_address && at.is_multiple_of(l.align),
            "{start:#x}: {at:#x}"
        );
        assert!(
            at >= start && at + l.size <= start + l.block_len(),
            "{start:#x}"
        );
    }
    // loaded below pref_address: runs from pref_address, not from the load address
    assert_eq!(l.runtime_start(0x60_0000), Some(0x100_0000));
    assert_eq!(l.runtime_start(0x1234_5000), Some(0x1240_0000));
    assert_eq!(l.runtime_start(u64::MAX - 0x1000), None);
}

/// A corruption of the setup item and the error it must give.
type Case = (fn(&mut Vec<u8>), LinuxError);

#[test]
fn bad_headers_are_typed_errors() {
    let cases: [Case; 10] = [
        (|s| s[0x202] = b'X', LinuxError::NotBzImage),
        (|s| s[0x1FE] = 0, LinuxError::NotBzImage),
        (|s| s[0x206] = 0x0B, LinuxError::ProtocolTooOld(0x020B)),
        (|s| s[0x201] = 0xFF, LinuxError::HeaderLength(0x301)),
        (
            |s| s[0x1F1] = 5,
            LinuxError::SetupSize {
                sects_bytes: 3072,
                setup_len: 2560,
            },
        ),
        (|s| s[0x236] = 0, LinuxError::No64BitEntry),
        (|s| s[0x234] = 0, LinuxError::NotRelocatable),
        (|s| s[0x230] = 3, LinuxError::Alignment(0x20_0003)),
        (|s| s[0x258] = 1, LinuxError::PrefAddress(0x100_0001)),
        (
            |s| s[0x263] = 0,
            LinuxError::InitSize {
                init_size: 0,
                kernel_len: 0x100_0000,
            },
        ),
    ];
    for (mutate, want) in cases {
        let mut s = setup();
        mutate(&mut s);
        assert_eq!(parse_setup(&s, 0x100_0000), Err(want));
    }
}

#[test]
fn truncated_setups_never_panic() {
    let s = setup();
    for n in 0..s.len() {
        assert!(parse_setup(&s[..n], 0).is_err(), "length {n}");
    }
    assert_eq!(parse_setup(&[], 0), Err(LinuxError::SetupTooShort(0)));
}

#[test]
fn cmdline_is_cut_at_nul_and_bounded() {
    assert_eq!(
        cmdline_bytes(b"console=ttyS0\0", 100).unwrap(),
        b"console=ttyS0\0"
    );
    assert_eq!(cmdline_bytes(b"abc", 3).unwrap(), b"abc\0");
    assert_eq!(cmdline_bytes(b"", 0).unwrap(), b"\0");
    assert_eq!(
        cmdline_bytes(b"abcd\0", 3),
        Err(LinuxError::CmdlineTooLong { len: 4, max: 3 })
    );
}

fn ram(start: u64, len: u64) -> Region {
    Region {
        start,
        len,
        kind: RegionKind::Ram,
    }
}

#[test]
fn e820_reserves_the_firmware_and_the_legacy_hole() {
    let map = [
        ram(0, 0x1000_0000),
        Region {
            start: 0xFEFF_C000,
            len: 0x4000,
            kind: RegionKind::Reserved,
        },
    ];
    let t = e820_table(&map, &[(0x10_0000, 0x50_0000)], None).unwrap();
    let got: Vec<(u64, u64, u32)> = t.iter().map(|e| (e.addr, e.size, e.typ)).collect();
    assert_eq!(
        got,
        [
            (0, 0xA_0000, E820_TYPE_RAM),
            (0xA_0000, 0x46_0000, E820_TYPE_RESERVED), // hole and firmware merged
            (0x50_0000, 0x1000_0000 - 0x50_0000, E820_TYPE_RAM),
            (0xFEFF_C000, 0x4000, E820_TYPE_RESERVED),
        ]
    );
}

#[test]
fn e820_refuses_unaccepted_and_overlong_maps() {
    let un = [Region {
        start: 0,
        len: 0x1000,
        kind: RegionKind::Unaccepted,
    }];
    assert_eq!(e820_table(&un, &[], None), Err(LinuxError::Unaccepted));
    let many: Vec<Region> = (0..200)
        .map(|i| Region {
            start: 0x1_0000_0000 + i * 0x2000,
            len: 0x1000,
            kind: RegionKind::Ram,
        })
        .collect();
    assert_eq!(e820_table(&many, &[], None), Err(LinuxError::TooManyE820));
}

#[test]
fn zero_page_has_header_loader_fields_and_e820() {
    let s = setup();
    let l = parse_setup(&s, 0x100_0000).unwrap();
    let at = Placement {
        kernel: 0x200_0000,
        initrd: (0x800_0000, 0x1234),
        cmdline: 0x9000,
        setup_data: 0,
        acpi_rsdp: 0,
    };
    let e820 = e820_table(&[ram(0, 0x1000_0000)], &[], None).unwrap();
    let bp = boot_params(&s, &l, &at, &e820).unwrap();
    let b = bp.as_bytes();
    // the header came over byte for byte, then the loader's fields
    assert_eq!(&b[0x202..0x206], b"HdrS");
    assert_eq!(b[0x210], LOADER_TYPE_UNDEFINED);
    assert_eq!(b[0x211] & LOADED_HIGH, LOADED_HIGH);
    assert_eq!(&b[0x214..0x218], &0x200_0000u32.to_le_bytes());
    assert_eq!(&b[0x218..0x21C], &0x800_0000u32.to_le_bytes());
    assert_eq!(&b[0x21C..0x220], &0x1234u32.to_le_bytes());
    assert_eq!(&b[0x228..0x22C], &0x9000u32.to_le_bytes());
    assert_eq!(
        &b[0x250..0x258],
        &[0; 8],
        "QEMU's setup_data pointer is dropped"
    );
    assert_eq!(&b[0x260..0x264], &0x300_0000u32.to_le_bytes());
    assert_eq!(b[0x1E8], 3, "RAM, the legacy hole, RAM");
    assert_eq!(&b[0x2D0..0x2D8], &0u64.to_le_bytes());
    assert_eq!(&b[0x2D8..0x2E0], &0xA_0000u64.to_le_bytes());
    assert_eq!(&b[0x2E0..0x2E4], &E820_TYPE_RAM.to_le_bytes());
    assert_eq!(&b[0x2E4..0x2EC], &0xA_0000u64.to_le_bytes());
    // nothing outside the header and the fields above is set
    assert!(b[..0x1E8].iter().all(|&x| x == 0));
}

#[test]
fn zero_page_refuses_unaddressable_pieces() {
    let mut s = setup();
    s[0x236] = XLF_KERNEL_64 as u8; // initrd must end below initrd_addr_max
    let l = parse_setup(&s, 0).unwrap();
    let at = Placement {
        kernel: 0x200_0000,
        initrd: (0x8000_0000, 0x10),
        cmdline: 0x9000,
        setup_data: 0,
        acpi_rsdp: 0,
    };
    assert_eq!(
        boot_params(&s, &l, &at, &[]).err(),
        Some(LinuxError::Address("initrd", 0x8000_0000))
    );
    let at = Placement {
        kernel: 0x1_0000_0000,
        initrd: (0, 0),
        cmdline: 0x9000,
        setup_data: 0,
        acpi_rsdp: 0,
    };
    assert_eq!(
        boot_params(&s, &l, &at, &[]).err(),
        Some(LinuxError::Address("kernel", 0x1_0000_0000))
    );
}

#[test]
fn digests_cover_the_concatenation() {
    let d = PartDigests::of(&[b"ab", b"c"]);
    assert_eq!(d, PartDigests::of(&[b"abc"]));
    // SHA-256("abc"), FIPS 180-2 appendix B.1
    assert_eq!(d.sha256[..4], [0xba, 0x78, 0x16, 0xbf]);
}

#[test]
fn e820_under_snp_offers_only_validated_ram() {
    // QEMU's map: low RAM, RAM from 1 MiB to 3 GiB, RAM above 4 GiB
    let map = [
        ram(0, 0x9_FC00),
        ram(0x10_0000, 0xBFF0_0000),
        ram(0x1_0000_0000, 0x4000_0000),
    ];
    // validated: low RAM around the SNP pages, the heap's ranges around early RAM and the
    // shared window (unsorted, as a platform may hand them over)
    let usable = [
        (0xA0_0000, 0xC000_0000),
        (0x0, 0xA000),
        (0xD000, 0x9_F000),
        (0x50_0000, 0x60_0000),
    ];
    let t = e820_table(&map, &[(0x10_0000, 0x50_0000)], Some(&usable)).unwrap();
    let got: Vec<(u64, u64, u32)> = t.iter().map(|e| (e.addr, e.end(), e.typ)).collect();
    let (r, x) = (E820_TYPE_RAM, E820_TYPE_RESERVED);
    assert_eq!(
        got,
        [
            (0, 0xA000, r),
            (0xA000, 0xD000, x), // secrets, CPUID, kernel hashes
            (0xD000, 0x9_F000, r),
            (0x9_F000, 0x9_FC00, x),   // the unvalidated tail of low RAM
            (0x10_0000, 0x50_0000, x), // early RAM (the firmware's, in use)
            (0x50_0000, 0x60_0000, r),
            (0x60_0000, 0xA0_0000, x), // the shared window
            (0xA0_0000, 0xC000_0000, r),
            (0x1_0000_0000, 0x1_4000_0000, x), // not validated above 4 GiB
        ]
    );
    // None: everything RAM stays RAM (the plain VM)
    let all = e820_table(&map, &[], None).unwrap();
    assert!(all
        .iter()
        .any(|e| e.addr == 0x1_0000_0000 && e.typ == E820_TYPE_RAM));
}

#[test]
fn snp_cc_blob_and_its_setup_data_node() {
    let (blob, node) = snp_cc_blob(0xA000, 0xB000, 0x7FF0_0000).unwrap();
    let b = blob.as_bytes();
    assert_eq!(&b[0..4], b"AMDE", "CC_BLOB_SEV_HDR_MAGIC as Linux reads it");
    assert_eq!(&b[8..16], &0xA000u64.to_le_bytes());
    assert_eq!(&b[16..20], &4096u32.to_le_bytes());
    assert_eq!(&b[24..32], &0xB000u64.to_le_bytes());
    assert_eq!(&b[32..36], &4096u32.to_le_bytes());
    let n = node.as_bytes();
    assert_eq!(&n[0..8], &[0; 8], "the last node");
    assert_eq!(&n[8..12], &SETUP_CC_BLOB.to_le_bytes());
    assert_eq!(&n[12..16], &4u32.to_le_bytes());
    assert_eq!(&n[16..20], &0x7FF0_0000u32.to_le_bytes());
    assert_eq!(
        snp_cc_blob(0xA000, 0xB000, 0x1_0000_0000).err(),
        Some(LinuxError::Address("CC blob", 0x1_0000_0000))
    );
    // the zero page carries the list head
    let s = setup();
    let l = parse_setup(&s, 0x100_0000).unwrap();
    let at = Placement {
        kernel: 0x200_0000,
        initrd: (0, 0),
        cmdline: 0x9000,
        setup_data: 0x7FF0_1000,
        acpi_rsdp: 0x7FF0_2000,
    };
    let bp = boot_params(&s, &l, &at, &[]).unwrap();
    assert_eq!(&bp.as_bytes()[0x250..0x258], &0x7FF0_1000u64.to_le_bytes());
    assert_eq!(&bp.as_bytes()[0x70..0x78], &0x7FF0_2000u64.to_le_bytes());
}

#[test]
fn loader_fields_are_neither_measured_nor_passed_on() {
    let clean = setup();
    let mut patched = clean.clone();
    // what QEMU's x86_load_linux writes on a plain VM or under TDX
    patched[0x1FA..0x1FC].copy_from_slice(&0xFFFFu16.to_le_bytes()); // vid_mode
    patched[0x210] = 0xB0; // type_of_loader: QEMU
    patched[0x211] |= 0x80; // CAN_USE_HEAP
    patched[0x218..0x21C].copy_from_slice(&0x7000_0000u32.to_le_bytes());
    patched[0x224..0x226].copy_from_slice(&0xFE00u16.to_le_bytes());
    patched[0x228..0x22C].copy_from_slice(&0x2_0000u32.to_le_bytes());
    patched[0x250..0x258].copy_from_slice(&0x9_0000u64.to_le_bytes());
    assert_ne!(patched, clean);
    assert_eq!(
        loader_neutral_setup(&patched),
        loader_neutral_setup(&clean),
        "the measurement does not depend on the loader"
    );
    // the fields outside LOADER_FIELDS still count
    let mut other = clean.clone();
    other[0x260] ^= 1; // init_size
    assert_ne!(loader_neutral_setup(&other), loader_neutral_setup(&clean));
    // and none of the host's values reaches the zero page
    let l = parse_setup(&patched, 0x100_0000).unwrap();
    let at = Placement {
        kernel: 0x200_0000,
        initrd: (0, 0),
        cmdline: 0x9000,
        setup_data: 0,
        acpi_rsdp: 0,
    };
    let b = boot_params(&patched, &l, &at, &[]).unwrap();
    let b = b.as_bytes();
    assert_eq!(&b[0x1FA..0x1FC], &[0, 0]);
    assert_eq!(b[0x210], LOADER_TYPE_UNDEFINED);
    assert_eq!(b[0x211], LOADED_HIGH);
    assert_eq!(&b[0x218..0x220], &[0; 8]);
    assert_eq!(&b[0x224..0x228], &[0; 4]);
    assert_eq!(&b[0x250..0x258], &[0; 8]);
}

#[test]
fn the_boot_digests_node_carries_the_loader_neutral_kernel_and_chains_on() {
    let p = PayloadDigests {
        kernel: PartDigests::of(&[b"patched"]),
        kernel_neutral: PartDigests::of(&[b"neutral"]),
        initrd: PartDigests::of(&[b"initrd"]),
        cmdline: PartDigests::of(&[b"console=ttyS0\0"]),
    };
    let node = boot_digests_node(&[7; 48], &p, 0x1234_5000);
    let b = node.as_bytes();
    assert_eq!(b.len(), 16 + 200);
    assert_eq!(u64::from_le_bytes(b[0..8].try_into().unwrap()), 0x1234_5000);
    assert_eq!(&b[8..12], b"pupa", "type");
    assert_eq!(u32::from_le_bytes(b[12..16].try_into().unwrap()), 200);
    let d = BootDigests::from_bytes(&b[16..]).expect("a version-1 payload");
    assert_eq!(d.firmware, [7; 48]);
    assert_eq!(
        d.kernel, p.kernel_neutral.sha384,
        "the loader-neutral kernel"
    );
    assert_eq!(d.initrd, p.initrd.sha384);
    assert_eq!(d.cmdline, p.cmdline.sha384);
}
