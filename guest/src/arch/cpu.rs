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
