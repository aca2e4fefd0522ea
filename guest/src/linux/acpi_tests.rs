use super::*;
use alloc::vec;

fn entry(cmd: u32, body: &[u8]) -> Vec<u8> {
    let mut e = vec![0u8; ENTRY_LEN];
    e[..4].copy_from_slice(&cmd.to_le_bytes());
    e[4..4 + body.len()].copy_from_slice(body);
    e
}

fn fname(n: &str) -> [u8; FILESZ] {
    let mut f = [0u8; FILESZ];
    f[..n.len()].copy_from_slice(n.as_bytes());
    f
}

fn allocate(n: &str, align: u32, zone: u8) -> Vec<u8> {
    let mut b = fname(n).to_vec();
    b.extend(align.to_le_bytes());
    b.push(zone);
    entry(CMD_ALLOCATE, &b)
}

fn pointer(dest: &str, src: &str, offset: u32, size: u8) -> Vec<u8> {
    let mut b = fname(dest).to_vec();
    b.extend(fname(src));
    b.extend(offset.to_le_bytes());
    b.push(size);
    entry(CMD_ADD_POINTER, &b)
}

fn checksum(file: &str, offset: u32, start: u32, length: u32) -> Vec<u8> {
    let mut b = fname(file).to_vec();
    for v in [offset, start, length] {
        b.extend(v.to_le_bytes());
    }
    entry(CMD_ADD_CHECKSUM, &b)
}

/// An ACPI 2.0 RSDP (36 bytes) whose RSDT field (offset 16, 4 bytes) and XSDT field (offset
/// 24, 8 bytes) hold offsets into etc/acpi/tables, as QEMU's build_rsdp writes them.
fn rsdp(rsdt: u32, xsdt: u64) -> Vec<u8> {
    let mut r = vec![0u8; 36];
    r[..8].copy_from_slice(b"RSD PTR ");
    r[15] = 2;
    r[16..20].copy_from_slice(&rsdt.to_le_bytes());
    r[20..24].copy_from_slice(&36u32.to_le_bytes());
    r[24..32].copy_from_slice(&xsdt.to_le_bytes());
    r
}

fn files(name: &str) -> Result<Vec<u8>, &'static str> {
    match name {
        "etc/acpi/rsdp" => Ok(rsdp(0x40, 0x80)),
        "etc/acpi/tables" => Ok((0..0x200u32).map(|i| i as u8).collect()),
        _ => Err("file not found"),
    }
}

/// QEMU's script for a q35 machine, reduced: tables (align 64, HIGH), RSDP (align 16, FSEG),
/// the RSDP's two pointers, its two checksums (ACPI 6.5 §5.2.5.3: the first 20 bytes, then
/// all 36).
fn qemu_like_script() -> Vec<u8> {
    [
        allocate("etc/acpi/tables", 64, 1),
        allocate("etc/acpi/rsdp", 16, 2),
        pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4),
        pointer("etc/acpi/rsdp", "etc/acpi/tables", 24, 8),
        checksum("etc/acpi/rsdp", 8, 0, 20),
        checksum("etc/acpi/rsdp", 32, 0, 36),
        entry(CMD_WRITE_POINTER, &[0; 8]),
        vec![0u8; ENTRY_LEN],
    ]
    .concat()
}

#[test]
fn loads_links_and_checksums_like_qemu_asks() {
    let mut t = Tables::load(&qemu_like_script(), files).unwrap();
    assert_eq!(t.blobs.len(), 2);
    assert_eq!(t.skipped, 1, "WRITE_POINTER is skipped");
    assert_eq!((t.blobs[0].offset, t.blobs[1].offset), (0, 0x200));
    assert_eq!(t.len, 0x200 + 36);
    let base = 0x7000_0000;
    t.link(base).unwrap();
    let r = &t.blobs[1].bytes;
    assert_eq!(&r[16..20], &(0x7000_0040u32).to_le_bytes());
    assert_eq!(&r[24..32], &(0x7000_0080u64).to_le_bytes());
    let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    assert_eq!(sum(&r[..20]), 0, "ACPI 1.0 checksum");
    assert_eq!(sum(&r[..36]), 0, "extended checksum");
    assert_eq!(t.rsdp_offset(), 0x200);
}

#[test]
fn hostile_scripts_are_refused() {
    let load = |s: &[u8]| Tables::load(s, files).err();
    assert_eq!(load(&[0u8; 100]), Some(AcpiError::LoaderLength(100)));
    let mut bad_name = allocate("etc/acpi/rsdp", 16, 2);
    bad_name[4..4 + FILESZ].fill(b'a');
    assert_eq!(load(&bad_name), Some(AcpiError::Name(0)));
    assert_eq!(
        load(&allocate("etc/acpi/rsdp", 3, 2)),
        Some(AcpiError::Align(0, 3))
    );
    let twice = [
        allocate("etc/acpi/rsdp", 16, 2),
        allocate("etc/acpi/rsdp", 16, 2),
    ]
    .concat();
    assert_eq!(
        load(&twice),
        Some(AcpiError::Duplicate(1, "etc/acpi/rsdp".into()))
    );
    assert!(matches!(
        load(&allocate("etc/missing", 16, 1)),
        Some(AcpiError::File(..))
    ));
    assert_eq!(
        load(&allocate("etc/acpi/tables", 64, 1)),
        Some(AcpiError::NoRsdp)
    );

    let link = |extra: Vec<u8>| {
        let s = [
            allocate("etc/acpi/tables", 64, 1),
            allocate("etc/acpi/rsdp", 16, 2),
            extra,
        ]
        .concat();
        Tables::load(&s, files).unwrap().link(0x7000_0000).err()
    };
    assert_eq!(
        link(pointer("etc/acpi/rsdp", "etc/nothing", 16, 4)),
        Some(AcpiError::Unallocated(2, "etc/nothing".into()))
    );
    assert_eq!(
        link(pointer("etc/acpi/rsdp", "etc/acpi/tables", 33, 4)),
        Some(AcpiError::Bounds(2))
    );
    assert_eq!(
        link(pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 3)),
        Some(AcpiError::Bounds(2))
    );
    assert_eq!(
        link(checksum("etc/acpi/rsdp", 36, 0, 20)),
        Some(AcpiError::Bounds(2))
    );
    assert_eq!(
        link(checksum("etc/acpi/rsdp", 8, 30, 20)),
        Some(AcpiError::Bounds(2))
    );
    assert_eq!(
        link(checksum("etc/acpi/rsdp", 8, u32::MAX, 2)),
        Some(AcpiError::Bounds(2))
    );
    // a 1-byte pointer field cannot hold a 32-bit address
    assert_eq!(
        link(pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 1)),
        Some(AcpiError::PointerOverflow(2, 1))
    );
}

