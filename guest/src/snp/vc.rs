//! #VC (VMM communication exception, AMD APM Vol. 2 §15.35.5) decode and emulation over a
//! [`TrapFrame`], with the VMGEXIT left to the caller:
//!
//! ```text
//! match vc::prepare(frame, insn_bytes_at_rip, &cpuid_table, read_cpu_state)? {
//!     VcAction::Done => {}                      // answered locally (CPUID from the CPUID page)
//!     VcAction::Exit(req) => {
//!         req.write_to(&mut ghcb);              // the GHCB request
//!         vmgexit();                            // firmware: arch::snp::vmgexit
//!         vc::complete(frame, &ghcb, &req)?;    // validate the answer, update registers, RIP
//!     }
//! }
//! ```
//!
//! The #VC error code is the SVM exit code (APM Vol. 2 Appendix C). Handled: CPUID (0x72,
//! answered from the trusted SNP CPUID page, never the hypervisor), IOIO (0x7B, IN/OUT with an
//! immediate port or DX, 8/16/32 bits) and MSR (0x7C, RDMSR/WRMSR). Everything else, string
//! I/O and REP prefixes included, is an error: pupa never executes them.

use super::cpuid::{CpuState, CpuidError, CpuidTable};
use super::ghcb::{exit, Field, Ghcb, GhcbError};
use crate::trap::TrapFrame;

/// IOIO exit information bits (APM Vol. 2 §15.10.2, Figure 15-2 "EXITINFO1 for IOIO Intercept").
pub mod ioio {
    /// TYPE: 1 = IN, 0 = OUT.
    pub const TYPE_IN: u64 = 1 << 0;
    /// STR: string instruction.
    pub const STR: u64 = 1 << 2;
    /// REP prefix.
    pub const REP: u64 = 1 << 3;
    /// SZ8: 8-bit operand.
    pub const SZ8: u64 = 1 << 4;
    /// SZ16: 16-bit operand.
    pub const SZ16: u64 = 1 << 5;
    /// SZ32: 32-bit operand.
    pub const SZ32: u64 = 1 << 6;
    /// A64: 64-bit address size (the hardware reports the address size for every IOIO
    /// intercept; Linux `vc_ioio_exitinfo` does the same).
    pub const A64: u64 = 1 << 9;
    /// Port number, bits 31:16.
    pub const PORT_SHIFT: u64 = 16;
}

/// Why a #VC could not be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VcError {
    /// The exit code is not one pupa emulates.
    #[error("unsupported #VC exit code {0:#x}")]
    Unsupported(u64),
    /// String I/O (INS/OUTS), which pupa never uses.
    #[error("string I/O is not supported")]
    StringIo,
    /// A REP/REPNE prefix on an I/O instruction.
    #[error("REP prefix on I/O is not supported")]
    RepPrefix,
    /// A prefix other than the operand-size override.
    #[error("unsupported instruction prefix {0:#x}")]
    Prefix(u8),
    /// The bytes at RIP are not the instruction the exit code names.
    #[error("instruction byte {byte:#x} does not match #VC exit code {exit_code:#x}")]
    InstructionMismatch {
        /// Exit code.
        exit_code: u64,
        /// First opcode byte found.
        byte: u8,
    },
    /// The instruction bytes end before the instruction does.
    #[error("instruction truncated")]
    Truncated,
    /// CPUID could not be answered from the CPUID page.
    #[error("CPUID: {0}")]
    Cpuid(#[from] CpuidError),
    /// The hypervisor's answer is an error or lacks a required register.
    #[error("GHCB: {0}")]
    Ghcb(#[from] GhcbError),
}

/// What [`complete`] has to do with the hypervisor's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    In { size: u8 },
    Out,
    RdMsr,
    WrMsr,
}

/// A GHCB request for the hypervisor, and what to do with its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GhcbRequest {
    /// SW_EXITCODE.
    pub exit_code: u64,
    /// SW_EXITINFO1.
    pub exit_info1: u64,
    /// SW_EXITINFO2.
    pub exit_info2: u64,
    /// RAX, RCX, RDX to pass (None: not valid in the GHCB).
    pub rax: Option<u64>,
    /// RCX.
    pub rcx: Option<u64>,
    /// RDX.
    pub rdx: Option<u64>,
    /// Length of the emulated instruction.
    pub insn_len: u8,
    pending: Pending,
}

