//! TDX guest-host calls, as thin wrappers (not executed on this development machine: it has no
//! TDX; the plain path never reaches them).
//!
//! TDG.VP.VMCALL is TDCALL leaf 0 (Intel TDX Module ABI spec §"TDG.VP.VMCALL"); its sub-functions
//! follow the Guest-Hypervisor Communication Interface (GHCI) spec. RCX is the bitmap of GPRs
//! exposed to the VMM: here R10–R15 (bits 10–15).

use core::arch::asm;

/// TDCALL leaf: TDG.VP.VMCALL.
const TDG_VP_VMCALL: u64 = 0;
/// GHCI §3.9: TDG.VP.VMCALL<Instruction.IO>, the exit reason of an I/O instruction.
const VMCALL_INSTRUCTION_IO: u64 = 30;
/// Exposed registers R10..R15.
const EXPOSE_R10_R15: u64 = 0xFC00;

/// Port I/O through the VMM (GHCI §3.9). `size` is 1, 2 or 4; `write` selects OUT.
/// Returns the value read for IN, or `None` if the VMM reported an error.
pub fn vmcall_io(port: u16, size: u8, write: bool, value: u32) -> Option<u32> {
    let status: u64;
    let data: u64;
    // SAFETY: TDCALL(TDG.VP.VMCALL) only exchanges the exposed registers with the VMM; port
    // I/O is emulated by the VMM and touches no guest memory. Only called under TDX, where
    // TDCALL exists (anywhere else it is #UD).
    unsafe {
        asm!(
            ".byte 0x66, 0x0f, 0x01, 0xcc", // tdcall
            inout("rax") TDG_VP_VMCALL => _,
            inout("rcx") EXPOSE_R10_R15 => _,
            inout("r10") 0u64 => status,
            inout("r11") VMCALL_INSTRUCTION_IO => data,
            inout("r12") size as u64 => _,
            inout("r13") write as u64 => _,
            inout("r14") port as u64 => _,
            inout("r15") value as u64 => _,
            options(nostack),
        );
    }
    (status == 0).then_some(data as u32)
}