#[test]
fn file_count_and_size_are_bounded() {
    let many: Vec<u8> = (0..=MAX_FILES)
        .flat_map(|i| allocate(&alloc::format!("etc/f{i}"), 16, 1))
        .collect();
    let small = |_: &str| Ok::<_, &str>(vec![0u8; 16]);
    assert_eq!(Tables::load(&many, small).err(), Some(AcpiError::TooMuch));
    let big = |_: &str| Ok::<_, &str>(vec![0u8; MAX_TOTAL / 2 + 1]);
    let two = [allocate("etc/a", 16, 1), allocate("etc/b", 16, 1)].concat();
    assert_eq!(Tables::load(&two, big).err(), Some(AcpiError::TooMuch));
}

/// etc/acpi/tables with an RSDT at 0x40 (2 entries) and an XSDT at 0x80 (2 entries), as
/// offsets the loader turns into addresses.
fn tables_with_roots() -> Vec<u8> {
    let mut t = vec![0u8; 0x200];
    for (at, sig, entry) in [(0x40usize, b"RSDT", 4usize), (0x80, b"XSDT", 8)] {
        t[at..at + 4].copy_from_slice(sig);
        let len = (SDT_HEADER_LEN + 2 * entry) as u32;
        t[at + 4..at + 8].copy_from_slice(&len.to_le_bytes());
        t[at + 9] = 0x5A;
    }
    t
}

#[test]
fn a_table_joins_the_rsdt_and_xsdt_and_every_checksum_holds() {
    let files = |n: &str| match n {
        "etc/acpi/rsdp" => Ok(rsdp(0x40, 0x80)),
        "etc/acpi/tables" => Ok(tables_with_roots()),
        _ => Err("file not found"),
    };
    let mut t = Tables::load(&qemu_like_script(), files).unwrap();
    let base = 0x7000_0000;
    t.link(base).unwrap();
    let roots = t
        .add_root_entry(base, 0x7100_0000, 0x7200_0000, 0x7200_1000)
        .unwrap();
    let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
    let rsdt = roots.rsdt;
    assert_eq!(rsdt.len(), SDT_HEADER_LEN + 12);
    assert_eq!(&rsdt[4..8], &(48u32).to_le_bytes());
    assert_eq!(&rsdt[44..48], &0x7100_0000u32.to_le_bytes());
    assert_eq!(sum(&rsdt), 0);
    let xsdt = roots.xsdt.unwrap();
    assert_eq!(xsdt.len(), SDT_HEADER_LEN + 24);
    assert_eq!(&xsdt[52..60], &0x7100_0000u64.to_le_bytes());
    assert_eq!(sum(&xsdt), 0);
    let r = &t.blobs[1].bytes;
    assert_eq!(&r[16..20], &0x7200_0000u32.to_le_bytes());
    assert_eq!(&r[24..32], &0x7200_1000u64.to_le_bytes());
    assert_eq!((sum(&r[..20]), sum(&r[..36])), (0, 0));

    let ccel = ccel_table(0x7300_0000, 0x1_0000);
    assert_eq!(&ccel[..4], b"CCEL");
    assert_eq!(sum(&ccel), 0);
    assert_eq!(ccel[36], CCEL_CC_TYPE_TDX);
    assert_eq!(&ccel[40..48], &0x1_0000u64.to_le_bytes());
    assert_eq!(&ccel[48..56], &0x7300_0000u64.to_le_bytes());
}

#[test]
fn root_tables_outside_the_files_are_refused() {
    // the RSDP's RSDT offset points past etc/acpi/tables
    let files = |n: &str| match n {
        "etc/acpi/rsdp" => Ok(rsdp(0x1000, 0x80)),
        "etc/acpi/tables" => Ok(tables_with_roots()),
        _ => Err("file not found"),
    };
    let mut t = Tables::load(&qemu_like_script(), files).unwrap();
    t.link(0x7000_0000).unwrap();
    assert_eq!(
        t.add_root_entry(0x7000_0000, 1, 2, 3).err(),
        Some(AcpiError::Root)
    );
    // an RSDT whose length runs past its file
    let long = |n: &str| match n {
        "etc/acpi/rsdp" => Ok(rsdp(0x1F0, 0x80)),
        "etc/acpi/tables" => {
            let mut t = tables_with_roots();
            t[0x1F4..0x1F8].copy_from_slice(&0x40u32.to_le_bytes());
            Ok(t)
        }
        _ => Err("file not found"),
    };
    let mut t = Tables::load(&qemu_like_script(), long).unwrap();
    t.link(0x7000_0000).unwrap();
    assert_eq!(
        t.add_root_entry(0x7000_0000, 1, 2, 3).err(),
        Some(AcpiError::Root)
    );
}