impl GhcbRequest {
    /// Writes the request into the GHCB (after clearing it).
    pub fn write_to(&self, ghcb: &mut Ghcb<'_>) {
        ghcb.reset();
        ghcb.set(Field::SwExitCode, self.exit_code);
        ghcb.set(Field::SwExitInfo1, self.exit_info1);
        ghcb.set(Field::SwExitInfo2, self.exit_info2);
        for (f, v) in [
            (Field::Rax, self.rax),
            (Field::Rcx, self.rcx),
            (Field::Rdx, self.rdx),
        ] {
            if let Some(v) = v {
                ghcb.set(f, v);
            }
        }
    }
}

/// The outcome of [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VcAction {
    /// Handled locally; `frame` (registers and RIP) is already updated.
    Done,
    /// Send this request through the GHCB, then call [`complete`].
    Exit(GhcbRequest),
}

fn expect(insn: &[u8], want: [u8; 2], exit_code: u64) -> Result<(), VcError> {
    match insn {
        [a, b, ..] if [*a, *b] == want => Ok(()),
        [a, ..] => Err(VcError::InstructionMismatch {
            exit_code,
            byte: *a,
        }),
        [] => Err(VcError::Truncated),
    }
}

/// Decodes the #VC in `frame` (error code = exit code). `insn` holds the bytes at RIP (up to
/// 15; fewer if the instruction is at the end of mapped memory); `cpuid` is the SNP CPUID page,
/// `cpu` reads the guest's CR4/XCR0/XSS, only for a CPUID exit (every port I/O under SNP is a
/// #VC too, so the handler's common path does not pay for it). Runs inside the #VC handler.
pub fn prepare(
    frame: &mut TrapFrame,
    insn: &[u8],
    cpuid: &CpuidTable,
    cpu: impl FnOnce() -> CpuState,
) -> Result<VcAction, VcError> {
    match frame.error_code {
        exit::CPUID => {
            expect(insn, [0x0F, 0xA2], exit::CPUID)?;
            let r = cpuid.lookup(frame.rax as u32, frame.rcx as u32, &cpu())?;
            frame.set_cpuid_result(r.eax, r.ebx, r.ecx, r.edx);
            frame.skip_instruction(2);
            Ok(VcAction::Done)
        }
        exit::IOIO => ioio_request(frame, insn).map(VcAction::Exit),
        exit::MSR => {
            let write = match insn {
                [0x0F, 0x32, ..] => false,
                [0x0F, 0x30, ..] => true,
                _ => expect(insn, [0x0F, 0x32], exit::MSR).map(|_| false)?,
            };
            let lo = |v: u64| v & 0xFFFF_FFFF;
            Ok(VcAction::Exit(GhcbRequest {
                exit_code: exit::MSR,
                exit_info1: u64::from(write),
                exit_info2: 0,
                rax: write.then(|| lo(frame.rax)),
                rcx: Some(lo(frame.rcx)),
                rdx: write.then(|| lo(frame.rdx)),
                insn_len: 2,
                pending: if write {
                    Pending::WrMsr
                } else {
                    Pending::RdMsr
                },
            }))
        }
        code => Err(VcError::Unsupported(code)),
    }
}

