//! SNP AP creation against a mock hypervisor (KVM's `sev_snp_ap_creation` checks) and a mock
//! RMP. The VMSA and the GHCB are read back as raw bytes at the offsets of AMD APM Vol. 2
//! Table B-4 and GHCB spec 56421 Table 3, independently of the typed layouts.

use std::collections::{BTreeMap, BTreeSet};

use zerocopy::IntoBytes;

use super::*;

const SEV_STATUS: u64 = 0b111; // SEV, SEV-ES, SNP
const ENTRY: u64 = 0xFFF6_1234;
const HV: u64 = hv_features::SNP | hv_features::SNP_AP_CREATION;

fn bsp() -> BspState {
    BspState {
        cr0: 0x8000_0033,
        cr3: 0x10_0000,
        cr4: 0x4_0620,
        xcr0: 0x7,
        gdt: (0x12_3000, 0x1F),
        idt: (0x12_4000, 0xFFF),
        code_selector: 0x08,
        data_selector: 0x10,
        tss: (0x18, 0x12_5000, 0x67),
        sev_status: SEV_STATUS,
    }
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}

fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

/// A hypervisor that validates AP Creation as KVM does and an RMP with VMSA bits.
struct Mock {
    /// The next 8 KiB block handed out.
    next_block: u64,
    pages: BTreeMap<u64, Vec<u8>>,
    vmsa_bit: BTreeSet<u64>,
    rmpadjusts: Vec<(u64, u64)>,
    /// (APIC ID, VMSA GPA) of each AP the hypervisor accepted.
    running: Vec<(u32, u64)>,
    refuse_apic: Option<u32>,
    last_ghcb: Vec<u8>,
    exits: usize,
}

impl Mock {
    fn new(first_block: u64) -> Self {
        Self {
            next_block: first_block,
            pages: BTreeMap::new(),
            vmsa_bit: BTreeSet::new(),
            rmpadjusts: Vec::new(),
            running: Vec::new(),
            refuse_apic: None,
            last_ghcb: Vec::new(),
            exits: 0,
        }
    }

    /// KVM `sev_snp_ap_creation`: request in SW_EXITINFO1[31:0], APIC ID in [63:32], RAX =
    /// the launch SEV features, SW_EXITINFO2 a page-aligned, not 2 MiB-aligned GPA; on error
    /// SW_EXITINFO1 = 2, SW_EXITINFO2 = GHCB_ERR_INVALID_INPUT (5).
    fn exit(&mut self, g: &mut Ghcb<'_>, vmsa_bit: &BTreeSet<u64>) {
        self.exits += 1;
        assert_eq!(g.get(Field::SwExitCode), Ok(0x8000_0013));
        let info1 = g.get(Field::SwExitInfo1).unwrap();
        let gpa = g.get(Field::SwExitInfo2).unwrap();
        let (request, apic_id) = (info1 as u32, (info1 >> 32) as u32);
        let ok = request == 1
            && g.get(Field::Rax) == Ok(SEV_STATUS >> 2)
            && gpa.is_multiple_of(4096)
            && !gpa.is_multiple_of(2 << 20)
            && vmsa_bit.contains(&gpa)
            && Some(apic_id) != self.refuse_apic;
        if ok {
            self.running.push((apic_id, gpa));
            g.set(Field::SwExitInfo1, 0);
        } else {
            g.set(Field::SwExitInfo1, 2);
            g.set(Field::SwExitInfo2, 5);
        }
    }
}

impl ApMachine for Mock {
    fn alloc_vmsa_block(&mut self) -> Option<u64> {
        let b = self.next_block;
        self.next_block += 0x2000;
        Some(b)
    }

    fn prepare_ap(&mut self, index: u32) -> Option<ApStart> {
        Some(ApStart {
            apic_id: index,
            rip: ENTRY,
            stack_top: 0x40_0000 + u64::from(index) * 0x2_0000,
            index: u64::from(index),
        })
    }

