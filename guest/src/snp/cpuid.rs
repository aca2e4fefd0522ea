//! The SNP CPUID page (SEV-SNP Firmware ABI spec 56860, §8.17.2.6 / Table 14 "CPUID Function
//! Structure" and the CPUID page format of SNP_LAUNCH_UPDATE): a page the AMD secure processor
//! checked at launch, so its values are trusted where the hypervisor's CPUID answers are not.
//!
//! The layout is [`pupa_spec::snp::SnpCpuidPage`]: COUNT (≤ 64), then 0x30-byte entries from
//! 0x10 (EAX_IN, ECX_IN, XCR0_IN, XSS_IN, EAX, EBX, ECX, EDX).
//!
//! Lookup follows Linux `arch/x86/coco/sev/core.c` (`snp_cpuid`): the subleaf only selects an
//! entry for indexed leaves; a leaf not in the table reads as zeros; a few register bits that
//! depend on the guest's own state (CR4.OSXSAVE, CR4.PKE, XCR0/XSS) are computed by the guest.

use pupa_spec::snp::{SnpCpuidFn, SnpCpuidPage};
use zerocopy::FromBytes;

use crate::tee::CpuidResult;

/// Most entries a CPUID page holds.
pub const MAX_ENTRIES: usize = pupa_spec::snp::cpuid::MAX_ENTRIES;
/// Offset of the first entry.
pub const ENTRIES_OFFSET: usize = core::mem::offset_of!(SnpCpuidPage, functions);
/// Size of one entry.
pub const ENTRY_LEN: usize = size_of::<SnpCpuidFn>();
/// The leaf holding the C-bit position (AMD APM Vol. 2 §15.34.1: Fn8000_001F EBX[5:0]).
pub const LEAF_MEM_ENC: u32 = 0x8000_001F;
/// Size of the legacy XSAVE area plus header (SDM Vol. 1 §13.4).
const XSAVE_LEGACY_AND_HEADER: u32 = 0x240;

/// Leaves whose ECX input selects a subleaf (Linux `cpuid_function_is_indexed`, plus
/// 0x8000_0020, AMD PQoS enumeration, which AMD documents as indexed).
pub fn is_indexed(leaf: u32) -> bool {
    matches!(
        leaf,
        0x4 | 0x7
            | 0xB
            | 0xD
            | 0xF
            | 0x10
            | 0x12
            | 0x14
            | 0x17
            | 0x18
            | 0x1D
            | 0x1E
            | 0x1F
            | 0x24
            | 0x8000_001D
            | 0x8000_0020
    )
}

/// One entry of the CPUID page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuidEntry {
    /// EAX input (leaf).
    pub eax_in: u32,
    /// ECX input (subleaf).
    pub ecx_in: u32,
    /// XCR0 the entry was computed for (leaf 0xD).
    pub xcr0_in: u64,
    /// XSS the entry was computed for (leaf 0xD).
    pub xss_in: u64,
    /// Result registers.
    pub out: CpuidResult,
}

/// Why the CPUID page or a lookup is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CpuidError {
    /// The buffer is not a 4 KiB page.
    #[error("CPUID page of {0} bytes")]
    BadPage(usize),
    /// COUNT exceeds 64.
    #[error("CPUID page COUNT {0} exceeds {MAX_ENTRIES}")]
    TooManyEntries(u32),
    /// Leaf 0x8000_001F is missing or its C-bit position is outside 32..=63 (pupa's identity
    /// map covers 0..4 GiB, so a lower bit would alias RAM).
    #[error("C-bit position {0} unusable")]
    CBit(u8),
    /// XCR0/XSS enable a state component the page does not describe (Linux treats this the
    /// same way: the XSAVE size cannot be computed).
    #[error("XSAVE size unknown for XCR0|XSS {0:#x}")]
    XsaveSize(u64),
}

