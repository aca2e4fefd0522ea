//! Malformed firmware is rejected with a specific error, and no input panics the parser.

mod common;

use common::{pupa_like, Synth, Tdvf};
use pupa_measurements::guid::{self, Guid};
use pupa_measurements::ovmf::OvmfError;
use pupa_measurements::Firmware;

const SIZE: usize = 64 * 1024;

fn parse(img: &[u8]) -> Result<Firmware, OvmfError> {
    Firmware::parse(img)
}

#[test]
fn well_formed_synthetic_image_parses_completely() {
    let fw = parse(&pupa_like(SIZE).build()).unwrap();
    assert_eq!(fw.load_gpa(), (1 << 32) - SIZE as u64);
    assert_eq!(fw.sev_es_reset_eip(), Some(0xfff0_1000));
    assert_eq!(fw.sev_sections().unwrap().len(), 4);
    assert_eq!(fw.tdvf_sections().unwrap().len(), 3);
    assert_eq!(fw.entries().len(), 3);
    let text = fw.describe();
    for needle in [
        "SNP_SEC_MEM",
        "SNP_SECRETS",
        "CPUID",
        "BFV",
        "TD_HOB",
        "TEMP_MEM",
        "MR.EXTEND",
        "00f771de-1a7e-4fcb-890e-68c77e2fb44e",
    ] {
        assert!(text.contains(needle), "describe() lacks {needle}:\n{text}");
    }
}

#[test]
fn size_and_footer() {
    assert_eq!(parse(&[0u8; 0x20]), Err(OvmfError::TooSmall { size: 0x20 }));
    let img = pupa_like(SIZE).build();
    assert_eq!(
        parse(&img[1..]),
        Err(OvmfError::NotPageMultiple { size: SIZE - 1 })
    );
    let mut no_footer = img.clone();
    no_footer[SIZE - 0x30..SIZE - 0x20].fill(0);
    assert!(matches!(parse(&no_footer), Err(OvmfError::NoFooter { .. })));
    assert!(matches!(
        parse(&vec![0xffu8; SIZE]),
        Err(OvmfError::NoFooter { .. })
    ));
}

