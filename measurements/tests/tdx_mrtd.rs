//! MRTD of synthetic TDVF images against an independent model of the TDX module.
//!
//! The model below is written from the Intel TDX Module ABI Specification's descriptions of
//! the leaf functions (not from `src/tdx.rs`): the VMM flow is first turned into the list of
//! SEAMCALLs it issues, then the "module" replays them:
//! - TDH.MEM.PAGE.ADD: MRTD.update(128-byte buffer: "MEM.PAGE.ADD" at byte 0, GPA at byte 16);
//! - TDH.MR.EXTEND: MRTD.update(128-byte buffer: "MR.EXTEND" at byte 0, GPA at byte 16),
//!   then MRTD.update(the 256 bytes of the chunk);
//! - TDH.MR.FINALIZE: MRTD = SHA-384 finalize.
//!
//! VMM flows modelled: QEMU ≥ 10.1 / Linux ≥ 6.16 KVM guest_memfd (`KVM_TDX_INIT_MEM_REGION` per section: for
//! each page PAGE.ADD, then its 16 MR.EXTENDs) and the older two-pass flow (per section: all
//! PAGE.ADDs, then all MR.EXTENDs). In the two-pass flow PAGE.AUG sections are accepted later by
//! the guest and issue no SEAMCALL before finalization; QEMU ignores PAGE.AUG, so the single-pass
//! model refuses such images (`page_aug_is_refused_for_the_qemu_order`).

mod common;

use common::{pupa_like, Synth, Tdvf};
use pupa_measurements::ovmf::OvmfError;
use pupa_measurements::tdx::{self, Order, TdxError};
use pupa_measurements::Firmware;
use sha2::{Digest, Sha384};

enum Seamcall {
    PageAdd { gpa: u64 },
    MrExtend { gpa: u64, chunk: Vec<u8> },
}

/// The SEAMCALLs a VMM issues to build the TD from `img` with `sections`.
fn vmm_flow(img: &[u8], sections: &[Tdvf], two_pass: bool) -> Vec<Seamcall> {
    let mut calls = Vec::new();
    for s in sections {
        if s.attributes & 2 != 0 {
            continue; // PAGE.AUG: added post-launch, not part of the build
        }
        let pages: Vec<u64> = (0..s.mem_size / 4096).collect();
        // Memory contents as the VMM provides them: image bytes for BFV/CFV (types 0/1),
        // fresh zeroed memory otherwise.
        let content = |page: u64| -> Vec<u8> {
            if s.kind <= 1 {
                let at = s.data_offset as usize + page as usize * 4096;
                img[at..at + 4096].to_vec()
            } else {
                vec![0; 4096]
            }
        };
        let extends = |page: u64| -> Vec<Seamcall> {
            if s.attributes & 1 == 0 {
                return vec![];
            }
            let c = content(page);
            (0..16)
                .map(|i| Seamcall::MrExtend {
                    gpa: s.gpa + page * 4096 + i * 256,
                    chunk: c[i as usize * 256..][..256].to_vec(),
                })
                .collect()
        };
        if two_pass {
            calls.extend(pages.iter().map(|&p| Seamcall::PageAdd {
                gpa: s.gpa + p * 4096,
            }));
            for &p in &pages {
                calls.extend(extends(p));
            }
        } else {
            for &p in &pages {
                calls.push(Seamcall::PageAdd {
                    gpa: s.gpa + p * 4096,
                });
                calls.extend(extends(p));
            }
        }
    }
    calls
}

/// The TDX module's MRTD over a sequence of SEAMCALLs.
fn tdx_module_mrtd(calls: &[Seamcall]) -> [u8; 48] {
    let mut mrtd = Sha384::new();
    for c in calls {
        let mut buf = [0u8; 128];
        match c {
            Seamcall::PageAdd { gpa } => {
                buf[..12].copy_from_slice(b"MEM.PAGE.ADD");
                buf[16..24].copy_from_slice(&gpa.to_le_bytes());
                mrtd.update(buf);
            }
            Seamcall::MrExtend { gpa, chunk } => {
                buf[..9].copy_from_slice(b"MR.EXTEND");
                buf[16..24].copy_from_slice(&gpa.to_le_bytes());
                mrtd.update(buf);
                mrtd.update(chunk);
            }
        }
    }
    mrtd.finalize().into()
}