    fn write_vmsa(&mut self, gpa: u64, vmsa: &Vmsa) {
        assert!(!self.vmsa_bit.contains(&gpa), "a VMSA page is not written");
        self.pages.insert(gpa, vmsa.as_bytes().to_vec());
    }

    fn rmpadjust(&mut self, gpa: u64, attrs: u64) -> u32 {
        self.rmpadjusts.push((gpa, attrs));
        // APM Vol. 3 RMPADJUST: VMPL0 may only target a higher VMPL (attrs[7:0] > 0).
        if attrs & 0xFF == 0 {
            return 2; // FAIL_PERMISSION
        }
        if attrs & (1 << 16) != 0 {
            self.vmsa_bit.insert(gpa);
        } else {
            self.vmsa_bit.remove(&gpa);
        }
        0
    }

    fn with_ghcb<R>(
        &mut self,
        f: impl FnOnce(&mut Ghcb<'_>, &mut dyn FnMut(&mut Ghcb<'_>)) -> R,
    ) -> Option<R> {
        let mut page = [0u8; 4096];
        let vmsa_bit = self.vmsa_bit.clone();
        let r = f(&mut Ghcb::new(&mut page), &mut |g| self.exit(g, &vmsa_bit));
        self.last_ghcb = page.to_vec();
        Some(r)
    }
}

#[test]
fn vmsa_starts_the_ap_in_long_mode_at_vmpl0_with_the_bsp_features() {
    let ap = ApStart {
        apic_id: 3,
        rip: ENTRY,
        stack_top: 0x48_0000,
        index: 3,
    };
    let v = build_vmsa(&bsp(), &ap);
    let b = v.as_bytes();
    assert_eq!(b.len(), 4096);
    // CS at 0x010: selector, attributes (VMCB format: P S type=0xB, L, G), limit, base.
    assert_eq!(u16_at(b, 0x10), 0x08);
    assert_eq!(u16_at(b, 0x12), 0xA9B);
    assert_eq!(u16_at(b, 0x12) & (1 << 9), 1 << 9, "CS.L");
    assert_eq!(u16_at(b, 0x12) & (1 << 10), 0, "CS.D clear with L");
    // SS 0x020, DS 0x030, ES 0x000: the data selector, writable present data.
    for off in [0x00, 0x20, 0x30] {
        assert_eq!((u16_at(b, off), u16_at(b, off + 2)), (0x10, 0xC93));
    }
    // GDTR 0x060 and IDTR 0x080: limit at +4, base at +8; TR 0x090 busy TSS.
    assert_eq!((u32_at(b, 0x64), u64_at(b, 0x68)), (0x1F, 0x12_3000));
    assert_eq!((u32_at(b, 0x84), u64_at(b, 0x88)), (0xFFF, 0x12_4000));
    assert_eq!(
        (
            u16_at(b, 0x90),
            u16_at(b, 0x92),
            u32_at(b, 0x94),
            u64_at(b, 0x98)
        ),
        (0x18, 0x8B, 0x67, 0x12_5000)
    );
    assert_eq!(b[0xCA], 0, "VMPL");
    assert_eq!(u64_at(b, 0xD0), 0x1500, "EFER = LME | LMA | SVME");
    assert_eq!(u64_at(b, 0x148), 0x4_0620, "CR4");
    assert_eq!(u64_at(b, 0x150), 0x10_0000, "CR3");
    assert_eq!(u64_at(b, 0x158), 0x8000_0033, "CR0");
    assert_eq!((u64_at(b, 0x160), u64_at(b, 0x168)), (0x400, 0xFFFF_0FF0));
    assert_eq!(u64_at(b, 0x170), 2, "RFLAGS: IF clear");
    assert_eq!(u64_at(b, 0x178), ENTRY, "RIP");
    assert_eq!(u64_at(b, 0x1D8), 0x48_0000 - 8, "RSP as after a CALL");
    assert_eq!(u64_at(b, 0x338), 3, "RDI = the pool index");
    assert_eq!(u64_at(b, 0x268), 0x0007_0406_0007_0406, "G_PAT");
    assert_eq!(
        u64_at(b, 0x3B0),
        1,
        "SEV_FEATURES = SEV_STATUS >> 2 (SNPActive)"
    );
    assert_eq!(u64_at(b, 0x3E8), 7, "XCR0");
    assert_eq!((u32_at(b, 0x408), u16_at(b, 0x410)), (0x1F80, 0x37F));
}

