//! The MADT reader on tables built as QEMU builds them (`hw/i386/acpi-common.c`
//! `acpi_build_madt`: Local APIC entries for IDs below 255, x2APIC entries above, flags 1
//! for present vCPUs; the checksum left 0 for the loader script) and on malformed ones.

use super::*;
use alloc::vec;

fn header(sig: &[u8; 4], len: usize) -> Vec<u8> {
    let mut h = vec![0u8; 36];
    h[..4].copy_from_slice(sig);
    h[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    h[8] = 1;
    h[10..16].copy_from_slice(b"BOCHS ");
    h
}

/// A MADT with `(id, enabled)` processors, then an I/O APIC entry (type 1, 12 bytes).
fn madt(cpus: &[(u32, bool)]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xFEE0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT
    for (uid, &(id, on)) in cpus.iter().enumerate() {
        if id < 255 {
            body.extend_from_slice(&[TYPE_LOCAL_APIC, 8, uid as u8, id as u8]);
            body.extend_from_slice(&u32::from(on).to_le_bytes());
        } else {
            body.extend_from_slice(&[TYPE_LOCAL_X2APIC, 16, 0, 0]);
            body.extend_from_slice(&id.to_le_bytes());
            body.extend_from_slice(&u32::from(on).to_le_bytes());
            body.extend_from_slice(&(uid as u32).to_le_bytes());
        }
    }
    body.extend_from_slice(&[1, 12, 0, 0, 0, 0, 0xC0, 0xFE, 0, 0, 0, 0]);
    let mut t = header(b"APIC", 36 + body.len());
    t.extend_from_slice(&body);
    t
}

/// `etc/acpi/tables` as QEMU lays it out: FACS, DSDT, FADT, MADT, then zero padding.
fn tables(madt: &[u8]) -> Vec<u8> {
    let mut facs = vec![0u8; 64];
    facs[..4].copy_from_slice(b"FACS");
    facs[4..8].copy_from_slice(&64u32.to_le_bytes());
    let mut out = facs;
    let mut dsdt = header(b"DSDT", 36 + 3000);
    dsdt.resize(36 + 3000, 0x5B);
    out.extend_from_slice(&dsdt);
    let mut fadt = header(b"FACP", 276);
    fadt.resize(276, 0);
    out.extend_from_slice(&fadt);
    out.extend_from_slice(madt);
    out.resize(out.len() + 4096, 0);
    out
}

/// Reads `t` as the fw_cfg data port does (zeros past the end).
fn find(t: &[u8]) -> Result<Vec<u8>, MadtError> {
    let mut pos = 0;
    let mut read = |buf: &mut [u8]| {
        for b in buf {
            *b = t.get(pos).copied().unwrap_or(0);
            pos += 1;
        }
    };
    find_table(&mut read, t.len(), MADT_SIGNATURE)
}

#[test]
fn qemu_topology_with_gaps() {
    // -smp 6,sockets=2,cores=3: QEMU's APIC IDs 0 1 2 4 5 6.
    let m = madt(&[
        (0, true),
        (1, true),
        (2, true),
        (4, true),
        (5, true),
        (6, true),
    ]);
    let t = tables(&m);
    assert_eq!(find(&t).unwrap(), m);
    assert_eq!(enabled_apic_ids(&m).unwrap(), [0, 1, 2, 4, 5, 6]);
}

#[test]
fn hotpluggable_slots_are_skipped_and_x2apic_ids_read() {
    // -smp 2,maxcpus=4 gives disabled entries for the two absent vCPUs; IDs >= 255 are x2APIC.
    let m = madt(&[(0, true), (1, true), (2, false), (300, true), (3, false)]);
    assert_eq!(enabled_apic_ids(&m).unwrap(), [0, 1, 300]);
}

#[test]
fn duplicates_count_once() {
    let m = madt(&[(0, true), (1, true), (1, true)]);
    assert_eq!(enabled_apic_ids(&m).unwrap(), [0, 1]);
}

#[test]
fn the_walk_stops_at_the_madt() {
    let m = madt(&[(0, true), (1, true)]);
    let t = tables(&m);
    let pos = core::cell::Cell::new(0usize);
    let mut read = |buf: &mut [u8]| {
        for b in buf {
            *b = t[pos.get()];
            pos.set(pos.get() + 1);
        }
    };
    find_table(&mut read, t.len(), MADT_SIGNATURE).unwrap();
    // FACS + DSDT + FADT + MADT, none of the padding.
    assert_eq!(pos.get(), 64 + 3036 + 276 + m.len());
}

#[test]
fn malformed_tables_are_refused() {
    let m = madt(&[(0, true), (1, true)]);
    // no MADT before the padding
    let mut t = tables(&m);
    let at = t.windows(4).position(|w| w == b"APIC").unwrap();
    t[at..at + 4].copy_from_slice(b"SSDT");
    assert_eq!(find(&t), Err(MadtError::NotFound("MADT")));
    // a length that runs past the file
    let mut t = tables(&m);
    t[64 + 4..64 + 8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        find(&t),
        Err(MadtError::BadLength { offset: 64, .. })
    ));
    // a length shorter than a header would loop forever if taken
    let mut t = tables(&m);
    t[4..8].copy_from_slice(&3u32.to_le_bytes());
    assert!(matches!(
        find(&t),
        Err(MadtError::BadLength {
            offset: 0,
            length: 3
        })
    ));
    // an oversized MADT
    let mut big = header(b"APIC", MAX_TABLE + 1);
    big.resize(MAX_TABLE + 1, 0);
    assert_eq!(find(&big), Err(MadtError::TooLarge(MAX_TABLE as u32 + 1)));
    // truncated stream: the file ends inside the tables
    assert!(find(&tables(&m)[..100]).is_err());
    // an entry of length 0 (would never advance) and one past the end
    for len in [0u8, 1, 200] {
        let mut bad = m.clone();
        bad[MADT_FIXED + 1] = len;
        assert_eq!(enabled_apic_ids(&bad), Err(MadtError::BadEntry(MADT_FIXED)));
    }
    // a Local APIC entry of the wrong length
    let mut bad = m.clone();
    bad[MADT_FIXED + 1] = 4;
    assert_eq!(enabled_apic_ids(&bad), Err(MadtError::BadEntry(MADT_FIXED)));
    // header length disagreeing with the table
    assert!(matches!(
        enabled_apic_ids(&m[..m.len() - 1]),
        Err(MadtError::BadLength { .. })
    ));
    assert!(enabled_apic_ids(&m[..10]).is_err());
}

#[test]
fn the_fallback_skips_the_boot_cpu() {
    assert_eq!(fallback_apic_ids(0, 3), [1, 2, 3]);
    assert_eq!(fallback_apic_ids(2, 3), [0, 1, 3]);
    assert_eq!(fallback_apic_ids(0, 0), [] as [u32; 0]);
}
