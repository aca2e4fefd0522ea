//! Measured peak: a throughput loop of independent FMA (or `vdpbf16ps`) chains per thread,
//! enough chains to hide the latency, no memory traffic.

use pupa_kernels::Isa;
use std::time::Instant;

/// Iterations per trial: ~0.5 ms at 2 FMA/cycle, short enough that many trials fit between the
/// time slices of other processes on a shared machine (such a process only ever makes a trial
/// slower, and the best trial counts).
const ITERS: u64 = 150_000;
/// Trials per thread of a first measurement ([`measure`]); [`TRIALS_PER_ROUND`] again in each
/// round of a benchmark, beside the kernels, so that the peak sees the same machine they do.
pub const TRIALS: usize = 60;
pub const TRIALS_PER_ROUND: usize = 8;
/// Independent accumulator chains: at least 2 FMA pipes × 4-6 cycles of latency (Intel since
/// Skylake-SP, AMD Zen 4/5) with margin, all in registers (24 + 2 of 32 zmm, 12 + 2 of 16 ymm).
const CHAINS_512: usize = 24;
const CHAINS_256: usize = 12;
const _: () = assert!(CHAINS_512 >= 2 * 6 && CHAINS_256 >= 2 * 5);

/// GFLOP/s of `threads` threads running the widest multiply-add this ISA has (with `bf16`,
/// the better of `vdpbf16ps` and FMA, see [`one`]). With
/// `cpu_clock`, each thread times itself on its own CPU-time clock (what a thread achieves
/// while it runs, whatever else shares the machine).
pub fn measure(isa: Isa, bf16: bool, threads: usize, cpu_clock: bool, trials: usize) -> f64 {
    let flops_per_thread = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|_| s.spawn(move || one(isa, bf16, cpu_clock, trials)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap_or(0.0))
            .collect::<Vec<_>>()
    });
    flops_per_thread.iter().sum()
}

/// The best trial of one thread. With `bf16`, the better of the `vdpbf16ps` and the f32 FMA
/// loop: a bf16 product can be computed either way (widened to f32, as faer and numpy do), and
/// `vdpbf16ps` is not always the faster in FLOP/s (on a Sapphire Rapids it ran at half the FMA
/// loop's rate), so the bf16 loop alone is no ceiling for a bf16 GEMM.
fn one(isa: Isa, bf16: bool, cpu_clock: bool, trials: usize) -> f64 {
    (0..trials)
        .map(|_| {
            let fma = trial(isa, false, cpu_clock);
            if bf16 {
                fma.max(trial(isa, true, cpu_clock))
            } else {
                fma
            }
        })
        .fold(0.0, f64::max)
}

fn thread_cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn trial(isa: Isa, bf16: bool, cpu_clock: bool) -> f64 {
    let t = Instant::now();
    let c0 = thread_cpu_seconds();
    // SAFETY: each kernel is chosen only when `isa` (≤ detect()) includes its features.
    let per_iter = unsafe {
        #[cfg(target_arch = "x86_64")]
        match isa {
            Isa::Avx512Bf16 if bf16 => x86::dpbf16(ITERS),
            Isa::Avx512 | Isa::Avx512Bf16 => x86::fma512(ITERS),
            Isa::Avx2Fma => x86::fma256(ITERS),
            Isa::Portable => return 0.0f64.max(f64::MIN_POSITIVE),
        }
        #[cfg(not(target_arch = "x86_64"))]
        return f64::MIN_POSITIVE;
    };
    let secs = if cpu_clock {
        thread_cpu_seconds() - c0
    } else {
        t.elapsed().as_secs_f64()
    };
    ITERS as f64 * per_iter / secs / 1e9
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{CHAINS_256, CHAINS_512};
    use core::arch::x86_64::*;
    use std::hint::black_box;

    /// [`CHAINS_512`] chains × 16 lanes × 2 flops per iteration.
    #[target_feature(enable = "avx512f,fma")]
    pub unsafe fn fma512(iters: u64) -> f64 {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS_512];
        let x = black_box(_mm512_set1_ps(1.000_000_1));
        let y = black_box(_mm512_set1_ps(0.999_999_9));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, x, y);
            }
        }
        black_box(acc);
        CHAINS_512 as f64 * 32.0
    }

    /// [`CHAINS_512`] chains × 16 lanes × 4 flops (two bf16 products and their sums) per iteration.
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub unsafe fn dpbf16(iters: u64) -> f64 {
        let mut acc = [_mm512_set1_ps(0.0); CHAINS_512];
        // SAFETY: both are 512-bit plain vector types; 0x3f80 is bf16 1.0 in every lane.
        let x: __m512bh = black_box(unsafe {
            core::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi16(0x3f80))
        });
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_dpbf16_ps(*a, x, x);
            }
        }
        black_box(acc);
        CHAINS_512 as f64 * 64.0
    }

    /// [`CHAINS_256`] chains × 8 lanes × 2 flops per iteration.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(iters: u64) -> f64 {
        let mut acc = [_mm256_set1_ps(0.0); CHAINS_256];
        let x = black_box(_mm256_set1_ps(1.000_000_1));
        let y = black_box(_mm256_set1_ps(0.999_999_9));
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, x, y);
            }
        }
        black_box(acc);
        CHAINS_256 as f64 * 16.0
    }
}
