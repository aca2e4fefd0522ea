//! The CUDA kernels on a real GPU, compared with the f64 references of `pupa_kernels::reference`
//! (and with the CPU model of the same kernels). Every test says plainly why it skipped when the
//! machine has no NVIDIA driver, no libnvrtc or no Hopper GPU.
#![cfg(feature = "cuda")]

use half::bf16;
use pupa_kernels::cuda::model::attention::{attention_tiled, AttnShape as ModelShape};
use pupa_kernels::cuda::{compile_all_ptx, CudaError, CudaKernels};
use pupa_kernels::reference::{attention_f64, matmul_f64};
use pupa_kernels::{rel_l2_error, AttnShape, MatRef};

/// splitmix64 for test inputs.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn bf16_vec(&mut self, n: usize) -> Vec<bf16> {
        (0..n)
            .map(|_| bf16::from_f32((self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0))
            .collect()
    }
}

/// The GPU, or `None` with the reason printed when this machine cannot run the kernels. With
/// `PUPA_REQUIRE_GPU` set (kernels/cuda/gpu-check.sh) a missing GPU fails the test instead.
fn gpu() -> Option<CudaKernels> {
    match CudaKernels::new(0) {
        Ok(g) => Some(g),
        Err(e) if std::env::var_os("PUPA_REQUIRE_GPU").is_some() => {
            panic!("PUPA_REQUIRE_GPU is set but the GPU cannot run the kernels: {e}")
        }
        Err(
            e @ (CudaError::NoDriver
            | CudaError::NoNvrtc
            | CudaError::NoDevice { .. }
            | CudaError::UnsupportedDevice { .. }),
        ) => {
            eprintln!("SKIPPED (no GPU run): {e}");
            None
        }
        Err(e) => panic!("CUDA set-up failed on a machine that has a GPU: {e}"),
    }
}

#[test]
fn nvrtc_compiles_every_kernel_for_sm_90a() {
    match compile_all_ptx() {
        Ok(ptx) => {
            for (file, text) in ptx {
                assert!(
                    text.contains(".target sm_90a"),
                    "{file}: not built for sm_90a"
                );
                assert!(text.contains("wgmma.mma_async"), "{file}: no wgmma");
                assert!(text.contains("cp.async.bulk.tensor"), "{file}: no TMA");
                assert!(
                    text.contains("mbarrier.try_wait"),
                    "{file}: no mbarrier pipeline"
                );
            }
        }
        Err(CudaError::NoNvrtc) if std::env::var_os("PUPA_REQUIRE_GPU").is_none() => {
            eprintln!("SKIPPED: libnvrtc not found (see kernels/cuda/DEPS.md for LD_LIBRARY_PATH)")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn gemm_matches_f64_reference() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(11);
    for (m, n, k) in [
        (1, 1, 8),
        (128, 256, 64),
        (129, 257, 72),
        (300, 520, 200),
        (1000, 1000, 1024),
        (1024, 2048, 4096), // the f64 reference is a naive triple loop: keep it ~10 G MACs
    ] {
        let (a, b) = (rng.bf16_vec(m * k), rng.bf16_vec(n * k));
        let out = gpu.gemm_host(&a, &b, m, n, k).expect("gemm");
        let reference = matmul_f64(
            &MatRef::row_major(&a, m, k).unwrap(),
            &MatRef::row_major(&b, n, k).unwrap().t(),
        );
        let err = rel_l2_error(&out, &reference);
        assert!(err <= 1e-4, "gemm {m}x{n}x{k}: rel err {err:e}");
    }
}

#[test]
fn attention_matches_f64_reference_and_the_model() {
    let Some(gpu) = gpu() else { return };
    let mut rng = Rng(12);
    let shapes = [
        (128, 128, 1, 1, 64, false),
        (257, 257, 2, 1, 128, true),
        (1, 1, 1, 1, 64, true),
        (200, 70, 1, 1, 64, true),
        (70, 300, 4, 2, 128, true),
        (1000, 1000, 8, 2, 128, false),
        (2048, 2048, 2, 2, 128, true),
    ];
    for (seq_q, seq_k, heads, kv_heads, dim, causal) in shapes {
        let shape = AttnShape {
            seq_q,
            seq_k,
            heads,
            kv_heads,
            dim,
            causal,
        };
        let (q, k, v) = (
            rng.bf16_vec(seq_q * heads * dim),
            rng.bf16_vec(seq_k * kv_heads * dim),
            rng.bf16_vec(seq_k * kv_heads * dim),
        );
        let out = gpu.attention_host(&q, &k, &v, &shape).expect("attention");
        let reference = attention_f64(&q, &k, &v, &shape).0;
        let err = rel_l2_error(&out, &reference);
        assert!(err <= 1e-2, "{shape:?}: rel err {err:e} against f64");
        if seq_q * seq_k <= 300 * 300 {
            let bits = |x: &[bf16]| x.iter().map(|b| b.to_bits()).collect::<Vec<_>>();
            let ms = ModelShape {
                heads,
                kv_heads,
                seq_q,
                seq_k,
                dim,
                causal,
            };
            let model = attention_tiled(
                &bits(&q),
                &bits(&k),
                &bits(&v),
                &ms,
                1.0 / (dim as f32).sqrt(),
            );
            let model64: Vec<f64> = model.iter().map(|&x| x as f64).collect();
            let err = rel_l2_error(&out, &model64);
            assert!(
                err <= 1e-3,
                "{shape:?}: GPU differs from the CPU model by {err:e}"
            );
        }
    }
}

#[test]
fn bad_shapes_are_errors() {
    let Some(gpu) = gpu() else { return };
    let x = vec![bf16::ZERO; 64 * 64];
    assert!(matches!(
        gpu.gemm_host(&x, &x, 8, 8, 7),
        Err(CudaError::BadShape(_))
    ));
    let shape = AttnShape {
        seq_q: 8,
        seq_k: 8,
        heads: 1,
        kv_heads: 1,
        dim: 96,
        causal: false,
    };
    assert!(matches!(
        gpu.attention_host(&x, &x, &x, &shape),
        Err(CudaError::BadShape(_))
    ));
    let shape = AttnShape {
        seq_q: 64,
        seq_k: 64,
        heads: 2,
        kv_heads: 1,
        dim: 64,
        causal: false,
    };
    assert!(matches!(
        gpu.attention_host(&x, &x, &x, &shape),
        Err(CudaError::BadShape(_))
    ));
}