/// Decodes IN/OUT (SDM Vol. 2A "IN", Vol. 2B "OUT"): opcodes E4/E5/EC/ED (IN), E6/E7/EE/EF
/// (OUT), optionally after 0x66.
fn ioio_request(frame: &TrapFrame, insn: &[u8]) -> Result<GhcbRequest, VcError> {
    let mut i = 0;
    let mut opsize16 = false;
    let op = loop {
        let b = *insn.get(i).ok_or(VcError::Truncated)?;
        match b {
            0x66 => opsize16 = true,
            0xF2 | 0xF3 => return Err(VcError::RepPrefix),
            0x6C..=0x6F => return Err(VcError::StringIo),
            0xE4..=0xE7 | 0xEC..=0xEF => break b,
            0x26 | 0x2E | 0x36 | 0x3E | 0x40..=0x4F | 0x64 | 0x65 | 0x67 | 0xF0 => {
                return Err(VcError::Prefix(b))
            }
            _ => {
                return Err(VcError::InstructionMismatch {
                    exit_code: exit::IOIO,
                    byte: b,
                })
            }
        }
        i += 1;
        if i >= 15 {
            return Err(VcError::Truncated);
        }
    };
    let is_in = matches!(op, 0xE4 | 0xE5 | 0xEC | 0xED);
    let byte_op = matches!(op, 0xE4 | 0xE6 | 0xEC | 0xEE);
    let (port, len) = if op <= 0xE7 {
        (
            u64::from(*insn.get(i + 1).ok_or(VcError::Truncated)?),
            i + 2,
        )
    } else {
        (frame.rdx & 0xFFFF, i + 1)
    };
    let (size, size_bit) = match (byte_op, opsize16) {
        (true, _) => (1u8, ioio::SZ8),
        (false, true) => (2, ioio::SZ16),
        (false, false) => (4, ioio::SZ32),
    };
    let mask = (1u64 << (8 * size)) - 1;
    Ok(GhcbRequest {
        exit_code: exit::IOIO,
        exit_info1: port << ioio::PORT_SHIFT
            | ioio::A64
            | size_bit
            | if is_in { ioio::TYPE_IN } else { 0 },
        exit_info2: 0,
        rax: (!is_in).then_some(frame.rax & mask),
        rcx: None,
        rdx: None,
        insn_len: len as u8,
        pending: if is_in {
            Pending::In { size }
        } else {
            Pending::Out
        },
    })
}

