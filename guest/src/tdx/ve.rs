//! The #VE (virtualization exception, vector 20) logic of a TD guest.
//!
//! Under TDX, instructions the TDX module does not handle itself (CPUID for most leaves, IN/OUT,
//! RDMSR/WRMSR of most MSRs, HLT) raise #VE inside the guest. The handler (firmware,
//! `platform/tdx.rs::handle_ve`) does, in order:
//!
//! 1. TDG.VP.VEINFO.GET → [`VeInfo::decode`];
//! 2. [`prepare`] → a [`VePlan`] holding the TDG.VP.VMCALL to make ([`VmcallRequest`]);
//! 3. the TDVMCALL itself (thin wrapper) → `Result<VmcallOut, VmcallError>`;
//! 4. [`complete`]: writes the results into the [`TrapFrame`] and moves RIP past the
//!    instruction (length from VEINFO, validated to 1..=15).
//!
//! Anything else (an EPT violation, i.e. a touch of unaccepted or shared-converted memory, or
//! an exit reason not listed) is a [`VeError`]: fatal, the handler reports it.
//!
//! Sources: TDX Module ABI spec "TDG.VP.VEINFO.GET" (outputs), GHCI 1.5 §3.6–3.11 (the
//! Instruction.* sub-functions and their registers), SDM Vol. 3C §28.2.1 Table 28-5 (I/O exit
//! qualification) and Appendix C (basic exit reasons).

use super::tdcall::{vmcall, VmcallError};
use crate::trap::TrapFrame;

/// VMX basic exit reasons #VE reports (SDM Vol. 3D Appendix C).
pub mod exit_reason {
    /// CPUID.
    pub const CPUID: u32 = 10;
    /// HLT.
    pub const HLT: u32 = 12;
    /// I/O instruction.
    pub const IO: u32 = 30;
    /// RDMSR.
    pub const RDMSR: u32 = 31;
    /// WRMSR.
    pub const WRMSR: u32 = 32;
    /// EPT violation (a private page not accepted, or a conversion the guest did not ask for).
    pub const EPT_VIOLATION: u32 = 48;
}

/// RFLAGS.IF.
const RFLAGS_IF: u64 = 1 << 9;

/// The CPUID leaves reserved for hypervisor communication (Intel SDM Vol. 2A "CPUID": "no
/// existing or future CPU will return processor identification or feature information" there).
/// Only these reach the VMM; GHCI 1.5 §3.6 leaves the filtering to the guest, and Linux
/// `arch/x86/coco/tdx/tdx.c::handle_cpuid` applies the same range.
pub const CPUID_VMM_LEAVES: core::ops::RangeInclusive<u32> = 0x4000_0000..=0x4FFF_FFFF;

/// TDG.VP.VEINFO.GET output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VeInfo {
    /// RCX[31:0]: the VMX exit reason.
    pub exit_reason: u32,
    /// RDX: the exit qualification.
    pub exit_qualification: u64,
    /// R8: guest linear address.
    pub gla: u64,
    /// R9: guest physical address.
    pub gpa: u64,
    /// R10[31:0]: the instruction's length.
    pub instruction_length: u32,
    /// R10[63:32]: VM-exit instruction information.
    pub instruction_info: u32,
}

impl VeInfo {
    /// Decodes TDG.VP.VEINFO.GET's registers; `rax` is the TDCALL status.
    pub fn decode(
        rax: u64,
        rcx: u64,
        rdx: u64,
        r8: u64,
        r9: u64,
        r10: u64,
    ) -> Result<Self, VeError> {
        if rax != 0 {
            return Err(VeError::VeInfoGet(rax));
        }
        Ok(Self {
            exit_reason: rcx as u32,
            exit_qualification: rdx,
            gla: r8,
            gpa: r9,
            instruction_length: r10 as u32,
            instruction_info: (r10 >> 32) as u32,
        })
    }
}

/// Registers R11..R15 of a TDG.VP.VMCALL request (R10 = 0: a GHCI-defined call).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmcallRequest {
    /// R11: the sub-function ([`vmcall`]).
    pub subfunction: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

/// Registers R11..R15 after a successful TDG.VP.VMCALL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmcallOut {
    /// R11.
    pub r11: u64,
    /// R12.
    pub r12: u64,
    /// R13.
    pub r13: u64,
    /// R14.
    pub r14: u64,
    /// R15.
    pub r15: u64,
}

