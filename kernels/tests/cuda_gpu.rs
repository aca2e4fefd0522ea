//! The CUDA kernels on a real GPU, compared with the f64 references of `pupa_kernels::reference`
//! (and with the CPU model of the same kernels). Every test says plainly why it skipped when the
//! machine has no NVIDIA driver, no libnvrtc or no Hopper GPU.
#![cfg(feature = "cuda")]

use half::bf16;
use pupa_kernels::cuda::model::attention::{attention_tiled, AttnShape as ModelShape};
use pupa_kernels::cuda::{compile_all_ptx, Cubins, CudaError, CudaKernels};
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

/// A directory for one test's files.
fn temp_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("pupa-cubins-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn cubin_files_are_checked_before_the_driver_sees_them() {
    let dir = temp_dir("check");
    let bad = |e: CudaError, file: &str, why: &str| match e {
        CudaError::BadCubin { path, why: w } => {
            assert!(path.ends_with(file), "{path}");
            assert!(w.contains(why), "{w}");
        }
        other => panic!("{other}"),
    };
    bad(
        Cubins::read_dir(&dir).err().unwrap(),
        Cubins::FILES[0],
        "No such file",
    );
    std::fs::write(dir.join(Cubins::FILES[0]), b"\x7fELF\x02\x01\x01").unwrap();
    std::fs::write(dir.join(Cubins::FILES[1]), b"// PTX, not a cubin").unwrap();
    bad(
        Cubins::read_dir(&dir).err().unwrap(),
        Cubins::FILES[1],
        "not an ELF file",
    );
    let f = std::fs::File::create(dir.join(Cubins::FILES[1])).unwrap();
    f.set_len(17 << 20).unwrap();
    bad(
        Cubins::read_dir(&dir).err().unwrap(),
        Cubins::FILES[1],
        "bytes, more than",
    );
    std::fs::write(dir.join(Cubins::FILES[1]), b"\x7fELF\x02\x01\x01").unwrap();
    let c = Cubins::read_dir(&dir).unwrap();
    assert_eq!(c.gemm.len(), 7);
    // Without a driver, the cubins are not even looked at: a clear error, no panic.
    if std::env::var_os("PUPA_REQUIRE_GPU").is_none() {
        if let Err(e) = CudaKernels::with_cubins(0, &c) {
            eprintln!("with_cubins on this machine: {e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The cubins `kernels/cuda/check.sh` builds for the R535 driver (CUDA 12.9 NVRTC and ptxas,
/// in `$PUPA_CUDA_OUT/cu12`, default `target/cuda-gates/cu12`) compute what the NVRTC build
/// computes. Needs the GPU and check.sh's output.
#[test]
fn cuda12_cubins_match_the_nvrtc_build() {
    let dir = std::env::var_os("PUPA_CUDA_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cuda-gates")
        })
        .join("cu12");
    let cubins = match Cubins::read_dir(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: {e} (run kernels/cuda/check.sh first)");
            return;
        }
    };
    let Some(nvrtc) = gpu() else { return };
    let prebuilt = CudaKernels::with_cubins(0, &cubins).expect("the CUDA 12 cubins load");
    let (m, n, k) = (256, 192, 128);
    let mut rng = Rng(7);
    let (a, b) = (rng.bf16_vec(m * k), rng.bf16_vec(n * k));
    let want = nvrtc.gemm_host(&a, &b, m, n, k).unwrap();
    let got = prebuilt.gemm_host(&a, &b, m, n, k).unwrap();
    let want64: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    let err = rel_l2_error(&got, &want64);
    assert!(err <= 1e-6, "CUDA 12 cubin vs NVRTC build: rel err {err:e}");
    let shape = AttnShape {
        seq_q: 256,
        seq_k: 256,
        heads: 2,
        kv_heads: 1,
        dim: 64,
        causal: true,
    };
    let q = rng.bf16_vec(256 * 2 * 64);
    let (kk, v) = (rng.bf16_vec(256 * 64), rng.bf16_vec(256 * 64));
    let want = nvrtc.attention_host(&q, &kk, &v, &shape).unwrap();
    let got = prebuilt.attention_host(&q, &kk, &v, &shape).unwrap();
    let want64: Vec<f64> = want.iter().map(|&x| f64::from(x)).collect();
    let err = rel_l2_error(&got, &want64);
    assert!(
        err <= 1e-6,
        "attention, CUDA 12 cubin vs NVRTC build: rel err {err:e}"
    );
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
