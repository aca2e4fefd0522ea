//! Which world the guest runs in, decided from CPUID and (for SEV) one MSR.
//!
//! Detection executes no TEE instruction: on a plain VM it reads CPUID only; the SEV status MSR
//! is read only when CPUID says the CPU supports SEV (AMD APM Vol. 2 §15.34.10, "SEV_STATUS
//! MSR"); TDX is recognised by CPUID leaf 0x21 returning the vendor string "IntelTDX    "
//! (Intel TDX Module ABI spec, "CPUID virtualization", leaf 0x21).

/// The TEE the guest runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TeeKind {
    /// No TEE: a plain VM. Evidence is the insecure development report.
    None,
    /// AMD SEV-SNP.
    Snp,
    /// AMD SEV or SEV-ES without SNP: not supported by pupa (no usable attestation).
    SevWithoutSnp,
    /// Intel TDX.
    Tdx,
}

impl TeeKind {
    /// A short name for the banner and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            TeeKind::None => "none (plain VM, insecure dev evidence)",
            TeeKind::Snp => "sev-snp",
            TeeKind::SevWithoutSnp => "sev/sev-es without snp (unsupported)",
            TeeKind::Tdx => "tdx",
        }
    }
}

/// CPUID results, as the detection logic needs them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// CPUID leaf 0x21 signature of a TDX guest: "IntelTDX    " in EBX, EDX, ECX.
pub const TDX_CPUID_LEAF: u32 = 0x21;
const TDX_SIGNATURE: [u32; 3] = [
    u32::from_le_bytes(*b"Inte"),
    u32::from_le_bytes(*b"lTDX"),
    u32::from_le_bytes(*b"    "),
];
/// CPUID Fn8000_001F: AMD memory encryption capabilities (EAX bit 1: SEV).
pub const AMD_MEM_ENC_LEAF: u32 = 0x8000_001F;
/// MSR C001_0131: SEV_STATUS (bit 0 SEV, bit 1 SEV-ES, bit 2 SEV-SNP).
pub const MSR_SEV_STATUS: u32 = 0xC001_0131;

/// Decide the TEE from CPUID (and the SEV status MSR, read only if `read_sev_status` is asked).
///
/// `cpuid(leaf, subleaf)` and `read_sev_status()` are the machine accessors (mocked in tests).
pub fn detect(
    mut cpuid: impl FnMut(u32, u32) -> CpuidResult,
    read_sev_status: impl FnOnce() -> u64,
) -> TeeKind {
    let max_basic = cpuid(0, 0).eax;
    if max_basic >= TDX_CPUID_LEAF {
        let r = cpuid(TDX_CPUID_LEAF, 0);
        if [r.ebx, r.edx, r.ecx] == TDX_SIGNATURE {
            return TeeKind::Tdx;
        }
    }
    let max_ext = cpuid(0x8000_0000, 0).eax;
    if max_ext >= AMD_MEM_ENC_LEAF && cpuid(AMD_MEM_ENC_LEAF, 0).eax & 0b10 != 0 {
        let status = read_sev_status();
        return match status & 0b111 {
            s if s & 0b100 != 0 => TeeKind::Snp,
            s if s & 0b001 != 0 => TeeKind::SevWithoutSnp,
            _ => TeeKind::None,
        };
    }
    TeeKind::None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
        CpuidResult { eax, ebx, ecx, edx }
    }

    #[test]
    fn plain_vm_reads_no_msr() {
        let kind = detect(
            |leaf, _| match leaf {
                0 => regs(0x1f, 0, 0, 0),
                0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
                _ => regs(0, 0, 0, 0),
            },
            || panic!("must not read SEV_STATUS on a CPU without SEV"),
        );
        assert_eq!(kind, TeeKind::None);
    }

    #[test]
    fn tdx_signature() {
        let kind = detect(
            |leaf, _| match leaf {
                0 => regs(0x23, 0, 0, 0),
                0x21 => regs(0, TDX_SIGNATURE[0], TDX_SIGNATURE[2], TDX_SIGNATURE[1]),
                _ => regs(0, 0, 0, 0),
            },
            || panic!("no MSR under TDX"),
        );
        assert_eq!(kind, TeeKind::Tdx);
    }

    #[test]
    fn leaf_0x21_without_signature_is_not_tdx() {
        let kind = detect(
            |leaf, _| match leaf {
                0 => regs(0x23, 0, 0, 0),
                0x21 => regs(0, 0x1234, 0, 0),
                _ => regs(0, 0, 0, 0),
            },
            || 0,
        );
        assert_eq!(kind, TeeKind::None);
    }

    #[test]
    fn snp_and_sev_from_status_msr() {
        let cpuid = |leaf, _| match leaf {
            0 => regs(0x10, 0, 0, 0),
            0x8000_0000 => regs(0x8000_0021, 0, 0, 0),
            AMD_MEM_ENC_LEAF => regs(0x1_fffb, 0x33, 0, 0),
            _ => regs(0, 0, 0, 0),
        };
        assert_eq!(detect(cpuid, || 0b111), TeeKind::Snp);
        assert_eq!(detect(cpuid, || 0b011), TeeKind::SevWithoutSnp);
        assert_eq!(detect(cpuid, || 0), TeeKind::None);
    }
}