/// The emulated instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    /// CPUID: R12..R15 → EAX, EBX, ECX, EDX.
    Cpuid,
    /// CPUID of a leaf outside [`CPUID_VMM_LEAVES`]: EAX, EBX, ECX, EDX = 0 without asking the
    /// VMM. The leaves the TDX module virtualizes never reach #VE; a leaf that does is one the
    /// TD's CPUID configuration leaves to the VMM, and a VMM answer there (a feature bit, a
    /// topology) is untrusted input, so it reads as an unsupported leaf reads on a CPU.
    CpuidZero,
    /// IN of `size` bytes: R11 → AL/AX/EAX.
    In {
        /// 1, 2 or 4.
        size: u8,
    },
    /// OUT.
    Out,
    /// RDMSR: R11 → EDX:EAX.
    Rdmsr,
    /// WRMSR.
    Wrmsr,
    /// HLT.
    Hlt,
}

/// What the handler must do for one #VE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VePlan {
    /// The TDVMCALL to make; `None` when the guest answers itself ([`Emulation::CpuidZero`]).
    pub request: Option<VmcallRequest>,
    /// How to apply its result.
    pub emulation: Emulation,
    /// Bytes to skip (1..=15).
    pub instruction_length: u8,
}

/// A #VE the guest cannot handle: fatal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VeError {
    /// TDG.VP.VEINFO.GET failed.
    #[error("TDG.VP.VEINFO.GET failed with status {0:#x}")]
    VeInfoGet(u64),
    /// The instruction length is not 1..=15.
    #[error("#VE instruction length {0} out of 1..=15")]
    InstructionLength(u32),
    /// INS/OUTS or REP I/O (the guest never issues them).
    #[error("#VE on string or REP I/O to port {port:#x}")]
    StringIo {
        /// The port.
        port: u16,
    },
    /// An I/O size other than 1, 2 or 4.
    #[error("#VE on I/O with size encoding {0}")]
    IoSize(u8),
    /// An EPT violation: private memory not accepted, or unexpectedly shared.
    #[error("#VE EPT violation at GPA {gpa:#x} (GLA {gla:#x})")]
    EptViolation {
        /// Guest physical address.
        gpa: u64,
        /// Guest linear address.
        gla: u64,
    },
    /// An exit reason the guest does not emulate.
    #[error("#VE with unsupported exit reason {0}")]
    Unsupported(u32),
    /// The VMM failed the emulation call.
    #[error("TDG.VP.VMCALL for #VE exit reason {reason} failed: {err}")]
    Vmcall {
        /// The exit reason.
        reason: u32,
        /// The error.
        err: VmcallError,
    },
}

/// Decides the emulation of the #VE described by `info` for the interrupted `frame`.
pub fn prepare(frame: &TrapFrame, info: &VeInfo) -> Result<VePlan, VeError> {
    let req = |subfunction, r12, r13, r14, r15| {
        Some(VmcallRequest {
            subfunction,
            r12,
            r13,
            r14,
            r15,
        })
    };
    let (request, emulation) = match info.exit_reason {
        exit_reason::CPUID if !CPUID_VMM_LEAVES.contains(&(frame.rax as u32)) => {
            (None, Emulation::CpuidZero)
        }
        exit_reason::CPUID => (
            req(
                vmcall::CPUID,
                frame.rax & 0xFFFF_FFFF,
                frame.rcx & 0xFFFF_FFFF,
                0,
                0,
            ),
            Emulation::Cpuid,
        ),
        exit_reason::IO => {
            let q = info.exit_qualification;
            let port = (q >> 16) as u16;
            // Table 28-5: bit 4 string instruction, bit 5 REP prefixed.
            if q & (1 << 4) != 0 || q & (1 << 5) != 0 {
                return Err(VeError::StringIo { port });
            }
            // Bits 2:0: size − 1 (0, 1 or 3).
            let size = match q & 7 {
                0 => 1u8,
                1 => 2,
                3 => 4,
                s => return Err(VeError::IoSize(s as u8)),
            };
            // Bit 3: direction, 1 = IN.
            if q & (1 << 3) != 0 {
                (
                    req(vmcall::IO, size as u64, vmcall::IO_READ, port as u64, 0),
                    Emulation::In { size },
                )
            } else {
                let value = frame.rax & size_mask(size);
                (
                    req(
                        vmcall::IO,
                        size as u64,
                        vmcall::IO_WRITE,
                        port as u64,
                        value,
                    ),
                    Emulation::Out,
                )
            }
        }
        exit_reason::RDMSR => (
            req(vmcall::RDMSR, frame.rcx & 0xFFFF_FFFF, 0, 0, 0),
            Emulation::Rdmsr,
        ),
        exit_reason::WRMSR => {
            let value = (frame.rdx << 32) | (frame.rax & 0xFFFF_FFFF);
            (
                req(vmcall::WRMSR, frame.rcx & 0xFFFF_FFFF, value, 0, 0),
                Emulation::Wrmsr,
            )
        }
        exit_reason::HLT => {
            // GHCI §3.8: R12 = 1 if the guest halts with interrupts blocked (RFLAGS.IF = 0).
            let blocked = (frame.rflags & RFLAGS_IF == 0) as u64;
            (req(vmcall::HLT, blocked, 0, 0, 0), Emulation::Hlt)
        }
        exit_reason::EPT_VIOLATION => {
            return Err(VeError::EptViolation {
                gpa: info.gpa,
                gla: info.gla,
            })
        }
        r => return Err(VeError::Unsupported(r)),
    };
    let len = info.instruction_length;
    if !(1..=15).contains(&len) {
        return Err(VeError::InstructionLength(len));
    }
    Ok(VePlan {
        request,
        emulation,
        instruction_length: len as u8,
    })
}

