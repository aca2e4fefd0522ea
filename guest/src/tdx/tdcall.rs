//! TDCALL and TDG.VP.VMCALL: leaf numbers, register encodings and status decoding (pure; the
//! instruction wrappers that use them are in the firmware, `arch/tdcall.rs`).
//!
//! Sources: Intel TDX Module ABI spec (348551), §"TDCALL Instruction (Common)" and the leaf
//! sections ("TDG.VP.INFO", "TDG.VP.VEINFO.GET", "TDG.MR.REPORT", "TDG.MR.RTMR.EXTEND",
//! "TDG.MEM.PAGE.ACCEPT"), §"Function Completion Status Codes"; Intel TDX Guest-Hypervisor
//! Communication Interface (GHCI) spec 1.5, §2.4.1 "TDCALL [TDG.VP.VMCALL] leaf" and §3
//! (sub-functions). Numeric values cross-checked with Linux `arch/x86/include/asm/shared/tdx.h`
//! and the `tdx-guest` crate 0.6.0 (`tdcall.rs`, `tdvmcall.rs`).

/// TDCALL leaf numbers (RAX input; TDX Module ABI spec, "TDCALL Leaf Functions").
pub mod leaf {
    /// TDG.VP.VMCALL: call a host VMM service (GHCI).
    pub const VP_VMCALL: u64 = 0;
    /// TDG.VP.INFO: TD execution environment information.
    pub const VP_INFO: u64 = 1;
    /// TDG.MR.RTMR.EXTEND: extend an RTMR with a 48-byte digest.
    pub const MR_RTMR_EXTEND: u64 = 2;
    /// TDG.VP.VEINFO.GET: information about the current #VE.
    pub const VP_VEINFO_GET: u64 = 3;
    /// TDG.MR.REPORT: create a TDREPORT_STRUCT.
    pub const MR_REPORT: u64 = 4;
    /// TDG.MEM.PAGE.ACCEPT: accept a pending private page.
    pub const MEM_PAGE_ACCEPT: u64 = 6;
}

/// TDG.VP.VMCALL sub-function numbers (R11 input; GHCI 1.5 Table 2-3 / §3). The instruction
/// ones equal the VMX basic exit reason of the instruction (SDM Vol. 3D Appendix C).
pub mod vmcall {
    /// TDG.VP.VMCALL<Instruction.CPUID> (GHCI §3.6).
    pub const CPUID: u64 = 10;
    /// TDG.VP.VMCALL<Instruction.HLT> (GHCI §3.8).
    pub const HLT: u64 = 12;
    /// TDG.VP.VMCALL<Instruction.IO> (GHCI §3.9).
    pub const IO: u64 = 30;
    /// TDG.VP.VMCALL<Instruction.RDMSR> (GHCI §3.10).
    pub const RDMSR: u64 = 31;
    /// TDG.VP.VMCALL<Instruction.WRMSR> (GHCI §3.11).
    pub const WRMSR: u64 = 32;
    /// TDG.VP.VMCALL<#VE.RequestMMIO> (GHCI §3.7): the EPT-violation exit reason.
    pub const MMIO: u64 = 48;
    /// TDG.VP.VMCALL<MapGPA> (GHCI §3.2).
    pub const MAP_GPA: u64 = 0x10001;
    /// TDG.VP.VMCALL<GetQuote> (GHCI §3.3).
    pub const GET_QUOTE: u64 = 0x10002;
    /// RCX of TDG.VP.VMCALL: the GPRs exposed to the VMM, R10..R15 (bits 10..15; GHCI §2.4.1).
    pub const EXPOSE_R10_R15: u64 = 0xFC00;
    /// GHCI Instruction.IO R13: direction read (IN).
    pub const IO_READ: u64 = 0;
    /// GHCI Instruction.IO R13: direction write (OUT).
    pub const IO_WRITE: u64 = 1;
}

