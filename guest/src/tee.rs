//! Which world the guest runs in, decided from one MSR (SEV) and CPUID (TDX).
//!
//! Detection executes no TEE instruction. SEV is decided by the SEV_STATUS MSR alone (AMD APM
//! Vol. 2 §15.34.10, "SEV_STATUS MSR"), never by the hypervisor's CPUID: under SEV-SNP CPUID
//! answers come from the CPUID page, which the hypervisor fills (the PSP only checks that it
//! claims no more than the hardware has), so CPUID Fn8000_001F may hide SEV from an SNP guest
//! (Linux `sev_enable` and OVMF read the MSR too). TDX is recognised by CPUID leaf 0x21
//! returning the vendor string "IntelTDX    " (Intel TDX Module ABI spec, "CPUID
//! virtualization", leaf 0x21), which the TDX module answers itself.

pub use pupa_spec::tee::TeeKind;

/// SEV or SEV-ES without SNP: detected, but not supported by pupa (no usable attestation);
/// the platform terminates the VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SevWithoutSnp;

/// A short description of the kind for the boot banner.
pub fn banner_name(kind: TeeKind) -> &'static str {
    match kind {
        TeeKind::Dev => "none (plain VM, insecure dev evidence)",
        TeeKind::Snp => "sev-snp",
        TeeKind::Tdx => "tdx",
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

/// SEV_STATUS bits (AMD APM Vol. 2 §15.34.10 "SEV_STATUS MSR"; the same names as Linux
/// `MSR_AMD64_SEV_*` / `MSR_AMD64_SNP_*` in `arch/x86/include/asm/msr-index.h`).
pub mod sev_status {
    /// SEV is active.
    pub const SEV: u64 = 1 << 0;
    /// SEV-ES is active.
    pub const SEV_ES: u64 = 1 << 1;
    /// SEV-SNP is active.
    pub const SNP: u64 = 1 << 2;
    /// Virtual top of memory: the C-bit is replaced by an address split (guest must know vTOM).
    pub const VTOM: u64 = 1 << 3;
    /// ReflectVC: #VC goes to the VMPL 0 service module, which pupa is not.
    pub const REFLECT_VC: u64 = 1 << 4;
    /// Restricted injection: only #HV may be injected (the guest must handle #HV).
    pub const RESTRICTED_INJECTION: u64 = 1 << 5;
    /// Alternate injection: events are injected through a VMPL-0 VMSA the guest manages.
    pub const ALTERNATE_INJECTION: u64 = 1 << 6;
    /// DebugSwap: the hardware swaps the debug registers on world switches.
    pub const DEBUG_SWAP: u64 = 1 << 7;
    /// The host may not use IBS on this guest.
    pub const PREVENT_HOST_IBS: u64 = 1 << 8;
    /// Branch target buffer isolation.
    pub const BTB_ISOLATION: u64 = 1 << 9;
    /// VMPL supervisor shadow stacks.
    pub const VMPL_SSS: u64 = 1 << 10;
    /// Secure TSC (the guest must take its TSC frequency from the secure processor).
    pub const SECURE_TSC: u64 = 1 << 11;
    /// VMGEXIT parameter.
    pub const VMGEXIT_PARAMETER: u64 = 1 << 12;
    /// IBS virtualization.
    pub const IBS_VIRTUALIZATION: u64 = 1 << 14;
    /// VMSA register protection.
    pub const VMSA_REG_PROTECTION: u64 = 1 << 16;
    /// SMT protection.
    pub const SMT_PROTECTION: u64 = 1 << 17;
    /// Secure AVIC (the guest must run its own APIC emulation).
    pub const SECURE_AVIC: u64 = 1 << 18;

    /// What pupa runs with: SEV + SEV-ES + SNP, and the features that ask nothing of the guest
    /// (Linux `snp_check_features` refuses `SNP_FEATURES_IMPL_REQ & !SNP_FEATURES_PRESENT`;
    /// the bits below are outside IMPL_REQ, except DEBUG_SWAP, which only removes the DR7
    /// intercept: pupa never touches a debug register). Every other bit, reserved ones
    /// included, is a feature pupa does not implement (vTOM, ReflectVC, restricted or
    /// alternate injection, Secure TSC, VMSA register protection, Secure AVIC, ...).
    pub const SUPPORTED: u64 = SEV
        | SEV_ES
        | SNP
        | DEBUG_SWAP
        | PREVENT_HOST_IBS
        | BTB_ISOLATION
        | IBS_VIRTUALIZATION
        | SMT_PROTECTION;
}

/// Why the SEV_STATUS value is not one pupa runs under as an SNP guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SevStatusError {
    /// SEV, SEV-ES or SEV-SNP is not active.
    #[error("SEV_STATUS {0:#x}: SEV-SNP is not active")]
    NotSnp(u64),
    /// Features outside [`sev_status::SUPPORTED`] are active.
    #[error("SEV_STATUS {status:#x}: features {unsupported:#x} are not supported")]
    Unsupported {
        /// The whole SEV_STATUS value.
        status: u64,
        /// Its bits outside [`sev_status::SUPPORTED`].
        unsupported: u64,
    },
}