/// The guest state some CPUID bits reflect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuState {
    /// CR4.OSXSAVE (reported in CPUID.1:ECX[27]).
    pub osxsave: bool,
    /// CR4.PKE (reported as OSPKE in CPUID.7.0:ECX[4]).
    pub pke: bool,
    /// XCR0 (XSAVE size in CPUID.0xD.0:EBX).
    pub xcr0: u64,
    /// IA32_XSS (with XCR0: compacted XSAVE size in CPUID.0xD.1:EBX).
    pub xss: u64,
}

/// A parsed copy of the CPUID page.
#[derive(Debug, Clone)]
pub struct CpuidTable {
    count: usize,
    entries: [CpuidEntry; MAX_ENTRIES],
}

impl CpuidTable {
    /// Parses the 4 KiB CPUID page (bounds-checked: COUNT ≤ 64).
    pub fn parse(page: &[u8]) -> Result<Self, CpuidError> {
        let p = SnpCpuidPage::ref_from_bytes(page).map_err(|_| CpuidError::BadPage(page.len()))?;
        let count = p.count.get();
        if count as usize > MAX_ENTRIES {
            return Err(CpuidError::TooManyEntries(count));
        }
        let mut entries = [CpuidEntry::default(); MAX_ENTRIES];
        for (e, f) in entries.iter_mut().zip(&p.functions[..count as usize]) {
            *e = CpuidEntry {
                eax_in: f.eax_in.get(),
                ecx_in: f.ecx_in.get(),
                xcr0_in: f.xcr0_in.get(),
                xss_in: f.xss_in.get(),
                out: CpuidResult {
                    eax: f.eax.get(),
                    ebx: f.ebx.get(),
                    ecx: f.ecx.get(),
                    edx: f.edx.get(),
                },
            };
        }
        Ok(Self {
            count: count as usize,
            entries,
        })
    }

    /// The entries.
    pub fn entries(&self) -> &[CpuidEntry] {
        &self.entries[..self.count]
    }

    /// The raw table value for (leaf, subleaf), or `None` if the table has no such entry. For
    /// leaf 0xD subleaves 0 and 1 only the entry for the legacy area (XCR0_IN 1 or 3, XSS_IN 0)
    /// is used, as in Linux.
    pub fn find(&self, leaf: u32, subleaf: u32) -> Option<CpuidResult> {
        self.entries()
            .iter()
            .filter(|e| e.eax_in == leaf)
            .filter(|e| !is_indexed(leaf) || e.ecx_in == subleaf)
            .find(|e| {
                !(leaf == 0xD && subleaf <= 1) || (matches!(e.xcr0_in, 1 | 3) && e.xss_in == 0)
            })
            .map(|e| e.out)
    }

    /// CPUID(leaf, subleaf) as the guest must see it: the table's value (zeros for a leaf the
    /// table lacks), with OSXSAVE, OSPKE and the XSAVE sizes computed from `cpu`.
    pub fn lookup(
        &self,
        leaf: u32,
        subleaf: u32,
        cpu: &CpuState,
    ) -> Result<CpuidResult, CpuidError> {
        let mut r = self.find(leaf, subleaf).unwrap_or_default();
        match (leaf, subleaf) {
            (1, _) => {
                r.ecx = (r.ecx & !(1 << 27)) | (u32::from(cpu.osxsave) << 27);
            }
            (7, 0) => {
                r.ecx = (r.ecx & !(1 << 4)) | (u32::from(cpu.pke) << 4);
            }
            (0xD, 0) => r.ebx = self.xsave_size(cpu.xcr0, false)?,
            (0xD, 1) => r.ebx = self.xsave_size(cpu.xcr0 | cpu.xss, true)?,
            _ => {}
        }
        Ok(r)
    }