fn set_u16(img: &mut [u8], at: usize, v: u16) {
    img[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn bad_table_and_entry_lengths() {
    let img = pupa_like(SIZE).build();
    let footer_len_at = SIZE - 0x32;
    for bad in [0u16, 17, 0xffff] {
        let mut m = img.clone();
        set_u16(&mut m, footer_len_at, bad);
        // 0xffff exceeds nothing in a 64 KiB file but walks into non-table bytes.
        let e = parse(&m).unwrap_err();
        assert!(
            matches!(
                e,
                OvmfError::BadTableLength { .. }
                    | OvmfError::BadEntryLength { .. }
                    | OvmfError::DuplicateEntry(_)
                    | OvmfError::TrailingBytes(_)
            ),
            "len {bad}: {e}"
        );
    }
    let mut m = img.clone();
    set_u16(&mut m, footer_len_at, 0xffff);
    let tiny = &m[SIZE - 4096..];
    assert!(matches!(
        parse(tiny),
        Err(OvmfError::BadTableLength { len: 0xffff, .. })
    ));
    // First entry below the footer: its length field is at end-0x32-18.
    let entry_len_at = footer_len_at - 18;
    for (bad, what) in [
        (5u16, "shorter than its header"),
        (0x400, "longer than the table"),
    ] {
        let mut m = img.clone();
        set_u16(&mut m, entry_len_at, bad);
        assert!(
            matches!(parse(&m), Err(OvmfError::BadEntryLength { .. })),
            "{what}"
        );
    }
    // A table whose length leaves stray bytes before the first entry.
    let mut m = img.clone();
    let len = u16::from_le_bytes([m[footer_len_at], m[footer_len_at + 1]]);
    set_u16(&mut m, footer_len_at, len + 3);
    assert_eq!(parse(&m), Err(OvmfError::TrailingBytes(3)));
}

#[test]
fn duplicate_and_short_entries() {
    let mut s = pupa_like(SIZE);
    s.entries.push((guid::SEV_ES_RESET_BLOCK, vec![0; 6]));
    assert_eq!(
        parse(&s.build()),
        Err(OvmfError::DuplicateEntry(guid::SEV_ES_RESET_BLOCK))
    );
    let mut s = Synth::new(SIZE);
    s.reset_eip = None;
    s.entries.push((guid::SEV_ES_RESET_BLOCK, vec![0; 3]));
    assert!(matches!(
        parse(&s.build()),
        Err(OvmfError::EntryTooShort {
            len: 3,
            need: 4,
            ..
        })
    ));
    // Unknown GUIDs are kept, not rejected.
    let mut s = Synth::new(SIZE);
    let other: Guid = "12345678-9abc-def0-1122-334455667788".parse().unwrap();
    s.entries.push((other, vec![1, 2, 3]));
    assert_eq!(
        parse(&s.build()).unwrap().entry(&other),
        Some(&[1u8, 2, 3][..])
    );
}

#[test]
fn metadata_pointing_outside_the_file() {
    for g in [guid::SEV_METADATA, guid::TDX_METADATA_OFFSET] {
        for off in [SIZE as u32 + 0x1000, 8, 0] {
            let mut s = Synth::new(SIZE);
            s.entries.push((g, off.to_le_bytes().to_vec()));
            assert!(
                matches!(parse(&s.build()), Err(OvmfError::OutOfFile { .. })),
                "{g} offset {off:#x}"
            );
        }
    }
}

#[test]
fn bad_metadata_headers() {
    let img = pupa_like(SIZE).build();
    let asev = SIZE - 0x800;
    let tdvf = SIZE - 0x600;
    let mut m = img.clone();
    m[asev] = b'X';
    assert!(matches!(parse(&m), Err(OvmfError::BadSignature { .. })));
    let mut m = img.clone();
    m[tdvf + 8] = 2;
    assert!(matches!(
        parse(&m),
        Err(OvmfError::BadVersion { version: 2, .. })
    ));
    let mut m = img.clone();
    m[asev + 12] = 200; // section count disagrees with length
    assert!(matches!(
        parse(&m),
        Err(OvmfError::BadBlockLength { count: 200, .. })
    ));
    let mut m = img.clone();
    m[tdvf + 4] = 0x31; // length 0x31 for 3 sections
    assert!(matches!(parse(&m), Err(OvmfError::BadBlockLength { .. })));
    let mut s = pupa_like(SIZE);
    s.asev = Some(vec![]);
    assert!(matches!(parse(&s.build()), Err(OvmfError::NoSections(_))));
}

#[test]
fn bad_sev_sections() {
    type Case = (Vec<(u32, u32, u32)>, fn(&OvmfError) -> bool);
    let cases: Vec<Case> = vec![
        (vec![(0x80_0000, 0x1000, 7)], |e| {
            matches!(e, OvmfError::UnknownSevType { kind: 7, .. })
        }),
        (vec![(0x80_0800, 0x1000, 1)], |e| {
            matches!(
                e,
                OvmfError::BadSection {
                    problem: "not 4 KiB aligned",
                    ..
                }
            )
        }),
        (vec![(0x80_0000, 0x1800, 1)], |e| {
            matches!(
                e,
                OvmfError::BadSection {
                    problem: "not 4 KiB aligned",
                    ..
                }
            )
        }),
        (vec![(0x80_0000, 0, 1)], |e| {
            matches!(
                e,
                OvmfError::BadSection {
                    problem: "empty",
                    ..
                }
            )
        }),
        (vec![(0x80_0000, 0x2000, 2)], |e| {
            matches!(e, OvmfError::BadSection { .. })
        }),
        (vec![(0x80_0000, 0x4000, 1), (0x80_3000, 0x1000, 3)], |e| {
            matches!(e, OvmfError::Overlap { a: 0, b: 1, .. })
        }),
        (vec![(0xffff_f000, 0x1000, 1)], |e| {
            matches!(e, OvmfError::OverlapsFirmware { .. })
        }),
    ];
    for (secs, ok) in cases {
        let mut s = Synth::new(SIZE);
        s.asev = Some(secs.clone());
        let e = parse(&s.build()).unwrap_err();
        assert!(ok(&e), "{secs:x?}: got {e}");
    }
}

fn t(data_offset: u32, raw_size: u32, gpa: u64, mem_size: u64, kind: u32, attributes: u32) -> Tdvf {
    Tdvf {
        data_offset,
        raw_size,
        gpa,
        mem_size,
        kind,
        attributes,
    }
}

#[test]
fn bad_tdvf_sections() {
    let hob = t(0, 0, 0x10_0000, 0x1000, 2, 0);
    let cases: Vec<(Tdvf, &str)> = vec![
        (t(0, 0x1000, 0x20_0800, 0x1000, 0, 1), "not 4 KiB aligned"),
        (t(0, 0x1000, 0x20_0000, 0x1800, 0, 1), "not 4 KiB aligned"),
        (t(0, 0x2000, 0x20_0000, 0x1000, 0, 1), "exceeds memory size"),
        (t(0, 0x1000, 0x20_0000, 0x1000, 9, 0), "unknown type"),
        (t(0, 0x1000, 0x20_0000, 0x1000, 0, 4), "unknown attribute"),
        (t(0, 0x1000, 0x20_0000, 0x1000, 0, 3), "PAGE.AUG together"),
        (t(0, 0, 0x20_0000, 0x1000, 0, 1), "raw size 0"),
        (t(0, 0x1000, 0x20_0000, 0x1000, 3, 0), "must be 0"),
        (t(0x800, 0x1000, 0x20_0000, 0x1000, 0, 1), "data offset"),
        (t(0, 0x1000, 0x10_0000, 0x1000, 0, 1), "overlap"),
        (t(0, 0, 0x20_0000, 0, 3, 0), "empty"),
        (t(0, 0, u64::MAX - 0xfff, 0x1000, 3, 0), "52-bit"),
        (t(0, 0, 1 << 40, 1 << 40, 3, 1), "in total"),
    ];
    for (bad, want) in cases {
        let mut s = Synth::new(SIZE);
        s.tdvf = Some(vec![hob, bad]);
        let e = parse(&s.build()).unwrap_err().to_string();
        assert!(
            e.contains(want),
            "{bad:x?}: got {e:?}, want it to mention {want:?}"
        );
    }
}

#[test]
fn mutated_images_never_panic() {
    // A deterministic sweep of byte and length mutations over the metadata tail of real and
    // synthetic images; every result must be Ok or a specific error (cargo-fuzz goes further).
    let mut imgs = vec![pupa_like(SIZE).build()];
    for f in ["ovmf_AmdSev_suffix.bin", "ovmf_OvmfX64_suffix.bin"] {
        imgs.push(std::fs::read(format!("{}/testdata/{f}", env!("CARGO_MANIFEST_DIR"))).unwrap());
    }
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for img in &imgs {
        let n = img.len();
        for _ in 0..3000 {
            let mut m = img.clone();
            for _ in 0..1 + next() % 4 {
                let at = n - 1 - (next() as usize % 0x900.min(n));
                m[at] = next() as u8;
            }
            if let Ok(fw) = Firmware::parse(&m) {
                let _ = fw.describe();
                let cfg = pupa_measurements::snp::SnpConfig::new(
                    2,
                    pupa_measurements::snp::CpuType::Milan,
                );
                let _ = pupa_measurements::snp::launch_digest(&fw, &cfg);
                let _ = pupa_measurements::tdx::mrtd(&fw, pupa_measurements::tdx::Order::Single);
            }
        }
    }
}