/// TDG.VP.VMCALL return codes (R10 output; GHCI 1.5 Table 2-4).
pub mod vmcall_status {
    /// TDG.VP.VMCALL_SUCCESS.
    pub const SUCCESS: u64 = 0;
    /// TDG.VP.VMCALL_RETRY (MapGPA: R11 holds the GPA to resume from).
    pub const RETRY: u64 = 1;
    /// TDG.VP.VMCALL_INVALID_OPERAND.
    pub const INVALID_OPERAND: u64 = 0x8000_0000_0000_0000;
    /// TDG.VP.VMCALL_GPA_INUSE.
    pub const GPA_INUSE: u64 = 0x8000_0000_0000_0001;
    /// TDG.VP.VMCALL_ALIGN_ERROR.
    pub const ALIGN_ERROR: u64 = 0x8000_0000_0000_0002;
}

/// A TDG.VP.VMCALL return code other than success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VmcallError {
    /// TDCALL itself failed (RAX != 0: the TDX module refused the VMCALL).
    #[error("TDCALL(TDG.VP.VMCALL) failed with status {0:#x}")]
    Tdcall(u64),
    /// TDG.VP.VMCALL_RETRY where the sub-function has no retry protocol.
    #[error("VMM asked to retry")]
    Retry,
    /// TDG.VP.VMCALL_INVALID_OPERAND.
    #[error("VMM: invalid operand")]
    InvalidOperand,
    /// TDG.VP.VMCALL_GPA_INUSE.
    #[error("VMM: GPA in use")]
    GpaInUse,
    /// TDG.VP.VMCALL_ALIGN_ERROR.
    #[error("VMM: alignment error")]
    AlignError,
    /// Any other code.
    #[error("VMM returned unknown status {0:#x}")]
    Other(u64),
}

/// Decodes a VMCALL outcome: `tdcall_rax` is TDCALL's RAX, `r10` the sub-function's status.
pub fn vmcall_result(tdcall_rax: u64, r10: u64) -> Result<(), VmcallError> {
    if tdcall_rax != 0 {
        return Err(VmcallError::Tdcall(tdcall_rax));
    }
    match r10 {
        vmcall_status::SUCCESS => Ok(()),
        vmcall_status::RETRY => Err(VmcallError::Retry),
        vmcall_status::INVALID_OPERAND => Err(VmcallError::InvalidOperand),
        vmcall_status::GPA_INUSE => Err(VmcallError::GpaInUse),
        vmcall_status::ALIGN_ERROR => Err(VmcallError::AlignError),
        s => Err(VmcallError::Other(s)),
    }
}

/// TDCALL completion status (RAX output), TDX Module ABI spec "Function Completion Status":
/// bit 63 ERROR, bit 62 NON_RECOVERABLE, bits 47:40 CLASS, 39:32 DETAILS_L1, 31:0 DETAILS_L2
/// (usually the operand id). The status *code* is bits 63:32.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TdcallStatus(pub u64);

/// Status codes (bits 63:32 of RAX; values as in Linux `asm/shared/tdx.h` /
/// `tdx-guest` `TdCallError`).
pub mod status {
    /// TDX_SUCCESS.
    pub const SUCCESS: u32 = 0x0000_0000;
    /// TDX_OPERAND_BUSY (recoverable: retry).
    pub const OPERAND_BUSY: u32 = 0x8000_0200;
    /// TDX_OPERAND_INVALID.
    pub const OPERAND_INVALID: u32 = 0xC000_0100;
    /// TDX_PAGE_ALREADY_ACCEPTED (a warning: bit 63 clear).
    pub const PAGE_ALREADY_ACCEPTED: u32 = 0x0000_0B0A;
    /// TDX_PAGE_SIZE_MISMATCH (TDG.MEM.PAGE.ACCEPT: the page is mapped at a smaller size).
    pub const PAGE_SIZE_MISMATCH: u32 = 0xC000_0B0B;
    /// TDX_NO_VALID_VE_INFO.
    pub const NO_VALID_VE_INFO: u32 = 0xC000_0704;
}

