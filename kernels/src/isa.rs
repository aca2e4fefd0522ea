//! Instruction-set detection and selection.
//!
//! The guest is built for a target whose baseline is SSE2, so the SIMD kernels are
//! `#[target_feature]` functions chosen at run time. In `no_std` builds [`detect`] reads CPUID
//! and XCR0 itself; with the `std` feature it uses `std::is_x86_feature_detected!`.

use core::sync::atomic::{AtomicU8, Ordering};

/// The kernel family to run, from slowest to fastest. Ordered: a CPU supporting one level
/// supports all lower ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Plain Rust, auto-vectorised for the baseline (SSE2 on x86-64).
    Portable,
    /// AVX2 + FMA (256-bit).
    Avx2Fma,
    /// AVX-512 F (512-bit f32 kernels; bf16/f16 inputs converted while packing).
    Avx512,
    /// AVX-512 F + AVX512_BF16 (`vdpbf16ps` for bf16 GEMM).
    Avx512Bf16,
}

impl Isa {
    /// A short lowercase name (`portable`, `avx2`, `avx512`, `avx512bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2Fma => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Avx512Bf16 => "avx512bf16",
        }
    }
}

static CACHED: AtomicU8 = AtomicU8::new(0);

/// The best [`Isa`] this CPU and OS support, detected once and cached (CPUID can trap to the
/// hypervisor in a confidential VM, so it is not re-run per call).
pub fn detect() -> Isa {
    match CACHED.load(Ordering::Relaxed) {
        1 => Isa::Portable,
        2 => Isa::Avx2Fma,
        3 => Isa::Avx512,
        4 => Isa::Avx512Bf16,
        _ => {
            let isa = detect_uncached();
            CACHED.store(isa as u8 + 1, Ordering::Relaxed);
            isa
        }
    }
}

/// Detection with the std macro (which also checks the OS-enabled state in XCR0).
#[cfg(all(feature = "std", target_arch = "x86_64"))]
pub fn detect_uncached() -> Isa {
    if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        if is_x86_feature_detected!("avx512bf16") {
            Isa::Avx512Bf16
        } else {
            Isa::Avx512
        }
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2Fma
    } else {
        Isa::Portable
    }
}

/// Detection without std: CPUID feature bits plus the OS-enabled register state in XCR0.
///
/// Intel SDM Vol. 1 §14.3 ("Detection of Intel AVX instructions": CPUID.1:ECX.OSXSAVE[27],
/// AVX[28], then XGETBV(0) bits 1-2), §14.9.1 ("FMA": CPUID.1:ECX[12]), §15.2 ("Detection of
/// AVX-512 foundation instructions": XCR0 bits 5-7 opmask/ZMM_Hi256/Hi16_ZMM also set,
/// CPUID.(EAX=7,ECX=0):EBX.AVX512F[16]); CPUID.(EAX=7,ECX=0):EBX.AVX2[5];
/// CPUID.(EAX=7,ECX=1):EAX.AVX512_BF16[5] (SDM Vol. 2A, CPUID leaf 07H).
#[cfg(target_arch = "x86_64")]
pub fn detect_cpuid() -> Isa {
    use core::arch::x86_64::__cpuid_count;
    let max_leaf = __cpuid_count(0, 0).eax;
    let l1 = __cpuid_count(1, 0);
    let osxsave = l1.ecx & (1 << 27) != 0;
    let avx = l1.ecx & (1 << 28) != 0;
    let fma = l1.ecx & (1 << 12) != 0;
    if !(osxsave && avx && fma) || max_leaf < 7 {
        return Isa::Portable;
    }
    // SAFETY: OSXSAVE is set, so XGETBV is enabled (SDM Vol. 1 §13.3).
    let xcr0 = unsafe { xgetbv0() };
    if xcr0 & 0b110 != 0b110 {
        return Isa::Portable; // the OS does not save YMM state
    }
    // Leaf 7 exists: max_leaf >= 7 checked above.
    let l7 = __cpuid_count(7, 0);
    let avx2 = l7.ebx & (1 << 5) != 0;
    let avx512f = l7.ebx & (1 << 16) != 0;
    let zmm_state = xcr0 & 0b1110_0110 == 0b1110_0110;
    if avx512f && zmm_state {
        let bf16 = if l7.eax >= 1 {
            // Sub-leaf 1 exists (EAX of sub-leaf 0 is the highest sub-leaf).
            __cpuid_count(7, 1).eax & (1 << 5) != 0
        } else {
            false
        };
        return if bf16 { Isa::Avx512Bf16 } else { Isa::Avx512 };
    }
    if avx2 {
        Isa::Avx2Fma
    } else {
        Isa::Portable
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "xsave")]
unsafe fn xgetbv0() -> u64 {
    // SAFETY: the caller checked CPUID.1:ECX.OSXSAVE.
    unsafe { core::arch::x86_64::_xgetbv(0) }
}

/// Detection without std (the guest): see [`detect_cpuid`].
#[cfg(all(not(feature = "std"), target_arch = "x86_64"))]
pub fn detect_uncached() -> Isa {
    detect_cpuid()
}

/// Non-x86 targets only have the portable kernels.
#[cfg(not(target_arch = "x86_64"))]
pub fn detect_uncached() -> Isa {
    Isa::Portable
}

/// Checks that `requested` is supported here, so a caller-chosen override can never execute
/// an instruction the CPU lacks.
pub(crate) fn check(requested: Isa) -> Result<(), crate::KernelError> {
    let available = detect();
    if requested > available {
        Err(crate::KernelError::IsaUnavailable {
            requested,
            available,
        })
    } else {
        Ok(())
    }
}