    /// XSAVE area size for the enabled components (Linux `snp_cpuid_calc_xsave_size`; SDM
    /// Vol. 1 §13.4.3 for the compacted format): every enabled component ≥ 2 must be described
    /// by a 0xD subleaf entry (EAX size, EBX standard offset).
    fn xsave_size(&self, enabled: u64, compacted: bool) -> Result<u32, CpuidError> {
        let mut size = XSAVE_LEGACY_AND_HEADER;
        let mut found = 0u64;
        for e in self.entries() {
            if e.eax_in != 0xD || e.ecx_in < 2 || e.ecx_in >= 64 {
                continue;
            }
            let bit = 1u64 << e.ecx_in;
            if enabled & bit == 0 || found & bit != 0 {
                continue;
            }
            found |= bit;
            size = if compacted {
                size.checked_add(e.out.eax)
            } else {
                e.out.eax.checked_add(e.out.ebx).map(|end| end.max(size))
            }
            .ok_or(CpuidError::XsaveSize(enabled))?;
        }
        if found != enabled & !0b11 {
            return Err(CpuidError::XsaveSize(enabled));
        }
        Ok(size)
    }

    /// The C-bit position from Fn8000_001F EBX[5:0].
    pub fn c_bit(&self) -> Result<u8, CpuidError> {
        let ebx = self.find(LEAF_MEM_ENC, 0).ok_or(CpuidError::CBit(0))?.ebx;
        let bit = (ebx & 0x3F) as u8;
        if !(32..=63).contains(&bit) {
            return Err(CpuidError::CBit(bit));
        }
        Ok(bit)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Writes a CPUID page with `entries` (leaf, subleaf, xcr0_in, [eax, ebx, ecx, edx]).
    pub(crate) fn page(entries: &[(u32, u32, u64, [u32; 4])]) -> Vec<u8> {
        let mut p = vec![0u8; 4096];
        p[0..4].copy_from_slice(&(entries.len() as u32).to_le_bytes());
        for (i, (leaf, sub, xcr0, r)) in entries.iter().enumerate() {
            let o = 0x10 + i * 0x30;
            p[o..o + 4].copy_from_slice(&leaf.to_le_bytes());
            p[o + 4..o + 8].copy_from_slice(&sub.to_le_bytes());
            p[o + 8..o + 16].copy_from_slice(&xcr0.to_le_bytes());
            for (j, v) in r.iter().enumerate() {
                let at = o + 0x18 + 4 * j;
                p[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
        }
        p
    }

    /// A Genoa-like table (illustrative values; vendor string "AuthenticAMD"): leaf 0xD subleaf
    /// 2 (AVX, 256 bytes at offset 576), subleaves 5..7 (AVX-512 opmask 64 @ 832, ZMM_Hi256
    /// 512 @ 896, Hi16_ZMM 1024 @ 1408: AMD's layout without the MPX gap).
    pub(crate) fn sample() -> Vec<u8> {
        page(&[
            (0, 0, 0, [0x10, 0x6874_7541, 0x444D_4163, 0x6974_6E65]),
            (
                1,
                0,
                0,
                [
                    0x00A0_0F11,
                    0x0080_0800,
                    0xFEDA_3203 & !(1 << 27),
                    0x178B_FBFF,
                ],
            ),
            (7, 0, 0, [0, 0x219C_97A9, 0x0040_069C | 1 << 4, 0]),
            (7, 1, 0, [0x10, 0, 0, 0]),
            (0xD, 0, 1, [0x7, 0x240, 0x340, 0]),
            (0xD, 0, 7, [0x7, 0x340, 0x340, 0]),
            (0xD, 1, 3, [0xF, 0x240, 0, 0]),
            (0xD, 2, 0, [0x100, 0x240, 0, 0]),
            (0xD, 5, 0, [0x40, 0x340, 0, 0]),
            (0xD, 6, 0, [0x200, 0x380, 0, 0]),
            (0xD, 7, 0, [0x400, 0x580, 0, 0]),
            (0x8000_0000, 0, 0, [0x8000_0021, 0, 0, 0]),
            (0x8000_001F, 0, 0, [0x1_003F, 0x0000_5133, 0x1FD, 1]),
        ])
    }

    #[test]
    fn parses_and_looks_up_with_subleaf_only_for_indexed_leaves() {
        let t = CpuidTable::parse(&sample()).unwrap();
        assert_eq!(t.entries().len(), 13);
        let cpu = CpuState::default();
        // Leaf 0: vendor "AuthenticAMD"; subleaf ignored for a non-indexed leaf.
        assert_eq!(t.lookup(0, 5, &cpu).unwrap().ebx, 0x6874_7541);
        // Leaf 7 is indexed: subleaf 1 and 0 differ, subleaf 2 is absent → zeros.
        assert_eq!(t.lookup(7, 1, &cpu).unwrap().eax, 0x10);
        assert_eq!(t.lookup(7, 0, &cpu).unwrap().ebx, 0x219C_97A9);
        assert_eq!(t.lookup(7, 2, &cpu).unwrap(), CpuidResult::default());
        // Out-of-range and absent leaves read as zeros.
        assert_eq!(
            t.lookup(0x4000_0000, 0, &cpu).unwrap(),
            CpuidResult::default()
        );
        assert_eq!(
            t.lookup(0x8000_0008, 0, &cpu).unwrap(),
            CpuidResult::default()
        );
        assert_eq!(t.c_bit(), Ok(51));
    }

    #[test]
    fn os_bits_follow_cr4() {
        let t = CpuidTable::parse(&sample()).unwrap();
        let off = CpuState::default();
        let on = CpuState {
            osxsave: true,
            pke: true,
            xcr0: 7,
            xss: 0,
        };
        assert_eq!(t.lookup(1, 0, &off).unwrap().ecx & 1 << 27, 0);
        assert_ne!(t.lookup(1, 0, &on).unwrap().ecx & 1 << 27, 0);
        // The table claimed OSPKE; CR4.PKE is clear, so the guest must not see it.
        assert_eq!(t.lookup(7, 0, &off).unwrap().ecx & 1 << 4, 0);
        assert_ne!(t.lookup(7, 0, &on).unwrap().ecx & 1 << 4, 0);
    }

    #[test]
    fn xsave_sizes_are_computed_from_xcr0() {
        let t = CpuidTable::parse(&sample()).unwrap();
        let mut cpu = CpuState {
            osxsave: true,
            xcr0: 0x3,
            ..CpuState::default()
        };
        // Standard format (SDM Vol. 1 §13.4.2: the end of the highest enabled component):
        // x87+SSE: 576; +AVX: 576 + 256 = 832; +AVX-512 (0xE7): 1408 + 1024 = 2432.
        assert_eq!(t.lookup(0xD, 0, &cpu).unwrap().ebx, 0x240);
        cpu.xcr0 = 0x7;
        let r = t.lookup(0xD, 0, &cpu).unwrap();
        assert_eq!((r.eax, r.ebx, r.ecx), (0x7, 0x340, 0x340));
        cpu.xcr0 = 0xE7;
        assert_eq!(t.lookup(0xD, 0, &cpu).unwrap().ebx, 0x980);
        // Compacted: 576 + 256 + 64 + 512 + 1024.
        assert_eq!(
            t.lookup(0xD, 1, &cpu).unwrap().ebx,
            0x240 + 0x100 + 0x40 + 0x200 + 0x400
        );
        // A component the table does not describe (bit 9, PKRU) makes the size unknown.
        cpu.xcr0 = 0x207;
        assert_eq!(t.lookup(0xD, 0, &cpu), Err(CpuidError::XsaveSize(0x207)));
    }

    #[test]
    fn rejects_bad_pages() {
        assert_eq!(
            CpuidTable::parse(&[0u8; 100]).unwrap_err(),
            CpuidError::BadPage(100)
        );
        let mut p = sample();
        p[0..4].copy_from_slice(&65u32.to_le_bytes());
        assert_eq!(
            CpuidTable::parse(&p).unwrap_err(),
            CpuidError::TooManyEntries(65)
        );
        p[0..4].copy_from_slice(&64u32.to_le_bytes());
        assert!(CpuidTable::parse(&p).is_ok());
        let t = CpuidTable::parse(&page(&[(0, 0, 0, [1, 2, 3, 4])])).unwrap();
        assert_eq!(t.c_bit(), Err(CpuidError::CBit(0)));
        let t = CpuidTable::parse(&page(&[(0x8000_001F, 0, 0, [0, 0x5118, 0, 0])])).unwrap();
        assert_eq!(t.c_bit(), Err(CpuidError::CBit(0x18)));
    }
}