impl TdcallStatus {
    /// Bit 63: the call failed.
    pub fn is_error(self) -> bool {
        self.0 >> 63 == 1
    }
    /// Bit 62: the failure is not recoverable.
    pub fn is_non_recoverable(self) -> bool {
        (self.0 >> 62) & 1 == 1
    }
    /// CLASS, bits 47:40.
    pub fn class(self) -> u8 {
        (self.0 >> 40) as u8
    }
    /// The status code, bits 63:32 (compare with [`status`]).
    pub fn code(self) -> u32 {
        (self.0 >> 32) as u32
    }
    /// DETAILS_L2, bits 31:0 (the operand the status refers to, for most codes).
    pub fn details(self) -> u32 {
        self.0 as u32
    }
    /// True for TDX_SUCCESS (any details) — warnings such as PAGE_ALREADY_ACCEPTED are not.
    pub fn is_success(self) -> bool {
        self.code() == status::SUCCESS
    }
}

/// Output of TDG.VP.INFO, decoded and validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VpInfo {
    /// Guest physical address width: 48 or 52.
    pub gpaw: u8,
    /// TD ATTRIBUTES (bit 0 DEBUG, bit 28 SEPT_VE_DISABLE, ...).
    pub attributes: u64,
    /// Virtual CPUs currently initialised.
    pub num_vcpus: u32,
    /// Maximum virtual CPUs of the TD.
    pub max_vcpus: u32,
    /// This VCPU's index.
    pub vcpu_index: u32,
}

/// TD ATTRIBUTES.DEBUG (TDX Module ABI spec, "ATTRIBUTES").
pub const ATTR_DEBUG: u64 = 1 << 0;
/// TD ATTRIBUTES.SEPT_VE_DISABLE: EPT violations on pending pages are not turned into #VE.
pub const ATTR_SEPT_VE_DISABLE: u64 = 1 << 28;

/// TDG.VP.INFO output that cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VpInfoError {
    /// TDCALL failed.
    #[error("TDG.VP.INFO failed with status {0:#x}")]
    Tdcall(u64),
    /// GPAW is neither 48 nor 52.
    #[error("TDG.VP.INFO: GPAW {0}, want 48 or 52")]
    Gpaw(u8),
    /// NUM_VCPUS is 0 or above MAX_VCPUS, or the VCPU index is out of range.
    #[error("TDG.VP.INFO: inconsistent VCPU counts")]
    Vcpus,
}

impl VpInfo {
    /// Decodes TDG.VP.INFO's outputs: RCX[5:0] GPAW, RDX ATTRIBUTES, R8[31:0] NUM_VCPUS,
    /// R8[63:32] MAX_VCPUS, R9[31:0] VCPU_INDEX.
    pub fn decode(rax: u64, rcx: u64, rdx: u64, r8: u64, r9: u64) -> Result<Self, VpInfoError> {
        if rax != 0 {
            return Err(VpInfoError::Tdcall(rax));
        }
        let gpaw = (rcx & 0x3F) as u8;
        if gpaw != 48 && gpaw != 52 {
            return Err(VpInfoError::Gpaw(gpaw));
        }
        let (num_vcpus, max_vcpus, vcpu_index) = (r8 as u32, (r8 >> 32) as u32, r9 as u32);
        if num_vcpus == 0 || num_vcpus > max_vcpus || vcpu_index >= max_vcpus {
            return Err(VpInfoError::Vcpus);
        }
        Ok(Self {
            gpaw,
            attributes: rdx,
            num_vcpus,
            max_vcpus,
            vcpu_index,
        })
    }

    /// The shared bit of GPAs: bit GPAW − 1 (TDX Module spec "GPA space").
    pub fn shared_bit(&self) -> u64 {
        1u64 << (self.gpaw - 1)
    }
}

/// TDG.MEM.PAGE.ACCEPT page sizes (RCX[2:0] = the Secure-EPT level: 0 = 4 KiB, 1 = 2 MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageSize {
    /// 4 KiB (level 0).
    Size4K,
    /// 2 MiB (level 1).
    Size2M,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 4096,
            PageSize::Size2M => 2 << 20,
        }
    }
    /// The Secure-EPT level.
    pub const fn level(self) -> u64 {
        match self {
            PageSize::Size4K => 0,
            PageSize::Size2M => 1,
        }
    }
}