#[test]
fn sev_features_follow_the_bsp_status() {
    // SNP + DebugSwap (SEV_STATUS bit 7) -> SEV_FEATURES bits 0 and 5.
    assert_eq!(sev_features(0b1000_0111), 0b10_0001);
    let mut s = bsp();
    s.sev_status = 0b1000_0111;
    let v = build_vmsa(&s, &Mock::new(0).prepare_ap(1).unwrap());
    assert_eq!(u64_at(v.as_bytes(), 0x3B0), 0b10_0001);
}

#[test]
fn rmpadjust_targets_vmpl1_with_the_vmsa_bit() {
    assert_eq!(rmpadjust_attrs(true), 0x1_0001);
    assert_eq!(rmpadjust_attrs(false), 0x1);
}

#[test]
fn the_vmsa_page_is_never_2mib_aligned() {
    assert_eq!(vmsa_page(0x20_0000), 0x20_1000);
    assert_eq!(vmsa_page(0x1F_F000), 0x1F_F000);
    assert_eq!(vmsa_page(0x30_4000), 0x30_4000);
    for block in (0x1F_0000..0x21_0000).step_by(4096) {
        let p = vmsa_page(block);
        assert!(p == block || p == block + 4096);
        assert_ne!(p % (2 << 20), 0);
    }
}

#[test]
fn each_ap_gets_a_vmsa_and_a_creation_request() {
    // The first block is 2 MiB aligned: its second page becomes the VMSA.
    let mut m = Mock::new(0x20_0000);
    let r = start_aps(&mut m, HV, &bsp(), 4).unwrap();
    assert_eq!(
        r,
        ApReport {
            created: 3,
            refused: vec![]
        }
    );
    assert_eq!(
        m.running,
        vec![(1, 0x20_1000), (2, 0x20_2000), (3, 0x20_4000)]
    );
    assert_eq!(
        m.rmpadjusts,
        vec![
            (0x20_1000, 0x1_0001),
            (0x20_2000, 0x1_0001),
            (0x20_4000, 0x1_0001)
        ]
    );
    // The last request, read at the GHCB spec's offsets: RAX 0x1F8, SW_EXITCODE 0x390,
    // SW_EXITINFO2 0x3A0 (SW_EXITINFO1 0x398 now holds the hypervisor's 0).
    let g = &m.last_ghcb;
    assert_eq!(u64_at(g, 0x1F8), 1);
    assert_eq!(u64_at(g, 0x390), 0x8000_0013);
    assert_eq!(u64_at(g, 0x3A0), 0x20_4000);
    for (apic, gpa) in &m.running {
        let v = &m.pages[gpa];
        assert_eq!(u64_at(v, 0x338), u64::from(*apic));
        assert_eq!(
            u64_at(v, 0x1D8),
            0x40_0000 + u64::from(*apic) * 0x2_0000 - 8
        );
    }
}

#[test]
fn the_request_carries_apic_id_vmpl_and_create() {
    let mut page = [0u8; 4096];
    ap_create_request(&mut Ghcb::new(&mut page), 5, 0x30_1000, 1);
    assert_eq!(u64_at(&page, 0x398), 5 << 32 | 1);
    assert_eq!(u64_at(&page, 0x3A0), 0x30_1000);
    assert_eq!(u64_at(&page, 0x1F8), 1);
    assert_eq!(u64_at(&page, 0x390), SVM_VMGEXIT_AP_CREATION);
}

