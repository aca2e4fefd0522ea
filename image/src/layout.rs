//! The early-memory check: every page the boot path touches before it could validate (SNP) or
//! accept (TDX) memory itself must be declared in the image's metadata.
//!
//! On SEV-SNP and TDX hardware, touching an undeclared private page before PVALIDATE /
//! TDG.MEM.PAGE.ACCEPT is a fatal fault that plain QEMU never shows, so the build checks the
//! linker's placement (the ELF's allocated sections) against the metadata as parsed back out of
//! the finished image by `pupa-measurements` (an independent reading of the bytes).
//!
//! Rules:
//! - a section that lives in RAM (page tables, the RAM copy of .text/.rodata/.data, .bss,
//!   stacks, early heap) lies inside an SNP_SEC_MEM section AND a TDX TEMP_MEM section;
//! - the image's bytes (every section's load address) lie inside the TDX BFV, which covers the
//!   whole file, data offset 0, with MR.EXTEND (so MRTD covers all code);
//! - the pages the VMM writes (SNP secrets, CPUID and kernel-hashes pages, the TD HOB) overlap no
//!   RAM section, no early-memory section and each other;
//! - the SEV-ES AP reset address lies in the image.

use pupa_measurements::ovmf::{Firmware, SevSectionType, TdvfSectionType, FOUR_GIB};

use crate::elf::AllocSection;

/// A half-open range `[start, end)`.
type Range = (u64, u64);

fn covered(r: Range, by: &[Range]) -> bool {
    // merge-free check: walk from r.0, extending through any range containing the cursor
    let mut cursor = r.0;
    loop {
        if cursor >= r.1 {
            return true;
        }
        match by
            .iter()
            .filter(|b| b.0 <= cursor && cursor < b.1)
            .map(|b| b.1)
            .max()
        {
            Some(end) => cursor = end,
            None => return false,
        }
    }
}

fn overlaps(a: Range, b: Range) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Smallest TD_HOB section: what td-shim declares. cloud-hypervisor writes its ACPI tables into
/// the HOB without a bound, and QEMU's HOB grows with the number of RAM ranges.
pub const MIN_TD_HOB: u64 = 128 << 10;

/// The rules for the ranges the VMMs write: exactly one TD_HOB of at least [`MIN_TD_HOB`], and
/// no two ranges overlapping (the SNP pages and the TD HOB are written by different VMMs, but
/// one image serves both: neither TEE's layout may constrain or silently shrink the other).
fn vmm_written_problems(vmm_written: &[(&str, Range)]) -> Vec<String> {
    let mut problems = Vec::new();
    let hobs: Vec<Range> = vmm_written
        .iter()
        .filter(|(what, _)| *what == "TD_HOB")
        .map(|(_, r)| *r)
        .collect();
    match hobs.as_slice() {
        [h] if h.1 - h.0 >= MIN_TD_HOB => {}
        [h] => problems.push(format!(
            "TD_HOB [{:#x}, {:#x}) is smaller than {} KiB",
            h.0,
            h.1,
            MIN_TD_HOB >> 10
        )),
        _ => problems.push(format!(
            "expected exactly one TDX TD_HOB section, found {}",
            hobs.len()
        )),
    }
    for (i, (a, ra)) in vmm_written.iter().enumerate() {
        for (b, rb) in &vmm_written[i + 1..] {
            if overlaps(*ra, *rb) {
                problems.push(format!(
                    "{a} [{:#x}, {:#x}) overlaps {b} [{:#x}, {:#x})",
                    ra.0, ra.1, rb.0, rb.1
                ));
            }
        }
    }
    problems
}