/// Applies the hypervisor's answer to `req` (after the VMGEXIT): checks SW_EXITINFO1, takes the
/// result registers (which must be marked valid), and moves RIP past the instruction. Runs
/// inside the #VC handler.
pub fn complete(frame: &mut TrapFrame, ghcb: &Ghcb<'_>, req: &GhcbRequest) -> Result<(), VcError> {
    ghcb.exit_result()?;
    match req.pending {
        Pending::In { size } => {
            let v = ghcb.get(Field::Rax)?;
            frame.rax = match size {
                1 => (frame.rax & !0xFF) | (v & 0xFF),
                2 => (frame.rax & !0xFFFF) | (v & 0xFFFF),
                // A 32-bit register write zero-extends into RAX (SDM Vol. 1 §3.4.1.1).
                _ => v & 0xFFFF_FFFF,
            };
        }
        Pending::Out | Pending::WrMsr => {}
        Pending::RdMsr => {
            let (a, d) = (ghcb.get(Field::Rax)?, ghcb.get(Field::Rdx)?);
            frame.rax = a & 0xFFFF_FFFF;
            frame.rdx = d & 0xFFFF_FFFF;
        }
    }
    frame.skip_instruction(u64::from(req.insn_len));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snp::cpuid::tests::sample;

    fn table() -> CpuidTable {
        CpuidTable::parse(&sample()).unwrap()
    }

    fn frame(code: u64) -> TrapFrame {
        TrapFrame {
            error_code: code,
            rip: 0x10_0000,
            rax: 0xDEAD_BEEF_CAFE_F00D,
            rdx: 0x1_0000_03F8,
            ..TrapFrame::default()
        }
    }

    fn exit_req(f: &mut TrapFrame, insn: &[u8]) -> GhcbRequest {
        match prepare(f, insn, &table(), CpuState::default).unwrap() {
            VcAction::Exit(r) => r,
            VcAction::Done => panic!("expected a GHCB request"),
        }
    }

    /// Plays the hypervisor: checks what the guest put in the GHCB, answers like KVM does
    /// (valid bits set on the returned registers, SW_EXITINFO1 = 0).
    fn hypervisor(page: &mut [u8; 4096], f: impl FnOnce(&mut Ghcb<'_>)) {
        let mut g = Ghcb::new(page);
        f(&mut g);
        g.set(Field::SwExitInfo1, 0);
    }

    #[test]
    fn cpuid_is_answered_from_the_cpuid_page() {
        let mut f = frame(0x72);
        f.rax = 0xFFFF_FFFF_8000_001F; // upper half ignored, as by the CPU
        f.rbx = 0x1234;
        let a = prepare(&mut f, &[0x0F, 0xA2, 0x90], &table(), CpuState::default);
        assert_eq!(a, Ok(VcAction::Done));
        assert_eq!((f.rax, f.rbx, f.rcx, f.rdx), (0x1_003F, 0x5133, 0x1FD, 1));
        assert_eq!(f.rip, 0x10_0002);
        let mut f = frame(0x72);
        assert_eq!(
            prepare(&mut f, &[0x0F, 0x31], &table(), CpuState::default),
            Err(VcError::InstructionMismatch {
                exit_code: 0x72,
                byte: 0x0F
            })
        );
        assert_eq!(f.rip, 0x10_0000);
    }

    #[test]
    fn ioio_exit_info_matches_apm_figure_15_2() {
        // out dx, al (EE), port 0x3F8 from DX: SZ8 | A64 | port << 16 = 0x03F8_0210.
        let mut f = frame(0x7B);
        let r = exit_req(&mut f, &[0xEE]);
        assert_eq!(r.exit_info1, 0x03F8_0210);
        assert_eq!((r.rax, r.insn_len), (Some(0x0D), 1));
        // in al, 0x71 (E4 71): IN | SZ8 | A64 = 0x0071_0211.
        let r = exit_req(&mut f, &[0xE4, 0x71]);
        assert_eq!((r.exit_info1, r.rax, r.insn_len), (0x0071_0211, None, 2));
        // in ax, dx (66 ED): SZ16.
        let r = exit_req(&mut f, &[0x66, 0xED]);
        assert_eq!((r.exit_info1, r.insn_len), (0x03F8_0221, 2));
        // out 0x80, eax (E7 80): SZ32, RAX low 32 bits.
        let r = exit_req(&mut f, &[0xE7, 0x80]);
        assert_eq!(r.exit_info1, 0x0080_0240);
        assert_eq!(r.rax, Some(0xCAFE_F00D));
        // out dx, ax (66 EF): the low 16 bits.
        let r = exit_req(&mut f, &[0x66, 0xEF]);
        assert_eq!((r.exit_info1, r.rax), (0x03F8_0220, Some(0xF00D)));
    }

    #[test]
    fn ioio_rejects_string_rep_and_odd_bytes() {
        let t = table();
        let c = CpuState::default();
        let mut f = frame(0x7B);
        let mut p = |b: &[u8]| prepare(&mut f, b, &t, || c);
        assert_eq!(p(&[0x6E]), Err(VcError::StringIo));
        assert_eq!(p(&[0xF3, 0x6C]), Err(VcError::RepPrefix));
        assert_eq!(p(&[0xF3, 0xEE]), Err(VcError::RepPrefix));
        assert_eq!(p(&[0x67, 0xEE]), Err(VcError::Prefix(0x67)));
        assert_eq!(p(&[0x48, 0xED]), Err(VcError::Prefix(0x48)));
        assert_eq!(p(&[0xE4]), Err(VcError::Truncated));
        assert_eq!(p(&[0x66; 15]), Err(VcError::Truncated));
        assert_eq!(p(&[]), Err(VcError::Truncated));
        assert_eq!(
            p(&[0x90]),
            Err(VcError::InstructionMismatch {
                exit_code: 0x7B,
                byte: 0x90
            })
        );
    }

    #[test]
    fn ioio_in_merges_the_answer_like_the_cpu() {
        let mut page = [0u8; 4096];
        for (insn, want) in [
            (&[0xEC][..], 0xDEAD_BEEF_CAFE_F0AA),       // in al, dx: AL only
            (&[0x66, 0xED][..], 0xDEAD_BEEF_CAFE_55AA), // in ax, dx: AX only
            (&[0xED][..], 0x1155_55AA),                 // in eax, dx: zero-extended
        ] {
            let mut f = frame(0x7B);
            let r = exit_req(&mut f, insn);
            r.write_to(&mut Ghcb::new(&mut page));
            hypervisor(&mut page, |g| {
                assert_eq!(g.get(Field::SwExitInfo1), Ok(r.exit_info1));
                assert!(!g.is_valid(Field::Rax));
                g.set(Field::Rax, 0x7777_7777_1155_55AA);
            });
            complete(&mut f, &Ghcb::new(&mut page), &r).unwrap();
            assert_eq!(f.rax, want);
            assert_eq!(f.rip, 0x10_0000 + insn.len() as u64);
        }
    }

    #[test]
    fn in_without_a_valid_rax_is_refused() {
        let mut page = [0u8; 4096];
        let mut f = frame(0x7B);
        let r = exit_req(&mut f, &[0xEC]);
        r.write_to(&mut Ghcb::new(&mut page));
        hypervisor(&mut page, |_| {});
        assert_eq!(
            complete(&mut f, &Ghcb::new(&mut page), &r),
            Err(VcError::Ghcb(GhcbError::NotValid(Field::Rax)))
        );
        assert_eq!(f.rip, 0x10_0000);
        // A hypervisor that leaves SW_EXITINFO1 as the guest wrote it is an error too.
        let r = exit_req(&mut f, &[0xEE]);
        r.write_to(&mut Ghcb::new(&mut page));
        assert_eq!(
            complete(&mut f, &Ghcb::new(&mut page), &r),
            Err(VcError::Ghcb(GhcbError::UnknownResult(0x03F8_0210)))
        );
    }

    #[test]
    fn msr_read_and_write() {
        let mut page = [0u8; 4096];
        let mut f = frame(0x7C);
        f.rcx = 0xFFFF_FFFF_C000_0080;
        f.rdx = 0x1111_2222_0000_0001;
        let r = exit_req(&mut f, &[0x0F, 0x30]);
        assert_eq!(
            (r.exit_info1, r.rcx, r.rax, r.rdx),
            (1, Some(0xC000_0080), Some(0xCAFE_F00D), Some(1))
        );
        let r = exit_req(&mut f, &[0x0F, 0x32]);
        assert_eq!(
            (r.exit_info1, r.rcx, r.rax, r.rdx),
            (0, Some(0xC000_0080), None, None)
        );
        r.write_to(&mut Ghcb::new(&mut page));
        hypervisor(&mut page, |g| {
            assert_eq!(g.get(Field::Rcx), Ok(0xC000_0080));
            g.set(Field::Rax, 0xFFFF_0000_0000_0D01);
        });
        assert_eq!(
            complete(&mut f, &Ghcb::new(&mut page), &r),
            Err(VcError::Ghcb(GhcbError::NotValid(Field::Rdx)))
        );
        hypervisor(&mut page, |g| g.set(Field::Rdx, 0x5));
        complete(&mut f, &Ghcb::new(&mut page), &r).unwrap();
        assert_eq!((f.rax, f.rdx, f.rip), (0xD01, 5, 0x10_0002));
        // The hypervisor asks for a #GP: an error, registers untouched.
        hypervisor(&mut page, |g| g.set(Field::SwExitInfo2, 0x8000_0B0D));
        let mut g = Ghcb::new(&mut page);
        g.set(Field::SwExitInfo1, 1);
        assert_eq!(
            complete(&mut f, &g, &r),
            Err(VcError::Ghcb(GhcbError::Exception(0x8000_0B0D)))
        );
        assert_eq!(f.rip, 0x10_0002);
    }

    #[test]
    fn other_exits_are_unsupported() {
        let mut f = frame(0x6E); // RDTSC
        assert_eq!(
            prepare(&mut f, &[0x0F, 0x31], &table(), CpuState::default),
            Err(VcError::Unsupported(0x6E))
        );
        let mut f = frame(0x7C);
        assert_eq!(
            prepare(&mut f, &[0x0F, 0xA2], &table(), CpuState::default),
            Err(VcError::InstructionMismatch {
                exit_code: 0x7C,
                byte: 0x0F
            })
        );
    }
}
