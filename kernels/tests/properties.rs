//! Property tests: random shapes, layouts and dtypes against the f64 reference, on every ISA
//! this CPU supports, with outputs poisoned (NaN) before each run and fresh random inputs per
//! check (the seed is printed; set PUPA_SEED to replay).

use half::{bf16, f16};
use pupa_kernels::reference::{attention_f64, matmul_f64};
use pupa_kernels::{
    attention_with, detect, matmul_with, rel_l2_error, AttnShape, DType, Element, Isa, KernelError,
    MatRef,
};

/// SplitMix64 (Steele, Lea, Flood 2014): small, seedable, good enough for test data.
struct Rng(u64);
impl Rng {
    fn new() -> Self {
        let seed = std::env::var("PUPA_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("PUPA_SEED={seed}");
        Rng(seed)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    /// A size biased towards edge cases: 1, primes, around block sizes, or uniform.
    fn size(&mut self, max: usize) -> usize {
        const SPECIAL: [usize; 12] = [1, 2, 7, 8, 13, 16, 17, 47, 48, 49, 97, 257];
        if self.below(3) == 0 {
            SPECIAL[self.below(SPECIAL.len())].min(max)
        } else {
            1 + self.below(max)
        }
    }
    fn vec<T: Element>(&mut self, n: usize, scale: f32) -> Vec<T> {
        (0..n).map(|_| T::from_f32(self.unit() * scale)).collect()
    }
}

fn isas() -> Vec<Isa> {
    [Isa::Portable, Isa::Avx2Fma, Isa::Avx512, Isa::Avx512Bf16]
        .into_iter()
        .filter(|&i| i <= detect())
        .collect()
}

fn tol(d: DType, attention: bool) -> f64 {
    match d {
        DType::F32 if attention => 1e-4,
        DType::F32 => 1e-5,
        DType::F16 => 2e-3,
        DType::Bf16 => 1e-2,
    }
}

/// A random `rows × cols` view in a random layout (row-major, column-major, padded strides).
fn random_view<T: Element>(rng: &mut Rng, rows: usize, cols: usize) -> (Vec<T>, usize, usize) {
    let pad = if rng.below(2) == 0 { 0 } else { rng.below(5) };
    if rng.below(2) == 0 {
        let rs = cols + pad;
        (rng.vec(rows.saturating_sub(1) * rs + cols, 1.0), rs, 1)
    } else {
        let cs = rows + pad;
        (rng.vec(cols.saturating_sub(1) * cs + rows, 1.0), 1, cs)
    }
}

fn check_gemm<T: Element>(rng: &mut Rng, isa: Isa, m: usize, n: usize, k: usize) {
    let (ad, ars, acs) = random_view::<T>(rng, m, k);
    let (bd, brs, bcs) = random_view::<T>(rng, k, n);
    let a = MatRef::new(&ad, m, k, ars, acs).unwrap();
    let b = MatRef::new(&bd, k, n, brs, bcs).unwrap();
    let ldc = n + rng.below(3);
    let mut c = vec![f32::NAN; (m - 1) * ldc + n + 1];
    matmul_with(isa, a, b, &mut c, ldc).unwrap();
    let r = matmul_f64(&a, &b);
    let mut got = Vec::with_capacity(m * n);
    for i in 0..m {
        got.extend_from_slice(&c[i * ldc..i * ldc + n]);
        for x in &c[i * ldc + n..((i + 1) * ldc).min(c.len())] {
            assert!(x.is_nan(), "gemm wrote outside C ({isa:?} {m}x{n}x{k})");
        }
    }
    let err = rel_l2_error(&got, &r);
    assert!(
        err <= tol(T::DTYPE, false),
        "gemm {isa:?} {:?} {m}x{n}x{k} a=({ars},{acs}) b=({brs},{bcs}) ldc={ldc}: rel err {err:e}",
        T::DTYPE
    );
}

#[test]
fn gemm_random_shapes_layouts_dtypes_isas() {
    let mut rng = Rng::new();
    for isa in isas() {
        for _ in 0..40 {
            let (m, n, k) = (rng.size(140), rng.size(140), rng.size(300));
            match rng.below(3) {
                0 => check_gemm::<f32>(&mut rng, isa, m, n, k),
                1 => check_gemm::<bf16>(&mut rng, isa, m, n, k),
                _ => check_gemm::<f16>(&mut rng, isa, m, n, k),
            }
        }
    }
}

#[test]
fn gemm_large_crosses_all_blocks() {
    let mut rng = Rng::new();
    let isa = detect();
    // Crosses the KC, MC and NC block boundaries (kernels/src/gemm/mod.rs) with ragged
    // remainders.
    check_gemm::<f32>(&mut rng, isa, 197, 1601, 523);
    check_gemm::<bf16>(&mut rng, isa, 131, 307, 601);
    check_gemm::<f16>(&mut rng, isa, 101, 203, 517);
}

#[test]
fn gemm_vectors_and_k_zero() {
    let mut rng = Rng::new();
    for isa in isas() {
        check_gemm::<f32>(&mut rng, isa, 1, 1, 1);
        check_gemm::<f32>(&mut rng, isa, 1, 997, 31);
        check_gemm::<f32>(&mut rng, isa, 997, 1, 31);
        check_gemm::<bf16>(&mut rng, isa, 1, 53, 1);
        let a = [0f32; 0];
        let mut c = [f32::NAN; 6];
        matmul_with(
            isa,
            MatRef::row_major(&a, 2, 0).unwrap(),
            MatRef::row_major(&a, 0, 3).unwrap(),
            &mut c,
            3,
        )
        .unwrap();
        assert_eq!(c, [0.0; 6], "k = 0 must write zeros");
    }
}

fn check_attention<T: Element>(rng: &mut Rng, isa: Isa, sh: AttnShape, scale: f32) {
    let q: Vec<T> = rng.vec(sh.seq_q * sh.heads * sh.dim, scale);
    let k: Vec<T> = rng.vec(sh.seq_k * sh.kv_heads * sh.dim, scale);
    let v: Vec<T> = rng.vec(sh.seq_k * sh.kv_heads * sh.dim, 1.0);
    let mut out = vec![f32::NAN; sh.seq_q * sh.heads * sh.dim];
    let mut lse = vec![f32::NAN; sh.seq_q * sh.heads];
    attention_with(isa, &q, &k, &v, &mut out, sh, Some(&mut lse)).unwrap();
    let (ro, rl) = attention_f64(&q, &k, &v, &sh);
    let err = rel_l2_error(&out, &ro);
    assert!(
        err <= tol(T::DTYPE, true),
        "attention {isa:?} {:?} {sh:?} scale {scale}: out rel err {err:e}",
        T::DTYPE
    );
    for (i, (&g, &r)) in lse.iter().zip(&rl).enumerate() {
        if r == f64::NEG_INFINITY {
            assert_eq!(g, f32::NEG_INFINITY, "lse[{i}] of an empty row");
        } else {
            let e = (g as f64 - r).abs() / r.abs().max(1.0);
            assert!(
                e <= 1e-4,
                "attention {isa:?} {sh:?}: lse[{i}] = {g}, want {r}"
            );
        }
    }
}

fn random_shape(rng: &mut Rng) -> AttnShape {
    let kv_heads = 1 + rng.below(2);
    let heads = kv_heads * [1, 2, 3][rng.below(3)];
    let dim = match rng.below(5) {
        0 => 64,
        1 => 128,
        2 => 256,
        _ => rng.size(40),
    };
    let seq_q = rng.size(200);
    let seq_k = if rng.below(2) == 0 {
        seq_q
    } else {
        rng.size(300)
    };
    AttnShape {
        seq_q,
        seq_k,
        heads,
        kv_heads,
        dim,
        causal: rng.below(2) == 0,
    }
}

#[test]
fn attention_random_shapes_dtypes_isas() {
    let mut rng = Rng::new();
    for isa in isas() {
        for _ in 0..14 {
            let sh = random_shape(&mut rng);
            match rng.below(3) {
                0 => check_attention::<f32>(&mut rng, isa, sh, 1.0),
                1 => check_attention::<bf16>(&mut rng, isa, sh, 1.0),
                _ => check_attention::<f16>(&mut rng, isa, sh, 1.0),
            }
        }
    }
}

#[test]
fn attention_large_logits_are_stable() {
    let mut rng = Rng::new();
    for isa in isas() {
        for causal in [false, true] {
            // |q·k|/√d reaches ~1e4: entries of ±40 in dim 64 give dots up to 1e5 / 8.
            let sh = AttnShape {
                seq_q: 77,
                seq_k: 131,
                heads: 2,
                kv_heads: 1,
                dim: 64,
                causal,
            };
            check_attention::<f32>(&mut rng, isa, sh, 40.0);
            check_attention::<bf16>(&mut rng, isa, sh, 40.0);
        }
    }
}

#[test]
fn attention_long_sequence_gqa() {
    let mut rng = Rng::new();
    let sh = AttnShape {
        seq_q: 300,
        seq_k: 700,
        heads: 4,
        kv_heads: 2,
        dim: 128,
        causal: true,
    };
    check_attention::<f32>(&mut rng, detect(), sh, 1.0);
    let sh = AttnShape {
        causal: false,
        ..sh
    };
    check_attention::<f16>(&mut rng, detect(), sh, 1.0);
}

#[test]
fn attention_rows_with_no_visible_key() {
    let mut rng = Rng::new();
    for isa in isas() {
        // Bottom-right causal with seq_q > seq_k: the first 5 queries see nothing.
        let sh = AttnShape {
            seq_q: 20,
            seq_k: 15,
            heads: 1,
            kv_heads: 1,
            dim: 8,
            causal: true,
        };
        check_attention::<f32>(&mut rng, isa, sh, 1.0);
    }
}

#[test]
fn bad_input_gets_specific_errors() {
    let x = [0f32; 12];
    assert!(matches!(
        MatRef::row_major(&x, 4, 4),
        Err(KernelError::MatrixOutOfBounds { .. })
    ));
    assert!(matches!(
        MatRef::new(&x, usize::MAX, 2, usize::MAX, 1),
        Err(KernelError::MatrixOutOfBounds { .. })
    ));
    let a = MatRef::row_major(&x, 3, 4).unwrap();
    let mut c = [0f32; 16];
    assert!(matches!(
        matmul_with(detect(), a, a, &mut c, 4),
        Err(KernelError::ShapeMismatch { .. })
    ));
    let mut short = [0f32; 8];
    assert!(matches!(
        matmul_with(detect(), a, a.t(), &mut short, 3),
        Err(KernelError::BufferTooShort { .. })
    ));
    assert!(matches!(
        matmul_with(detect(), a, a.t(), &mut c, 2),
        Err(KernelError::BufferTooShort { .. })
    ));
    let sh = AttnShape {
        seq_q: 2,
        seq_k: 2,
        heads: 3,
        kv_heads: 2,
        dim: 2,
        causal: false,
    };
    let mut out = [0f32; 12];
    assert!(matches!(
        attention_with(detect(), &x, &x, &x, &mut out, sh, None),
        Err(KernelError::BadAttentionShape(_))
    ));
    let sh = AttnShape {
        heads: 4,
        kv_heads: 2,
        ..sh
    };
    assert!(matches!(
        attention_with(detect(), &x, &x, &x, &mut out, sh, None),
        Err(KernelError::BufferTooShort { what: "q", .. })
    ));
    let sh = AttnShape {
        heads: 2,
        kv_heads: 2,
        dim: 3,
        ..sh
    };
    let mut lse = [0f32; 3];
    assert!(matches!(
        attention_with(detect(), &x, &x, &x, &mut out, sh, Some(&mut lse)),
        Err(KernelError::BufferTooShort { what: "lse", .. })
    ));
}

#[test]
fn nan_never_passes() {
    assert_eq!(rel_l2_error(&[1.0, f32::NAN], &[1.0, 2.0]), f64::INFINITY);
    assert_eq!(
        rel_l2_error(&[1.0, f32::INFINITY], &[1.0, 2.0]),
        f64::INFINITY
    );
    assert_eq!(rel_l2_error(&[1.0], &[1.0, 2.0]), f64::INFINITY);
    assert!(rel_l2_error(&[1.0, 2.0], &[1.0, 2.0]) == 0.0);
    // NaN in an input shows in the output instead of being hidden by the softmax.
    let mut q = vec![0.5f32; 4 * 8];
    q[3] = f32::NAN;
    let mut out = vec![0f32; 4 * 8];
    let sh = AttnShape {
        seq_q: 4,
        seq_k: 4,
        heads: 1,
        kv_heads: 1,
        dim: 8,
        causal: false,
    };
    for isa in isas() {
        attention_with(isa, &q, &q, &q, &mut out, sh, None).unwrap();
        assert!(
            out[..8].iter().all(|x| x.is_nan()),
            "{isa:?}: NaN query row must give NaN"
        );
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn cpuid_detection_matches_std() {
    let std_says = if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("fma") {
        if is_x86_feature_detected!("avx512bf16") {
            Isa::Avx512Bf16
        } else {
            Isa::Avx512
        }
    } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2Fma
    } else {
        Isa::Portable
    };
    assert_eq!(pupa_kernels::detect_cpuid(), std_says);
    assert_eq!(detect(), std_says);
}

#[test]
fn attention_packed_path_for_f32_inputs() {
    // On AVX-512, f32 K and V are read in place; this covers the packing path for f32 too.
    // (Other tests running meanwhile may take either path; both must be right.)
    let mut rng = Rng::new();
    pupa_kernels::attention::FORCE_PACK.store(true, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..6 {
        let sh = random_shape(&mut rng);
        check_attention::<f32>(&mut rng, detect(), sh, 1.0);
    }
    pupa_kernels::attention::FORCE_PACK.store(false, std::sync::atomic::Ordering::Relaxed);
}

#[cfg(feature = "std")]
#[test]
fn parallel_drivers_match_serial_bitwise() {
    use pupa_kernels::attention_parallel;
    let mut rng = Rng::new();
    let isa = detect();
    for _ in 0..6 {
        let (m, n, k) = (rng.size(300), rng.size(200), rng.size(300));
        check_parallel_gemm::<bf16>(&mut rng, isa, m, n, k);
        let sh = random_shape(&mut rng);
        let q: Vec<f32> = rng.vec(sh.seq_q * sh.heads * sh.dim, 1.0);
        let kk: Vec<f32> = rng.vec(sh.seq_k * sh.kv_heads * sh.dim, 1.0);
        let v: Vec<f32> = rng.vec(sh.seq_k * sh.kv_heads * sh.dim, 1.0);
        let mut o1 = vec![f32::NAN; q.len()];
        let mut o2 = vec![f32::NAN; q.len()];
        let mut l1 = vec![f32::NAN; sh.seq_q * sh.heads];
        let mut l2 = vec![f32::NAN; sh.seq_q * sh.heads];
        attention_with(isa, &q, &kk, &v, &mut o1, sh, Some(&mut l1)).unwrap();
        attention_parallel(isa, &q, &kk, &v, &mut o2, sh, Some(&mut l2)).unwrap();
        assert!(
            o1.iter().zip(&o2).all(|(x, y)| x.to_bits() == y.to_bits()),
            "attention {sh:?}"
        );
        assert!(
            l1.iter().zip(&l2).all(|(x, y)| x.to_bits() == y.to_bits()),
            "lse {sh:?}"
        );
    }
    // Several B blocks along K and N (the parallel driver packs them all up front, shared by
    // the threads), in a pool that really has two threads.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    for (m, n, k) in [(150usize, 1100usize, 900usize), (37, 1601, 1601)] {
        pool.install(|| check_parallel_gemm::<f32>(&mut rng, isa, m, n, k));
    }
}

/// `matmul_parallel` (in the current rayon pool) equals the serial `matmul_with` bit for bit.
#[cfg(feature = "std")]
fn check_parallel_gemm<T: Element>(rng: &mut Rng, isa: Isa, m: usize, n: usize, k: usize) {
    let a: Vec<T> = rng.vec(m * k, 1.0);
    let b: Vec<T> = rng.vec(k * n, 1.0);
    let (av, bv) = (
        MatRef::row_major(&a, m, k).unwrap(),
        MatRef::row_major(&b, k, n).unwrap(),
    );
    let mut c1 = vec![f32::NAN; m * n];
    let mut c2 = vec![f32::NAN; m * n];
    matmul_with(isa, av, bv, &mut c1, n).unwrap();
    pupa_kernels::matmul_parallel(isa, av, bv, &mut c2, n).unwrap();
    assert!(
        c1.iter().zip(&c2).all(|(x, y)| x.to_bits() == y.to_bits()),
        "gemm {m}x{n}x{k}"
    );
}