/// The whole emulation of one #VE: [`prepare`], the TDG.VP.VMCALL through `vmcall` (only if
/// the plan has one), then [`complete`]. The firmware's handler passes the real TDVMCALL; tests pass a mock VMM.
pub fn emulate(
    frame: &mut TrapFrame,
    info: &VeInfo,
    vmcall: impl FnOnce(&VmcallRequest) -> Result<VmcallOut, VmcallError>,
) -> Result<(), VeError> {
    let plan = prepare(frame, info)?;
    let result = match &plan.request {
        Some(request) => vmcall(request),
        None => Ok(VmcallOut::default()),
    };
    complete(frame, &plan, result)
}

fn size_mask(size: u8) -> u64 {
    (1u64 << (8 * size as u32)) - 1
}

/// Applies the VMM's answer to `frame` and skips the instruction. On error the frame is left
/// unchanged (the handler reports it as fatal).
pub fn complete(
    frame: &mut TrapFrame,
    plan: &VePlan,
    result: Result<VmcallOut, VmcallError>,
) -> Result<(), VeError> {
    let out = result.map_err(|err| VeError::Vmcall {
        reason: match plan.emulation {
            Emulation::Cpuid | Emulation::CpuidZero => exit_reason::CPUID,
            Emulation::In { .. } | Emulation::Out => exit_reason::IO,
            Emulation::Rdmsr => exit_reason::RDMSR,
            Emulation::Wrmsr => exit_reason::WRMSR,
            Emulation::Hlt => exit_reason::HLT,
        },
        err,
    })?;
    match plan.emulation {
        Emulation::Cpuid => frame.set_cpuid_result(
            out.r12 as u32,
            out.r13 as u32,
            out.r14 as u32,
            out.r15 as u32,
        ),
        Emulation::CpuidZero => frame.set_cpuid_result(0, 0, 0, 0),
        Emulation::In { size: 4 } => frame.rax = out.r11 & 0xFFFF_FFFF, // 32-bit write zero-extends
        Emulation::In { size } => {
            let m = size_mask(size);
            frame.rax = (frame.rax & !m) | (out.r11 & m); // AL/AX writes keep the rest of RAX
        }
        Emulation::Rdmsr => {
            frame.rax = out.r11 & 0xFFFF_FFFF;
            frame.rdx = out.r11 >> 32;
        }
        Emulation::Out | Emulation::Wrmsr | Emulation::Hlt => {}
    }
    frame.skip_instruction(plan.instruction_length as u64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(reason: u32, q: u64, len: u32) -> VeInfo {
        VeInfo {
            exit_reason: reason,
            exit_qualification: q,
            instruction_length: len,
            ..Default::default()
        }
    }

    fn frame() -> TrapFrame {
        TrapFrame {
            rax: 0xDEAD_BEEF_0000_0007,
            rcx: 0xFFFF_FFFF_0000_0001,
            rdx: 0x1111_2222_3333_4444,
            rip: 0x10_0000,
            rflags: 0x202,
            ..Default::default()
        }
    }

    #[test]
    fn veinfo_registers() {
        let v = VeInfo::decode(0, 0xFFFF_0000_0000_001E, 0x3F8_0000, 1, 2, (7 << 32) | 2).unwrap();
        assert_eq!(v.exit_reason, 30);
        assert_eq!((v.gla, v.gpa), (1, 2));
        assert_eq!((v.instruction_length, v.instruction_info), (2, 7));
        assert_eq!(
            VeInfo::decode(0xC000_0704_0000_0000, 0, 0, 0, 0, 0),
            Err(VeError::VeInfoGet(0xC000_0704_0000_0000))
        );
    }

    #[test]
    fn cpuid_round_trip() {
        let mut f = frame();
        f.rax = 0xDEAD_BEEF_4000_0001; // a hypervisor leaf
        let p = prepare(&f, &info(10, 0, 2)).unwrap();
        let r = p.request.unwrap();
        assert_eq!(r.subfunction, 10);
        assert_eq!((r.r12, r.r13), (0x4000_0001, 1)); // EAX, ECX only
        let out = VmcallOut {
            r12: 0xFFFF_FFFF_0000_00AA,
            r13: 0xBB,
            r14: 0xCC,
            r15: 0xDD,
            ..Default::default()
        };
        complete(&mut f, &p, Ok(out)).unwrap();
        assert_eq!((f.rax, f.rbx, f.rcx, f.rdx), (0xAA, 0xBB, 0xCC, 0xDD));
        assert_eq!(f.rip, 0x10_0002);
    }

    /// A VMM that answers every call with all ones and counts the calls.
    fn hostile_vmm(
        calls: &mut u32,
    ) -> impl FnMut(&VmcallRequest) -> Result<VmcallOut, VmcallError> + '_ {
        move |_| {
            *calls += 1;
            Ok(VmcallOut {
                r11: u64::MAX,
                r12: u64::MAX,
                r13: u64::MAX,
                r14: u64::MAX,
                r15: u64::MAX,
            })
        }
    }

    /// T3: only the hypervisor range 0x4000_0000..=0x4FFF_FFFF goes to the VMM; any other leaf
    /// that reaches #VE reads as zeros, as a CPU answers an unsupported leaf (Linux
    /// `handle_cpuid`), so the VMM cannot inject feature bits the TDX module did not vouch for.
    #[test]
    fn cpuid_outside_hypervisor_range_reads_zero_without_vmcall() {
        for leaf in [
            0u64,
            7,
            0xB,
            0x3FFF_FFFF,
            0x5000_0000,
            0x8000_0001,
            0xFFFF_FFFF,
        ] {
            let mut calls = 0;
            let mut f = frame();
            f.rax = 0xFFFF_FFFF_0000_0000 | leaf;
            emulate(&mut f, &info(10, 0, 2), hostile_vmm(&mut calls)).unwrap();
            assert_eq!(calls, 0, "leaf {leaf:#x} forwarded to the VMM");
            assert_eq!((f.rax, f.rbx, f.rcx, f.rdx), (0, 0, 0, 0), "leaf {leaf:#x}");
            assert_eq!(f.rip, 0x10_0002);
        }
        for leaf in [0x4000_0000u64, 0x4000_0001, 0x4FFF_FFFF] {
            let mut calls = 0;
            let mut f = frame();
            f.rax = leaf;
            emulate(&mut f, &info(10, 0, 2), hostile_vmm(&mut calls)).unwrap();
            assert_eq!(calls, 1, "leaf {leaf:#x} not forwarded");
            assert_eq!(f.rax, 0xFFFF_FFFF);
        }
    }

    #[test]
    fn io_in_and_out() {
        // `in al, dx` on port 0x3F9: size 0 (1 byte), bit 3 IN, port in 31:16.
        let mut f = frame();
        let p = prepare(&f, &info(30, (0x3F9 << 16) | 8, 1)).unwrap();
        assert_eq!(
            p.request,
            Some(VmcallRequest {
                subfunction: 30,
                r12: 1,
                r13: 0,
                r14: 0x3F9,
                r15: 0
            })
        );
        let out = VmcallOut {
            r11: 0x12_3456_789A,
            ..Default::default()
        };
        complete(&mut f, &p, Ok(out)).unwrap();
        assert_eq!(f.rax, 0xDEAD_BEEF_0000_009A); // only AL replaced
                                                  // `in eax, dx`: the upper half of RAX is cleared.
        let mut f = frame();
        let p = prepare(&f, &info(30, (0xCFC << 16) | 8 | 3, 1)).unwrap();
        complete(
            &mut f,
            &p,
            Ok(VmcallOut {
                r11: 0xFFFF_0000_1234_5678,
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!(f.rax, 0x1234_5678);
        // `out dx, ax` with an immediate-encoded port (bit 6): data masked to 16 bits.
        let f = frame();
        let p = prepare(&f, &info(30, (0x604 << 16) | 64 | 1, 2)).unwrap();
        assert_eq!(
            p.request,
            Some(VmcallRequest {
                subfunction: 30,
                r12: 2,
                r13: 1,
                r14: 0x604,
                r15: 7
            })
        );
        assert_eq!(p.emulation, Emulation::Out);
    }

    #[test]
    fn io_rejections() {
        let f = frame();
        assert_eq!(
            prepare(&f, &info(30, (0x80 << 16) | 16, 1)),
            Err(VeError::StringIo { port: 0x80 })
        );
        assert_eq!(
            prepare(&f, &info(30, (0x80 << 16) | 32 | 8, 2)),
            Err(VeError::StringIo { port: 0x80 })
        );
        assert_eq!(prepare(&f, &info(30, 2, 1)), Err(VeError::IoSize(2)));
        assert_eq!(prepare(&f, &info(30, 7, 1)), Err(VeError::IoSize(7)));
    }

    #[test]
    fn msr_and_hlt() {
        let mut f = frame();
        let p = prepare(&f, &info(31, 0, 2)).unwrap();
        let r = p.request.unwrap();
        assert_eq!((r.subfunction, r.r12), (31, 1));
        complete(
            &mut f,
            &p,
            Ok(VmcallOut {
                r11: 0xAAAA_BBBB_CCCC_DDDD,
                ..Default::default()
            }),
        )
        .unwrap();
        assert_eq!((f.rax, f.rdx), (0xCCCC_DDDD, 0xAAAA_BBBB));
        let f = frame();
        let p = prepare(&f, &info(32, 0, 2)).unwrap();
        let r = p.request.unwrap();
        assert_eq!((r.r12, r.r13), (1, 0x3333_4444_0000_0007));
        let mut f = frame();
        let p = prepare(&f, &info(12, 0, 1)).unwrap();
        let r = p.request.unwrap();
        assert_eq!((r.subfunction, r.r12), (12, 0)); // IF set
        f.rflags = 2;
        assert_eq!(
            prepare(&f, &info(12, 0, 1)).unwrap().request.unwrap().r12,
            1
        );
        complete(&mut f, &p, Ok(VmcallOut::default())).unwrap();
        assert_eq!(f.rip, 0x10_0001);
    }

    #[test]
    fn fatal_cases() {
        let f = frame();
        let ept = VeInfo {
            exit_reason: 48,
            gpa: 0x8000_0000,
            gla: 0x8000_0000,
            instruction_length: 3,
            ..Default::default()
        };
        assert_eq!(
            prepare(&f, &ept),
            Err(VeError::EptViolation {
                gpa: 0x8000_0000,
                gla: 0x8000_0000
            })
        );
        assert_eq!(prepare(&f, &info(54, 0, 3)), Err(VeError::Unsupported(54)));
        assert_eq!(
            prepare(&f, &info(10, 0, 0)),
            Err(VeError::InstructionLength(0))
        );
        assert_eq!(
            prepare(&f, &info(10, 0, 16)),
            Err(VeError::InstructionLength(16))
        );
        // A VMM failure leaves the frame untouched.
        let mut g = frame();
        g.rax = 0x4000_0000;
        let p = prepare(&g, &info(10, 0, 2)).unwrap();
        assert_eq!(
            complete(&mut g, &p, Err(VmcallError::InvalidOperand)),
            Err(VeError::Vmcall {
                reason: 10,
                err: VmcallError::InvalidOperand
            })
        );
        let mut untouched = frame();
        untouched.rax = 0x4000_0000;
        assert_eq!(g, untouched);
    }
}
