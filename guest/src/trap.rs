//! The register state of an interrupted context, as the #VC (SEV-ES/SNP) and #VE (TDX) entry
//! stubs save it (`arch/trap.rs` in the firmware). The handlers' logic (`snp::vc`, `tdx::ve`)
//! reads and writes a [`TrapFrame`], so it runs unchanged in host tests.

/// General-purpose registers in the order the entry stub pushes them (last pushed first),
/// followed by the error code (0 for #VE, which has none) and the CPU's interrupt frame
/// (SDM Vol. 3A §6.14.2: RIP, CS, RFLAGS, RSP, SS).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrapFrame {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    /// The exception's error code (#VC: the SVM exit code of the intercepted event).
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Size of [`TrapFrame`]; the entry stubs in `arch/trap.rs` depend on it.
pub const TRAP_FRAME_LEN: usize = 21 * 8;
const _: () = assert!(core::mem::size_of::<TrapFrame>() == TRAP_FRAME_LEN);

impl TrapFrame {
    /// Sets RAX/RBX/RCX/RDX as CPUID does (the upper halves are zeroed, SDM Vol. 2A "CPUID").
    pub fn set_cpuid_result(&mut self, eax: u32, ebx: u32, ecx: u32, edx: u32) {
        self.rax = eax as u64;
        self.rbx = ebx as u64;
        self.rcx = ecx as u64;
        self.rdx = edx as u64;
    }

    /// Moves RIP past an emulated instruction of `len` bytes.
    pub fn skip_instruction(&mut self, len: u64) {
        self.rip = self.rip.wrapping_add(len);
    }
}
