//! Entry stubs for the two exceptions a confidential guest must *handle* rather than report:
//! #VC (vector 29, SEV-ES/SNP: an intercepted instruction the guest must emulate through the
//! GHCB) and #VE (vector 20, TDX: an instruction or access the TDX module hands to the guest).
//!
//! The stub saves every general-purpose register into a [`TrapFrame`] on the interrupted stack,
//! saves the SIMD state (XSAVE of every enabled component, or FXSAVE when CR4.OSXSAVE is clear:
//! the Rust handler may use SSE registers, and the interrupted code may be a kernel in the middle
//! of an AVX-512 loop), calls [`trap_dispatch`], restores everything (including any register the
//! handler changed in the frame, e.g. CPUID results and RIP) and returns with IRETQ.
//!
//! No IST stack: a #VC/#VE may nest only if the handler itself executes an intercepted
//! instruction, which it must not do (the handlers only use the GHCB MSR, VMGEXIT and TDCALL,
//! which never raise #VC/#VE); their fatal paths terminate the VM instead of printing.

use core::arch::global_asm;

use pupa_guest::trap::TrapFrame;

/// #VE: virtualization exception (SDM Vol. 3A §6.15, vector 20).
pub const VECTOR_VE: u64 = 20;
/// #VC: VMM communication exception (AMD APM Vol. 2 §15.35.5, vector 29).
pub const VECTOR_VC: u64 = 29;

/// The XSAVE area reserved on the stack: the standard-format area of x87, SSE, AVX and AVX-512
/// state is 2,696 bytes (CPUID.(EAX=0DH,ECX=0):EBX on a CPU with AVX-512); XCR0 never enables
/// larger components (AMX) in pupa (arch/boot.s).
const XSAVE_AREA: usize = 4096;

macro_rules! trap_entry {
    ($name:literal, $vector:expr, $push_code:literal) => {
        global_asm!(
            // arch/boot.s, assembled in the same module, may leave another section and mode.
            ".pushsection .text.pupa_trap, \"ax\"",
            ".code64",
            concat!(".global ", $name),
            concat!($name, ":"),
            $push_code,
            "push r15", "push r14", "push r13", "push r12", "push r11", "push r10", "push r9",
            "push r8", "push rbp", "push rdi", "push rsi", "push rdx", "push rcx", "push rbx",
            "push rax",
            "mov rbx, rsp", // rbx (callee-saved) = &mut TrapFrame
            "sub rsp, {xsave}",
            "and rsp, -64",
            // Zero the XSAVE header (offset 512, 64 bytes): XRSTOR faults on non-zero reserved
            // header bytes (SDM Vol. 1 §13.8.1).
            "xor eax, eax",
            "mov ecx, 8",
            "2:",
            "mov qword ptr [rsp + 512 + rcx * 8 - 8], rax",
            "loop 2b",
            "mov rax, cr4",
            "bt rax, 18", // CR4.OSXSAVE
            "mov eax, -1",
            "mov edx, -1",
            "jnc 3f",
            "xsave64 [rsp]",
            "jmp 4f",
            "3:",
            "fxsave64 [rsp]",
            "4:",
            "cld",
            "mov rdi, rbx",
            "mov esi, {vector}",
            "call {dispatch}",
            "mov rax, cr4",
            "bt rax, 18",
            "mov eax, -1",
            "mov edx, -1",
            "jnc 5f",
            "xrstor64 [rsp]",
            "jmp 6f",
            "5:",
            "fxrstor64 [rsp]",
            "6:",
            "mov rsp, rbx",
            "pop rax", "pop rbx", "pop rcx", "pop rdx", "pop rsi", "pop rdi", "pop rbp",
            "pop r8", "pop r9", "pop r10", "pop r11", "pop r12", "pop r13", "pop r14", "pop r15",
            "add rsp, 8", // the error code
            "iretq",
            ".popsection",
            xsave = const XSAVE_AREA,
            vector = const $vector,
            dispatch = sym trap_dispatch,
        );
    };
}

// #VC pushes an error code (the exit code); #VE does not, so its stub pushes a 0 in its place.
trap_entry!("pupa_vc_entry", VECTOR_VC, "");
trap_entry!("pupa_ve_entry", VECTOR_VE, "push 0");

extern "C" {
    fn pupa_vc_entry();
    fn pupa_ve_entry();
}

/// Addresses of the entry stubs, for the IDT.
pub fn entries() -> (u64, u64) {
    (
        pupa_vc_entry as *const () as u64,
        pupa_ve_entry as *const () as u64,
    )
}

/// Called by the stubs with the saved frame. Interrupts are off (interrupt gates).
extern "C" fn trap_dispatch(frame: &mut TrapFrame, vector: u64) {
    #[cfg(feature = "fault-test")]
    if selftest::ACTIVE.load(core::sync::atomic::Ordering::Relaxed) {
        return selftest::handler(frame);
    }
    match vector {
        VECTOR_VC => crate::platform::snp::handle_vc(frame),
        _ => crate::platform::tdx::handle_ve(frame),
    }
}

/// Test-only: a round trip through the #VE stub by a software `int 20` (the one path of the stubs
/// a plain VM can execute): the handler changes RAX and R12 in the frame and clobbers XMM7; the
/// caller must see the frame's values and its own XMM7. Run from main.rs's fault test
/// (`opt/pupa/fault` = `trap`), checked by tests/tests/boot.rs.
#[cfg(feature = "fault-test")]
pub mod selftest {
    use core::arch::asm;
    use core::sync::atomic::{AtomicBool, Ordering};

    /// Executes UD2: the #UD handler reports the exception and exits the VM.
    pub fn raise_ud() {
        // SAFETY: deliberately executes UD2; the #UD handler reports and exits.
        unsafe { asm!("ud2") };
    }

    /// Reads an unmapped address (only 0..4 GiB is mapped): the #PF handler reports the
    /// exception and exits the VM.
    pub fn raise_pf() {
        // SAFETY: deliberately reads an unmapped address; the #PF handler reports and exits.
        unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
    }

    use pupa_guest::trap::TrapFrame;

    pub(super) static ACTIVE: AtomicBool = AtomicBool::new(false);

    pub(super) fn handler(frame: &mut TrapFrame) {
        frame.rax = !frame.rax;
        frame.r12 = frame.r12.wrapping_add(frame.error_code + 1);
        // SAFETY: clobbers XMM7 only; the stub must restore the interrupted code's value.
        unsafe { asm!("pcmpeqd xmm7, xmm7", out("xmm7") _, options(nomem, nostack)) };
    }

    /// Returns (rax, r12, xmm7 low qword) as seen after `int 20` with rax = a, r12 = b,
    /// xmm7 = c.
    pub fn run(a: u64, b: u64, c: u64) -> (u64, u64, u64) {
        ACTIVE.store(true, Ordering::Relaxed);
        let (rax, r12, x): (u64, u64, u64);
        // SAFETY: vector 20's gate is the #VE stub, which saves and restores all state; in
        // self-test mode its handler only edits the saved frame.
        unsafe {
            asm!(
                "movq xmm7, {c}",
                "int 20",
                "movq {x}, xmm7",
                c = in(reg) c,
                x = lateout(reg) x,
                inout("rax") a => rax,
                inout("r12") b => r12,
                out("xmm7") _,
            )
        };
        ACTIVE.store(false, Ordering::Relaxed);
        (rax, r12, x)
    }
}