fn check_both_orders(s: &Synth) {
    let img = s.build();
    let fw = Firmware::parse(&img).expect("synthetic image parses");
    let secs = s.tdvf.as_ref().unwrap();
    let single = tdx::mrtd(&fw, Order::Single).unwrap();
    let two = tdx::mrtd(&fw, Order::TwoPass).unwrap();
    assert_eq!(
        single,
        tdx_module_mrtd(&vmm_flow(&img, secs, false)),
        "single pass"
    );
    assert_eq!(
        two,
        tdx_module_mrtd(&vmm_flow(&img, secs, true)),
        "two pass"
    );
    let extends_any = secs.iter().any(|s| s.attributes & 1 != 0);
    let multi_page_extend = secs
        .iter()
        .any(|s| s.attributes & 1 != 0 && s.mem_size > 4096);
    if multi_page_extend {
        assert_ne!(
            single, two,
            "orders must differ when a multi-page section is extended"
        );
    } else if !extends_any {
        assert_eq!(single, two, "without MR.EXTEND the orders coincide");
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
fn pupa_layout() {
    check_both_orders(&pupa_like(64 * 1024));
}

#[test]
fn several_layouts() {
    let size = 128 * 1024;
    let top = (1u64 << 32) - size as u64;
    let layouts: Vec<Vec<Tdvf>> = vec![
        // OVMF-like: BFV + CFV (CFV not extended), TD_HOB, TEMP_MEM.
        vec![
            t(0x8000, 0x18000, top + 0x8000, 0x18000, 0, 1),
            t(0, 0x8000, top, 0x8000, 1, 0),
            t(0, 0, 0x80_9000, 0x2000, 2, 0),
            t(0, 0, 0x80_0000, 0x9000, 3, 0),
        ],
        // No section extended at all.
        vec![
            t(0, 0x20000, top, 0x20000, 0, 0),
            t(0, 0, 0x10_0000, 0x1000, 2, 0),
        ],
        // raw size smaller than memory size: the VMM still copies (and extends) mem_size bytes.
        vec![
            t(0x1000, 0x1800, 0x40_0000, 0x3000, 0, 1),
            t(0, 0, 0x10_0000, 0x1000, 2, 0),
        ],
        // TEMP_MEM with MR.EXTEND: extended over zero memory.
        vec![
            t(0, 0x4000, top, 0x4000, 0, 1),
            t(0, 0, 0x1000, 0x3000, 3, 1),
            t(0, 0, 0x10_0000, 0x1000, 2, 0),
        ],
        // Single-page extended sections only: orders coincide page-wise but PAGE.ADD of the
        // next section still follows.
        vec![
            t(0x3000, 0x1000, 0x9000, 0x1000, 0, 1),
            t(0x5000, 0x1000, 0x7000, 0x1000, 1, 1),
            t(0, 0, 0x10_0000, 0x1000, 2, 0),
        ],
    ];
    for (i, secs) in layouts.into_iter().enumerate() {
        let mut s = Synth::new(size);
        s.seed = 100 + i as u64;
        s.tdvf = Some(secs);
        check_both_orders(&s);
    }
}

/// T6: upstream QEMU (`hw/i386/tdvf.c` reads the attributes; `target/i386/kvm/tdx.c`
/// `tdx_init_fw_mem_region` issues KVM_TDX_INIT_MEM_REGION for every section, flags only from
/// MR.EXTEND) ignores PAGE.AUG and adds such a section with TDH.MEM.PAGE.ADD before launch,
/// so the single-pass (QEMU) model cannot give the MRTD of an image with one: it refuses. The
/// two-pass model of the older stacks keeps the TDVF spec's meaning (not added, not measured).
#[test]
fn page_aug_is_refused_for_the_qemu_order() {
    let size = 128 * 1024;
    let top = (1u64 << 32) - size as u64;
    let mut s = Synth::new(size);
    // A PAGE.AUG TEMP_MEM section between measured ones.
    let secs = vec![
        t(0, 0x20000, top, 0x20000, 0, 1),
        t(0, 0, 0x20_0000, 0x10_0000, 3, 2),
        t(0, 0, 0x10_0000, 0x2000, 2, 0),
    ];
    s.tdvf = Some(secs.clone());
    let img = s.build();
    let fw = Firmware::parse(&img).unwrap();
    assert_eq!(
        tdx::mrtd(&fw, Order::Single),
        Err(TdxError::PageAugUnderQemu {
            index: 1,
            kind: "TEMP_MEM"
        })
    );
    assert_eq!(
        tdx::mrtd(&fw, Order::TwoPass).unwrap(),
        tdx_module_mrtd(&vmm_flow(&img, &secs, true))
    );
}

#[test]
fn content_and_gpa_are_measured() {
    let s = pupa_like(64 * 1024);
    let base = tdx::mrtd(&Firmware::parse(&s.build()).unwrap(), Order::Single).unwrap();
    // Flip one byte inside the BFV.
    let mut img = s.build();
    img[0x100] ^= 1;
    assert_ne!(
        tdx::mrtd(&Firmware::parse(&img).unwrap(), Order::Single).unwrap(),
        base
    );
    // Move the TEMP_MEM section (not extended, only added).
    let mut moved = pupa_like(64 * 1024);
    moved.tdvf.as_mut().unwrap()[2].gpa = 0x1000;
    assert_ne!(
        tdx::mrtd(&Firmware::parse(&moved.build()).unwrap(), Order::Single).unwrap(),
        base
    );
}

#[test]
fn rejects_what_cannot_be_measured() {
    let size = 64 * 1024;
    let mut s = Synth::new(size);
    // BFV claiming more memory than the file holds after its data offset.
    s.tdvf = Some(vec![
        t(0x8000, 0x8000, 0x10_0000, 0x10000, 0, 1),
        t(0, 0, 0x20_0000, 0x1000, 2, 0),
    ]);
    let fw = Firmware::parse(&s.build()).unwrap();
    assert!(matches!(
        tdx::mrtd(&fw, Order::Single),
        Err(TdxError::DataOutOfFile { index: 0, .. })
    ));
    // TD_HOB with MR.EXTEND: VMM-built content.
    s.tdvf = Some(vec![
        t(0, 0x1000, 0x10_0000, 0x1000, 0, 1),
        t(0, 0, 0x20_0000, 0x1000, 2, 1),
    ]);
    let fw = Firmware::parse(&s.build()).unwrap();
    assert_eq!(tdx::mrtd(&fw, Order::Single), Err(TdxError::HobExtended(1)));
    // No TDVF metadata at all.
    let fw = Firmware::parse(&Synth::new(size).build()).unwrap();
    assert_eq!(
        tdx::mrtd(&fw, Order::TwoPass),
        Err(TdxError::NoTdvfMetadata)
    );
    // MR.EXTEND together with PAGE.AUG is rejected by the parser.
    s.tdvf = Some(vec![t(0, 0x1000, 0x10_0000, 0x1000, 0, 3)]);
    assert!(matches!(
        Firmware::parse(&s.build()),
        Err(OvmfError::BadTdvfSection { index: 0, .. })
    ));
}

#[test]
fn debian_ovmf_if_installed() {
    // Debian's OVMF carries a TDVF descriptor (BFV, CFV, TD_HOB, TEMP_MEMs): our MRTD must
    // equal the model's on a real edk2 layout. Skipped with a message when not installed.
    let path = "/usr/share/ovmf/OVMF.fd";
    let Ok(img) = std::fs::read(path) else {
        eprintln!("{path} not installed: skipping the real-OVMF MRTD cross-check");
        return;
    };
    let fw = Firmware::parse(&img).unwrap();
    let secs: Vec<Tdvf> = fw
        .tdvf_sections()
        .unwrap()
        .iter()
        .map(|s| {
            t(
                s.data_offset,
                s.raw_size,
                s.gpa,
                s.mem_size,
                s.kind.code(),
                s.attributes,
            )
        })
        .collect();
    assert!(secs.len() >= 2);
    for two in [false, true] {
        let order = if two { Order::TwoPass } else { Order::Single };
        assert_eq!(
            tdx::mrtd(&fw, order).unwrap(),
            tdx_module_mrtd(&vmm_flow(&img, &secs, two))
        );
    }
}

/// T8: a manifest publishes the TDX MRTDs of the QEMU stacks only (upstream single-pass and the
/// older two-pass flow): no cloud-hypervisor entry, whose TDX runs on no upstream host.
#[test]
fn manifest_publishes_no_cloud_hypervisor_tdx_measurement() {
    use pupa_measurements::manifest::{expected_measurements, PUBLISHED_TDX_ORDERS};
    let fw_bytes = pupa_like(64 * 1024).build();
    let fw = Firmware::parse(&fw_bytes).unwrap();
    let m = expected_measurements(&fw).unwrap();
    let orders: Vec<Order> = m.tdx.iter().map(|e| e.order).collect();
    assert_eq!(orders, PUBLISHED_TDX_ORDERS);
    assert_eq!(PUBLISHED_TDX_ORDERS, [Order::Single, Order::TwoPass]);
    let json = serde_json::to_string(&m.tdx).unwrap();
    assert!(!json.to_lowercase().contains("cloud"), "{json}");
    for e in &m.tdx {
        assert_eq!(
            e.mrtd,
            pupa_measurements::hexfmt::encode(&tdx::mrtd(&fw, e.order).unwrap())
        );
    }
}