/// Checks SEV_STATUS (read from the MSR by the SNP platform at init) for an SNP guest: SEV,
/// SEV-ES and SNP active, no feature outside [`sev_status::SUPPORTED`]. A failure terminates
/// the VM with reason set 0, code 2 ("SEV-SNP features not supported", GHCB spec 56421
/// §4.1.13), as Linux `snp_check_features` does.
pub fn check_snp_status(status: u64) -> Result<(), SevStatusError> {
    use sev_status::{SEV, SEV_ES, SNP, SUPPORTED};
    if status & (SEV | SEV_ES | SNP) != SEV | SEV_ES | SNP {
        return Err(SevStatusError::NotSnp(status));
    }
    match status & !SUPPORTED {
        0 => Ok(()),
        unsupported => Err(SevStatusError::Unsupported {
            status,
            unsupported,
        }),
    }
}

/// Decide the TEE: SEV_STATUS first, then the TDX CPUID signature.
///
/// `cpuid(leaf, subleaf)` and `read_sev_status()` are the machine accessors (mocked in tests).
/// `read_sev_status` returns SEV_STATUS as read from the MSR, or 0 where the MSR does not exist
/// (the boot stub's RDMSR of it raised #GP: not AMD, or no SEV) or is not read (the TDX entry).
pub fn detect(
    mut cpuid: impl FnMut(u32, u32) -> CpuidResult,
    read_sev_status: impl FnOnce() -> u64,
) -> Result<TeeKind, SevWithoutSnp> {
    let status = read_sev_status();
    if status & sev_status::SNP != 0 {
        return Ok(TeeKind::Snp);
    }
    if status & (sev_status::SEV | sev_status::SEV_ES) != 0 {
        return Err(SevWithoutSnp);
    }
    let max_basic = cpuid(0, 0).eax;
    if max_basic >= TDX_CPUID_LEAF {
        let r = cpuid(TDX_CPUID_LEAF, 0);
        if [r.ebx, r.edx, r.ecx] == TDX_SIGNATURE {
            return Ok(TeeKind::Tdx);
        }
    }
    Ok(TeeKind::Dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(eax: u32, ebx: u32, ecx: u32, edx: u32) -> CpuidResult {
        CpuidResult { eax, ebx, ecx, edx }
    }

    #[test]
    fn plain_vm() {
        let kind = detect(
            |leaf, _| match leaf {
                0 => regs(0x1f, 0, 0, 0),
                0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
                _ => regs(0, 0, 0, 0),
            },
            || 0, // the MSR does not exist (the stub's RDMSR raised #GP)
        );
        assert_eq!(kind, Ok(TeeKind::Dev));
    }

    #[test]
    fn tdx_signature() {
        let kind = detect(
            |leaf, _| match leaf {
                0 => regs(0x23, 0, 0, 0),
                0x21 => regs(0, TDX_SIGNATURE[0], TDX_SIGNATURE[2], TDX_SIGNATURE[1]),
                _ => regs(0, 0, 0, 0),
            },
            || 0, // not read on the TDX entry path
        );
        assert_eq!(kind, Ok(TeeKind::Tdx));
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
        assert_eq!(kind, Ok(TeeKind::Dev));
    }

    /// S3: any SEV_STATUS bit outside the supported set is refused (vTOM, restricted
    /// injection, Secure TSC, reserved bits); the guest-transparent ones are accepted.
    #[test]
    fn snp_status_features_outside_the_supported_set_are_refused() {
        use sev_status::*;
        let base = SEV | SEV_ES | SNP;
        assert_eq!(check_snp_status(base), Ok(()));
        assert_eq!(check_snp_status(SUPPORTED), Ok(()));
        assert_eq!(check_snp_status(base | DEBUG_SWAP | BTB_ISOLATION), Ok(()));
        for bit in [
            VTOM,
            REFLECT_VC,
            RESTRICTED_INJECTION,
            ALTERNATE_INJECTION,
            VMPL_SSS,
            SECURE_TSC,
            VMGEXIT_PARAMETER,
            1 << 13,
            1 << 15,
            VMSA_REG_PROTECTION,
            SECURE_AVIC,
            1 << 19,
            1 << 63,
        ] {
            assert_eq!(
                check_snp_status(base | bit),
                Err(SevStatusError::Unsupported {
                    status: base | bit,
                    unsupported: bit
                }),
                "bit {}",
                bit.trailing_zeros()
            );
        }
        assert_eq!(check_snp_status(0), Err(SevStatusError::NotSnp(0)));
        assert_eq!(
            check_snp_status(SEV | SNP),
            Err(SevStatusError::NotSnp(SEV | SNP))
        );
        assert_eq!(
            check_snp_status(SEV | SEV_ES),
            Err(SevStatusError::NotSnp(SEV | SEV_ES))
        );
    }

    /// S2: the hypervisor's CPUID (max extended leaf below Fn8000_001F, or Fn8000_001F with
    /// the SEV bit clear) must not turn an SNP guest into a plain one: SEV_STATUS decides.
    #[test]
    fn snp_detected_from_sev_status_when_cpuid_hides_sev() {
        let no_mem_enc_leaf = |leaf, _| match leaf {
            0 => regs(0x10, 0, 0, 0),
            0x8000_0000 => regs(0x8000_0008, 0, 0, 0),
            _ => regs(0, 0, 0, 0),
        };
        let sev_bit_clear = |leaf, _| match leaf {
            0 => regs(0x10, 0, 0, 0),
            0x8000_0000 => regs(0x8000_0021, 0, 0, 0),
            AMD_MEM_ENC_LEAF => regs(0, 0x33, 0, 0),
            _ => regs(0, 0, 0, 0),
        };
        assert_eq!(detect(no_mem_enc_leaf, || 0b111), Ok(TeeKind::Snp));
        assert_eq!(detect(sev_bit_clear, || 0b111), Ok(TeeKind::Snp));
        assert_eq!(detect(sev_bit_clear, || 0b011), Err(SevWithoutSnp));
        // Nor can a TDX signature in the hypervisor's CPUID page override SEV_STATUS.
        let fake_tdx = |leaf, _| match leaf {
            0 => regs(0x23, 0, 0, 0),
            0x21 => regs(0, TDX_SIGNATURE[0], TDX_SIGNATURE[2], TDX_SIGNATURE[1]),
            _ => regs(0, 0, 0, 0),
        };
        assert_eq!(detect(fake_tdx, || 0b111), Ok(TeeKind::Snp));
    }

    #[test]
    fn snp_and_sev_from_status_msr() {
        let cpuid = |leaf, _| match leaf {
            0 => regs(0x10, 0, 0, 0),
            0x8000_0000 => regs(0x8000_0021, 0, 0, 0),
            AMD_MEM_ENC_LEAF => regs(0x1_fffb, 0x33, 0, 0),
            _ => regs(0, 0, 0, 0),
        };
        assert_eq!(detect(cpuid, || 0b111), Ok(TeeKind::Snp));
        assert_eq!(detect(cpuid, || 0b011), Err(SevWithoutSnp));
        assert_eq!(detect(cpuid, || 0), Ok(TeeKind::Dev));
    }
}
