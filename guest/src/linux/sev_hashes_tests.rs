//! Host tests of the SEV hashes table check against tables built as QEMU's
//! `sev_add_kernel_loader_hashes` builds them.

use super::*;
use crate::linux::PartDigests;

const KERNEL: (&[u8], &[u8]) = (b"setup-sectors", b"protected-mode kernel");
const INITRD: &[u8] = b"070701 initramfs";
const CMDLINE: &[u8] = b"console=ttyS0\0";

fn payload() -> Hashes {
    Hashes {
        kernel: PartDigests::of(&[KERNEL.0, KERNEL.1]).sha256,
        initrd: PartDigests::of(&[INITRD]).sha256,
        cmdline: PartDigests::of(&[CMDLINE]).sha256,
    }
}

fn entry(guid: [u8; 16], hash: [u8; 32]) -> Vec<u8> {
    [&guid[..], &50u16.to_le_bytes(), &hash].concat()
}

/// `PaddedSevHashTable`: header, cmdline, initrd, kernel entries, zero padding to 16 bytes.
fn qemu_table(h: &Hashes) -> Vec<u8> {
    let mut t = [&TABLE_GUID[..], &168u16.to_le_bytes()].concat();
    t.extend(entry(CMDLINE_GUID, h.cmdline));
    t.extend(entry(INITRD_GUID, h.initrd));
    t.extend(entry(KERNEL_GUID, h.kernel));
    assert_eq!(t.len(), 168);
    t.resize(176, 0);
    t
}

#[test]
fn guids_are_in_efi_byte_order() {
    // uuid.UUID("9438d606-4f22-4cc9-b479-a793d411fd21").bytes_le
    assert_eq!(
        TABLE_GUID,
        [
            0x06, 0xd6, 0x38, 0x94, 0x22, 0x4f, 0xc9, 0x4c, 0xb4, 0x79, 0xa7, 0x93, 0xd4, 0x11,
            0xfd, 0x21
        ]
    );
    assert_eq!(KERNEL_GUID[..4], [0x37, 0x94, 0xe7, 0x4d]);
}

#[test]
fn a_matching_payload_passes() {
    let t = qemu_table(&payload());
    assert_eq!(parse(&t), Ok(payload()));
    assert_eq!(check(&t, &payload()), Ok(()));
    // the area QEMU declares may be longer than the table (a page)
    let mut page = t.clone();
    page.resize(4096, 0);
    assert_eq!(check(&page, &payload()), Ok(()));
}

#[test]
fn any_differing_part_is_refused() {
    let t = qemu_table(&payload());
    let mut p = payload();
    p.kernel[0] ^= 1;
    assert_eq!(check(&t, &p), Err(HashesError::Mismatch(Part::Kernel)));
    let mut p = payload();
    p.initrd[31] ^= 0x80;
    assert_eq!(check(&t, &p), Err(HashesError::Mismatch(Part::Initrd)));
    let mut p = payload();
    p.cmdline = PartDigests::of(&[b"console=ttyS0 init=/bin/sh\0"]).sha256;
    assert_eq!(check(&t, &p), Err(HashesError::Mismatch(Part::Cmdline)));
}

#[test]
fn malformed_tables_are_typed_errors() {
    let good = qemu_table(&payload());
    let mut t = good.clone();
    t[0] ^= 1;
    assert_eq!(parse(&t), Err(HashesError::NoTable));
    let mut t = good.clone();
    t[16..18].copy_from_slice(&5000u16.to_le_bytes());
    assert_eq!(parse(&t), Err(HashesError::Length(5000)));
    let mut t = good.clone();
    t[16..18].copy_from_slice(&10u16.to_le_bytes());
    assert_eq!(parse(&t), Err(HashesError::Length(10)));
    // an entry claiming more than the table
    let mut t = good.clone();
    t[18 + 16..18 + 18].copy_from_slice(&200u16.to_le_bytes());
    assert_eq!(parse(&t), Err(HashesError::Entry(18)));
    // a known entry with a length other than 50
    let mut t = good.clone();
    t[18 + 16..18 + 18].copy_from_slice(&18u16.to_le_bytes());
    assert_eq!(parse(&t), Err(HashesError::Entry(18)));
    // the kernel entry's GUID changed: no kernel entry
    let mut t = good.clone();
    t[118] ^= 1;
    assert_eq!(parse(&t), Err(HashesError::Missing(Part::Kernel)));
    // two initrd entries (the second replaces the cmdline entry)
    let mut t = good.clone();
    t[18..34].copy_from_slice(&INITRD_GUID);
    assert_eq!(parse(&t), Err(HashesError::Missing(Part::Initrd)));
}

#[test]
fn truncated_or_random_areas_never_panic() {
    let good = qemu_table(&payload());
    for n in 0..good.len() {
        let r = parse(&good[..n]);
        assert!(n >= 168 || r.is_err(), "length {n}");
    }
    let mut x = 0x1234_5678u32;
    for _ in 0..2000 {
        let mut t = good.clone();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let i = x as usize % t.len();
        t[i] = (x >> 8) as u8;
        let _ = parse(&t);
    }
}