#[test]
fn without_the_feature_no_ap_is_touched() {
    let mut m = Mock::new(0x30_0000);
    assert_eq!(
        start_aps(&mut m, hv_features::SNP, &bsp(), 4),
        Err(ApError::NoApCreation(1))
    );
    assert!(m.pages.is_empty() && m.rmpadjusts.is_empty() && m.exits == 0);
    // One vCPU: nothing to do, whatever the features.
    assert_eq!(start_aps(&mut m, 1, &bsp(), 1), Ok(ApReport::default()));
}

#[test]
fn a_refused_ap_is_reported_and_the_others_carry_on() {
    let mut m = Mock::new(0x30_0000);
    m.refuse_apic = Some(2);
    let r = start_aps(&mut m, HV, &bsp(), 4).unwrap();
    assert_eq!(r.created, 2);
    assert_eq!(
        r.refused,
        vec![(2, ApError::Refused(GhcbError::MalformedInput(5)))]
    );
    assert_eq!(m.running, vec![(1, 0x30_0000), (3, 0x30_4000)]);
    // The refused AP's page lost its VMSA bit again.
    assert!(!m.vmsa_bit.contains(&0x30_2000));
    assert_eq!(m.rmpadjusts[2], (0x30_2000, 0x1));
}

#[test]
fn a_hypervisor_that_ignores_the_request_is_a_refusal() {
    struct Silent(Mock);
    impl ApMachine for Silent {
        fn alloc_vmsa_block(&mut self) -> Option<u64> {
            self.0.alloc_vmsa_block()
        }
        fn prepare_ap(&mut self, i: u32) -> Option<ApStart> {
            self.0.prepare_ap(i)
        }
        fn write_vmsa(&mut self, gpa: u64, v: &Vmsa) {
            self.0.write_vmsa(gpa, v)
        }
        fn rmpadjust(&mut self, gpa: u64, attrs: u64) -> u32 {
            self.0.rmpadjust(gpa, attrs)
        }
        fn with_ghcb<R>(
            &mut self,
            f: impl FnOnce(&mut Ghcb<'_>, &mut dyn FnMut(&mut Ghcb<'_>)) -> R,
        ) -> Option<R> {
            let mut page = [0u8; 4096];
            Some(f(&mut Ghcb::new(&mut page), &mut |_| {}))
        }
    }
    let mut m = Silent(Mock::new(0x30_0000));
    let r = start_aps(&mut m, HV, &bsp(), 2).unwrap();
    // SW_EXITINFO1 echoes the request (1 in bits 31:0): not success.
    assert_eq!(r.created, 0);
    assert!(matches!(r.refused[..], [(1, ApError::Refused(_))]));
}

#[test]
fn rmpadjust_failure_and_missing_memory_skip_that_ap() {
    struct NoMem(Mock, u32);
    impl ApMachine for NoMem {
        fn alloc_vmsa_block(&mut self) -> Option<u64> {
            self.1 += 1;
            (self.1 != 2).then(|| self.0.alloc_vmsa_block()).flatten()
        }
        fn prepare_ap(&mut self, i: u32) -> Option<ApStart> {
            self.0.prepare_ap(i)
        }
        fn write_vmsa(&mut self, gpa: u64, v: &Vmsa) {
            self.0.write_vmsa(gpa, v)
        }
        fn rmpadjust(&mut self, gpa: u64, attrs: u64) -> u32 {
            if gpa == 0x30_2000 {
                return 6; // FAIL_SIZEMISMATCH
            }
            self.0.rmpadjust(gpa, attrs)
        }
        fn with_ghcb<R>(
            &mut self,
            f: impl FnOnce(&mut Ghcb<'_>, &mut dyn FnMut(&mut Ghcb<'_>)) -> R,
        ) -> Option<R> {
            self.0.with_ghcb(f)
        }
    }
    let mut m = NoMem(Mock::new(0x30_0000), 0);
    let r = start_aps(&mut m, HV, &bsp(), 4).unwrap();
    assert_eq!(
        r.refused,
        vec![(2, ApError::OutOfMemory), (3, ApError::Rmpadjust(6))]
    );
    assert_eq!(r.created, 1);
    assert_eq!(m.0.running, vec![(1, 0x30_0000)]);
}
