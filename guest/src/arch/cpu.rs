//! Thin wrappers over CPU instructions.

use core::arch::asm;
use pupa_guest::tee::CpuidResult;

/// CPUID with a subleaf.
pub fn cpuid(leaf: u32, subleaf: u32) -> CpuidResult {
    // CPUID has no side effects on memory. Under TDX the leaves the guest asks for are
    // virtualised by the TDX module without a #VE.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC only reads the TSC (CR4.TSD is clear in ring 0 anyway).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// CR2, the last page-fault address.
pub fn cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effect.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// HLT forever with interrupts off.
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: stops the CPU until the next interrupt; with IF clear this is the end.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// RDMSR. Under SEV-ES/SNP and TDX most MSRs raise #VC/#VE, which `arch::trap` hands to the
/// GHCB / TDG.VP.VMCALL emulation (the instruction must be exactly `rdmsr`: those handlers
/// decode it).
///
/// # Safety
/// `msr` must exist on this CPU (else #GP) and reading it must have no side effect the caller
/// has not accounted for.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: guaranteed by the caller; RDMSR writes EDX:EAX only.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi,
             options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

/// WRMSR (see [`rdmsr`] for the TEE paths).
///
/// # Safety
/// `msr` must exist and the value must be valid for it (else #GP); the caller must know the
/// effect of the write.
pub unsafe fn wrmsr(msr: u32, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") v as u32, in("edx") (v >> 32) as u32,
             options(nostack, preserves_flags))
    };
}

/// `STI; HLT; CLI`: halts until an interrupt, with interrupts enabled for the halt only.
///
/// STI delays interrupt recognition until after the next instruction (SDM Vol. 2B "STI"), so
/// an interrupt that became pending before the STI (while IF was clear) cannot slip in between
/// the STI and the HLT and leave the CPU halted: it ends the HLT at once. This is the
/// race-free halt; the handler runs between HLT and CLI. Returns with IF clear.
///
/// Does nothing until the IDT has a handler for every external vector (arch::interrupts).
pub fn halt_with_interrupts() {
    if !super::interrupts::external_vectors_ready() {
        return;
    }
    // SAFETY: every vector 0x20..=0xFF has a handler (checked above) that acknowledges the
    // interrupt and returns; the interrupted code holds nothing those handlers take (they touch
    // only the local APIC and atomics). Memory is not `nomem`: handlers run in between.
    unsafe { asm!("sti", "hlt", "cli", options(nostack)) };
}

/// `STI; NOP; CLI`: lets interrupts that are already pending be delivered (the NOP is the one
/// instruction of the STI shadow), then masks them again. Used after TDX's HLT hypercall,
/// which returns with the interrupt still pending.
pub fn take_pending_interrupts() {
    if !super::interrupts::external_vectors_ready() {
        return;
    }
    // SAFETY: as for `halt_with_interrupts`.
    unsafe { asm!("sti", "nop", "cli", options(nostack)) };
}

/// The RDSEED/RDRAND instructions for the entropy health-test logic.
pub struct CpuRng {
    rdseed: bool,
    rdrand: bool,
}

impl CpuRng {
    pub fn new() -> Self {
        CpuRng {
            rdseed: cpuid(7, 0).ebx & (1 << 18) != 0,
            rdrand: cpuid(1, 0).ecx & (1 << 30) != 0,
        }
    }
}

impl pupa_guest::entropy::HwRng for CpuRng {
    fn has_rdseed(&self) -> bool {
        self.rdseed
    }
    fn has_rdrand(&self) -> bool {
        self.rdrand
    }
    fn rdseed64(&mut self) -> Option<u64> {
        let (v, ok): (u64, u8);
        // SAFETY: only called when CPUID reports RDSEED; it writes one register and CF.
        unsafe {
            asm!("rdseed {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        (ok == 1).then_some(v)
    }
    fn rdrand64(&mut self) -> Option<u64> {
        let (v, ok): (u64, u8);
        // SAFETY: only called when CPUID reports RDRAND; it writes one register and CF.
        unsafe {
            asm!("rdrand {v}", "setc {ok}", v = out(reg) v, ok = out(reg_byte) ok, options(nomem, nostack))
        };
        (ok == 1).then_some(v)
    }
    fn pause(&mut self) {
        core::hint::spin_loop();
    }
}