/// RCX of TDG.MEM.PAGE.ACCEPT: the GPA (aligned to the page size) with the level in bits 2:0.
pub fn accept_rcx(gpa: u64, size: PageSize) -> u64 {
    gpa | size.level()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp_info_decode_and_validate() {
        let r8 = (4u64 << 32) | 2;
        let v = VpInfo::decode(0, 0xFFFF_FF00 | 52, ATTR_SEPT_VE_DISABLE, r8, 1).unwrap();
        assert_eq!(v.gpaw, 52);
        assert_eq!(v.shared_bit(), 1 << 51);
        assert_eq!((v.num_vcpus, v.max_vcpus, v.vcpu_index), (2, 4, 1));
        assert_eq!(v.attributes & ATTR_DEBUG, 0);
        // Agrees with report::shared_bit (written independently from the same spec section).
        let v48 = VpInfo::decode(0, 48, 0, r8, 0).unwrap();
        assert_eq!(Some(v48.shared_bit()), super::super::report::shared_bit(48));
        assert_eq!(VpInfo::decode(0, 47, 0, r8, 0), Err(VpInfoError::Gpaw(47)));
        assert_eq!(VpInfo::decode(0, 0, 0, r8, 0), Err(VpInfoError::Gpaw(0)));
        assert_eq!(
            VpInfo::decode(0, 48, 0, (1 << 32) | 2, 0),
            Err(VpInfoError::Vcpus)
        );
        assert_eq!(
            VpInfo::decode(0, 48, 0, 1 << 32, 0),
            Err(VpInfoError::Vcpus)
        );
        assert_eq!(VpInfo::decode(0, 48, 0, r8, 4), Err(VpInfoError::Vcpus));
        assert_eq!(
            VpInfo::decode(0xC000_0100_0000_0000, 48, 0, r8, 0),
            Err(VpInfoError::Tdcall(0xC000_0100_0000_0000))
        );
    }

    #[test]
    fn status_fields() {
        // Linux asm/shared/tdx.h: TDX_PAGE_SIZE_MISMATCH 0xC0000B0B00000000.
        let s = TdcallStatus(0xC000_0B0B_0000_0000);
        assert!(s.is_error() && s.is_non_recoverable());
        assert_eq!(s.code(), status::PAGE_SIZE_MISMATCH);
        assert_eq!(s.class(), 0x0B);
        let w = TdcallStatus(0x0000_0B0A_0000_0000);
        assert!(!w.is_error() && !w.is_success());
        assert_eq!(w.code(), status::PAGE_ALREADY_ACCEPTED);
        let b = TdcallStatus(0x8000_0200_0000_0091);
        assert!(b.is_error() && !b.is_non_recoverable());
        assert_eq!((b.code(), b.details()), (status::OPERAND_BUSY, 0x91));
        assert!(TdcallStatus(0).is_success());
    }

    #[test]
    fn vmcall_codes() {
        assert_eq!(vmcall_result(0, 0), Ok(()));
        assert_eq!(vmcall_result(0, 1), Err(VmcallError::Retry));
        assert_eq!(
            vmcall_result(0, 0x8000_0000_0000_0000),
            Err(VmcallError::InvalidOperand)
        );
        assert_eq!(
            vmcall_result(0, 0x8000_0000_0000_0001),
            Err(VmcallError::GpaInUse)
        );
        assert_eq!(
            vmcall_result(0, 0x8000_0000_0000_0002),
            Err(VmcallError::AlignError)
        );
        assert_eq!(vmcall_result(0, 7), Err(VmcallError::Other(7)));
        assert_eq!(vmcall_result(5, 0), Err(VmcallError::Tdcall(5)));
    }

    #[test]
    fn accept_encoding() {
        assert_eq!(accept_rcx(0x20_0000, PageSize::Size2M), 0x20_0001);
        assert_eq!(accept_rcx(0x1000, PageSize::Size4K), 0x1000);
        assert_eq!(PageSize::Size2M.bytes(), 512 * PageSize::Size4K.bytes());
    }
}