/// Check the layout; returns every violation found (empty = declared correctly).
pub fn check(sections: &[AllocSection], fw: &Firmware) -> Vec<String> {
    let mut problems = Vec::new();
    let rom_start = fw.load_gpa();
    let (Some(sev), Some(tdvf)) = (fw.sev_sections(), fw.tdvf_sections()) else {
        problems.push("the image lacks SEV or TDX metadata".to_string());
        return problems;
    };
    let sec_mem: Vec<Range> = sev
        .iter()
        .filter(|s| s.kind == SevSectionType::SnpSecMem)
        .map(|s| (s.gpa as u64, s.gpa as u64 + s.size as u64))
        .collect();
    let temp_mem: Vec<Range> = tdvf
        .iter()
        .filter(|s| s.kind == TdvfSectionType::TempMem)
        .map(|s| (s.gpa, s.gpa + s.mem_size))
        .collect();
    let vmm_written: Vec<(&str, Range)> = sev
        .iter()
        .filter(|s| {
            matches!(
                s.kind,
                SevSectionType::Secrets | SevSectionType::Cpuid | SevSectionType::KernelHashes
            )
        })
        .map(|s| (s.kind.name(), (s.gpa as u64, s.gpa as u64 + s.size as u64)))
        .chain(
            tdvf.iter()
                .filter(|s| s.kind == TdvfSectionType::TdHob)
                .map(|s| ("TD_HOB", (s.gpa, s.gpa + s.mem_size))),
        )
        .collect();

    let bfv: Vec<_> = tdvf
        .iter()
        .filter(|s| s.kind == TdvfSectionType::Bfv)
        .collect();
    match bfv.as_slice() {
        [b] => {
            if b.gpa != rom_start
                || b.mem_size != FOUR_GIB - rom_start
                || b.raw_size as u64 != fw.len() as u64
                || b.data_offset != 0
            {
                problems.push(format!(
                    "TDX BFV [{:#x}, +{:#x}) raw {:#x} at offset {:#x} does not cover the whole image [{rom_start:#x}, 4 GiB)",
                    b.gpa, b.mem_size, b.raw_size, b.data_offset
                ));
            }
            if !b.mr_extend() {
                problems
                    .push("TDX BFV is not MR.EXTENDed: MRTD would not cover the code".to_string());
            }
        }
        _ => problems.push(format!(
            "expected exactly one TDX BFV section, found {}",
            bfv.len()
        )),
    }

    for s in sections {
        let run = (s.vma, s.vma + s.size);
        if s.vma >= rom_start {
            continue; // runs in place from the image (the boot page): covered by the BFV check
        }
        if !covered(run, &sec_mem) {
            problems.push(format!(
                "{} [{:#x}, {:#x}) is touched before validation but not declared SNP_SEC_MEM",
                s.name, run.0, run.1
            ));
        }
        if !covered(run, &temp_mem) {
            problems.push(format!(
                "{} [{:#x}, {:#x}) is touched before acceptance but not declared TDX TEMP_MEM",
                s.name, run.0, run.1
            ));
        }
        if !s.nobits && (s.lma < rom_start || s.lma + s.size > FOUR_GIB) {
            problems.push(format!(
                "{} is copied from {:#x}, outside the image",
                s.name, s.lma
            ));
        }
        for (what, r) in &vmm_written {
            if overlaps(run, *r) {
                problems.push(format!(
                    "{} [{:#x}, {:#x}) overlaps the {what} page(s) the VMM writes",
                    s.name, run.0, run.1
                ));
            }
        }
    }
    problems.extend(vmm_written_problems(&vmm_written));
    for (what, r) in &vmm_written {
        for m in sec_mem.iter().chain(&temp_mem) {
            if overlaps(*r, *m) {
                problems.push(format!(
                    "{what} [{:#x}, {:#x}) overlaps declared early memory",
                    r.0, r.1
                ));
            }
        }
    }
    match fw.sev_es_reset_eip() {
        Some(eip) if (eip as u64) >= rom_start => {}
        Some(eip) => problems.push(format!(
            "SEV-ES AP reset address {eip:#x} lies outside the image"
        )),
        None => problems.push("no SEV-ES reset block".to_string()),
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coverage() {
        assert!(covered(
            (0x1000, 0x3000),
            &[(0x0, 0x2000), (0x2000, 0x4000)]
        ));
        assert!(covered((0x1000, 0x1000), &[]));
        assert!(!covered(
            (0x1000, 0x3001),
            &[(0x0, 0x2000), (0x2000, 0x3000)]
        ));
        assert!(!covered((0x1000, 0x2000), &[(0x1001, 0x3000)]));
        assert!(overlaps((0, 2), (1, 3)) && !overlaps((0, 1), (1, 2)));
    }

    #[test]
    fn td_hob_is_big_enough_and_clear_of_the_snp_pages() {
        let snp = [("SECRETS", (0xA000, 0xB000)), ("CPUID", (0xB000, 0xC000))];
        let with = |hob: Range| {
            let mut v = snp.to_vec();
            v.push(("TD_HOB", hob));
            vmm_written_problems(&v)
        };
        // T2: the old 8 KiB HOB at 0x8000 is refused, as is a big one over the CPUID page.
        let old = with((0x8000, 0xA000));
        assert_eq!(old.len(), 1, "{old:?}");
        assert!(old[0].contains("smaller than 128 KiB"), "{old:?}");
        let over = with((0x0, 0x20000));
        assert_eq!(over.len(), 2, "{over:?}");
        assert!(
            over.iter().all(|p| p.contains("overlaps TD_HOB")),
            "{over:?}"
        );
        assert!(with((0x10000, 0x30000)).is_empty());
        assert_eq!(vmm_written_problems(&snp).len(), 1);
    }
}
