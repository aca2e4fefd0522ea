//! Tests of the pure-Rust model of pupa's Hopper kernels (kernels/src/cuda/model): fragment
//! layouts against the PTX ISA figures, shared-memory descriptors against the TMA placement, and
//! each kernel's tiling executed on the CPU against an f64 reference over many random shapes.
//! Needs no GPU and no feature.

#[path = "../src/cuda/model/mod.rs"]
#[allow(dead_code)]
mod model;

use model::attention::{attention_tiled, AttnShape};
use model::fragments::*;
use model::gemm::gemm_tiled;
use model::smem::*;
use model::warpgroup::{new_accum, wgmma_rs, wgmma_ss};
use model::{bf16_bits_to_f32, f32_to_bf16_bits};

use half::bf16;
use pupa_kernels::reference::{attention_f64, matmul_f64};
use pupa_kernels::{rel_l2_error, MatRef};

/// splitmix64: a small deterministic generator for test inputs (seeded per test).
struct Rng(u64);
impl Rng {
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
    /// Uniform in [-1, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn bf16_vec(&mut self, n: usize) -> Vec<u16> {
        (0..n).map(|_| f32_to_bf16_bits(self.unit())).collect()
    }
}

/// ‖out − ref‖ / ‖ref‖ (pupa_kernels' own measure; NaN or an unwritten element gives infinity).
fn rel_err(out: &[f32], reference: &[f64]) -> f64 {
    rel_l2_error(out, reference)
}

fn to_f64(v: &[u16]) -> Vec<f64> {
    v.iter().map(|&b| bf16_bits_to_f32(b) as f64).collect()
}

fn as_bf16(v: &[u16]) -> Vec<bf16> {
    v.iter().map(|&b| bf16::from_bits(b)).collect()
}

/// f64 reference (pupa_kernels::reference, written independently of the CUDA model): C = A B^T
/// with A m x k and B n x k, both row-major.
fn ref_gemm(a: &[u16], b: &[u16], m: usize, n: usize, k: usize) -> Vec<f64> {
    let (a, b) = (as_bf16(a), as_bf16(b));
    let a = MatRef::row_major(&a, m, k).expect("A shape");
    let bt = MatRef::row_major(&b, n, k).expect("B shape").t();
    matmul_f64(&a, &bt)
}

/// f64 reference attention (pupa_kernels::reference: scale 1/sqrt(dim), bottom-right causal, a
/// row with no visible key is zero).
fn ref_attention(q: &[u16], k: &[u16], v: &[u16], sh: &AttnShape) -> Vec<f64> {
    let shape = pupa_kernels::AttnShape {
        seq_q: sh.seq_q,
        seq_k: sh.seq_k,
        heads: sh.heads,
        kv_heads: sh.kv_heads,
        dim: sh.dim,
        causal: sh.causal,
    };
    attention_f64(&as_bf16(q), &as_bf16(k), &as_bf16(v), &shape).0
}

// ---------------------------------------------------------------- bf16 -------------------------

#[test]
fn bf16_rounding_matches_published_values() {
    // Values from the bfloat16 format's published examples (Wikipedia, "bfloat16 floating-point
    // format": 3f80 = 1, c000 = -2, 4049 = pi rounded, 7f80 = inf) and IEEE round-to-nearest-even.
    assert_eq!(f32_to_bf16_bits(1.0), 0x3F80);
    assert_eq!(f32_to_bf16_bits(-2.0), 0xC000);
    assert_eq!(f32_to_bf16_bits(core::f32::consts::PI), 0x4049);
    assert_eq!(f32_to_bf16_bits(f32::INFINITY), 0x7F80);
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80); // tie, even stays
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82); // tie, odd rounds up
    assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81); // above the tie
    assert_eq!(f32_to_bf16_bits(f32::NAN), 0x7FC0);
    assert_eq!(bf16_bits_to_f32(0x4049), 3.140625);
}

// ---------------------------------------------------------------- fragments --------------------

#[test]
fn mma_fragments_match_ptx_isa_figures() {
    // Transcribed from the PTX ISA figures for mma.m16n8k16 (16-bit A, B; f32 C/D) for lanes 0,
    // 5 (groupID 1, threadID_in_group 1) and 31 (groupID 7, threadID_in_group 3).
    let a: [(usize, [(usize, usize); 8]); 3] = [
        (
            0,
            [
                (0, 0),
                (0, 1),
                (8, 0),
                (8, 1),
                (0, 8),
                (0, 9),
                (8, 8),
                (8, 9),
            ],
        ),
        (
            5,
            [
                (1, 2),
                (1, 3),
                (9, 2),
                (9, 3),
                (1, 10),
                (1, 11),
                (9, 10),
                (9, 11),
            ],
        ),
        (
            31,
            [
                (7, 6),
                (7, 7),
                (15, 6),
                (15, 7),
                (7, 14),
                (7, 15),
                (15, 14),
                (15, 15),
            ],
        ),
    ];
    for (lane, want) in a {
        for (e, w) in want.iter().enumerate() {
            assert_eq!(mma_m16n8k16_a(lane, e), *w, "A lane {lane} a{e}");
        }
    }
    let b: [(usize, [(usize, usize); 4]); 2] = [
        (0, [(0, 0), (1, 0), (8, 0), (9, 0)]),
        (31, [(6, 7), (7, 7), (14, 7), (15, 7)]),
    ];
    for (lane, want) in b {
        for (e, w) in want.iter().enumerate() {
            assert_eq!(mma_m16n8k16_b(lane, e), *w, "B lane {lane} b{e}");
        }
    }
    let c: [(usize, [(usize, usize); 4]); 2] = [
        (0, [(0, 0), (0, 1), (8, 0), (8, 1)]),
        (30, [(7, 4), (7, 5), (15, 4), (15, 5)]),
    ];
    for (lane, want) in c {
        for (e, w) in want.iter().enumerate() {
            assert_eq!(mma_m16n8_c(lane, e), *w, "C lane {lane} c{e}");
        }
    }
    // wgmma D (m64nNk16): thread 37 is warp 1 lane 5 -> rows 16 + 1 / 16 + 9, d4 is the next
    // 8-column group.
    assert_eq!(wgmma_d(37, 0), (17, 2));
    assert_eq!(wgmma_d(37, 3), (25, 3));
    assert_eq!(wgmma_d(37, 4), (17, 10));
    assert_eq!(wgmma_d(127, 127), (63, 255));
}

/// Every element of a rows x cols matrix is owned by exactly one (thread, element).
fn assert_bijection(
    threads: usize,
    per: usize,
    rows: usize,
    cols: usize,
    f: impl Fn(usize, usize) -> (usize, usize),
) {
    assert_eq!(threads * per, rows * cols);
    let mut seen = vec![false; rows * cols];
    for t in 0..threads {
        for e in 0..per {
            let (r, c) = f(t, e);
            assert!(r < rows && c < cols, "({r},{c}) out of range");
            assert!(!seen[r * cols + c], "({r},{c}) owned twice");
            seen[r * cols + c] = true;
        }
    }
}

#[test]
fn fragments_are_bijections() {
    assert_bijection(32, 8, 16, 16, mma_m16n8k16_a);
    assert_bijection(32, 4, 16, 8, mma_m16n8k16_b);
    assert_bijection(32, 4, 16, 8, mma_m16n8_c);
    assert_bijection(WARPGROUP, 8, 64, 16, wgmma_a);
    for n in [64, 128, 256] {
        assert_bijection(WARPGROUP, n / 2, 64, n, wgmma_d);
    }
}

#[test]
fn accumulator_layout_is_a_operand_layout() {
    // The reuse of S registers as the A operand of P V (attention kernel) needs: accumulator
    // element 8ks + e (e < 8) sits at the A-operand position of element e, 16ks columns on.
    for t in 0..WARPGROUP {
        for ks in 0..8 {
            for e in 0..8 {
                let (ar, ac) = wgmma_a(t, e);
                assert_eq!(
                    wgmma_d(t, 8 * ks + e),
                    (ar, ac + 16 * ks),
                    "thread {t} ks {ks} e {e}"
                );
            }
        }
    }
    // And accumulator_to_a packs them in that order, low half first.
    let acc: Vec<f32> = (0..64).map(|i| i as f32).collect();
    let a = accumulator_to_a(&acc, 3);
    for (j, &aj) in a.iter().take(4).enumerate() {
        assert_eq!(bf16_bits_to_f32(aj as u16), (24 + 2 * j) as f32);
        assert_eq!(bf16_bits_to_f32((aj >> 16) as u16), (24 + 2 * j + 1) as f32);
    }
}

// ---------------------------------------------------------------- descriptors ------------------

#[test]
fn descriptor_fields_round_trip() {
    let d = make_desc_sw128(0x1_2340, 2048, 1024);
    assert_eq!(d >> 62, 1, "128-byte swizzle is mode 1 in bits 62-63");
    assert_eq!(d & 0x3FFF, 0x1234, "start address >> 4 in bits 0-13");
    assert_eq!((d >> 16) & 0x3FFF, 2048 >> 4);
    assert_eq!((d >> 32) & 0x3FFF, 1024 >> 4);
    assert_eq!(
        decode_desc(d),
        Desc {
            start: 0x1_2340,
            lbo: 2048,
            sbo: 1024,
            base_offset: 0,
            swizzle: 1
        }
    );
}

#[test]
fn swizzle_permutes_each_1024_byte_atom() {
    let mut seen = vec![false; 1024];
    for a in 0..1024u32 {
        let s = sw128(a);
        assert!(s < 1024 && !seen[s as usize]);
        seen[s as usize] = true;
        assert_eq!(s % 16, a % 16, "16-byte chunks stay whole");
    }
    assert_eq!(sw128(128 + 16), 128, "row 1: chunk 1 <-> chunk 0");
}

/// Writes tag (r, c) -> bf16 bits so that a read names the element it hit.
fn tag(r: usize, c: usize) -> u16 {
    (r * 64 + c) as u16
}

#[test]
fn kmajor_descriptors_read_what_tma_wrote() {
    // The GEMM/attention K-major pattern: a 128-row, 64-column box at 0; consumer warpgroup cw
    // starts 64 rows in; the 16-wide K step kk is +32 bytes inside the swizzled row.
    let mut smem = Smem::new(128 * 128);
    tma_load_box_sw128(&mut smem, 0, 128, tag);
    for cw in 0..2 {
        for kk in 0..4 {
            let desc = decode_desc(make_desc_sw128((cw * 64 * 128 + 32 * kk) as u32, 16, 1024));
            for mn in 0..64 {
                for k in 0..16 {
                    assert_eq!(
                        smem.read_bf16(kmajor_addr(&desc, mn, k)),
                        tag(cw * 64 + mn, 16 * kk + k)
                    );
                }
            }
        }
    }
}

#[test]
fn mnmajor_descriptor_reads_v_as_the_kernel_needs() {
    // V tile: two 64-column boxes of BKV = 128 keys (head dim 128); K slice ks starts 16 keys in;
    // LBO = the second box, SBO = 8 keys. Element (k, n) must be V[16 ks + k][n].
    let mut smem = Smem::new(2 * 128 * 128);
    for c in 0..2 {
        tma_load_box_sw128(&mut smem, (c * 128 * 128) as u32, 128, |r, col| {
            ((r * 128 + 64 * c + col) % 65521) as u16
        });
    }
    for ks in 0..8 {
        let desc = decode_desc(make_desc_sw128((ks * 16 * 128) as u32, 128 * 128, 1024));
        for k in 0..16 {
            for n in 0..128 {
                assert_eq!(
                    smem.read_bf16(mnmajor_addr(&desc, k, n)),
                    (((16 * ks + k) * 128 + n) % 65521) as u16
                );
            }
        }
    }
}

// ---------------------------------------------------------------- warpgroup MMA ----------------

#[test]
fn warpgroup_mma_equals_dense_product() {
    let mut rng = Rng(1);
    for (n, trans_b) in [(256, false), (128, false), (64, true), (128, true)] {
        let a = rng.bf16_vec(64 * 64); // A box: 64 rows x 64 k
        let b = rng.bf16_vec(n * 64); // B: K-major n x 64, or MN-major 64 x n
        let mut smem = Smem::new(64 * 128 + n * 128 + 1024);
        tma_load_box_sw128(&mut smem, 0, 64, |r, c| a[r * 64 + c]);
        let b_base = 64 * 128;
        if trans_b {
            for c in 0..n / 64 {
                tma_load_box_sw128(&mut smem, (b_base + c * 64 * 128) as u32, 64, |r, col| {
                    b[r * n + 64 * c + col]
                });
            }
        } else {
            tma_load_box_sw128(&mut smem, b_base as u32, n, |r, c| b[r * 64 + c]);
        }
        let mut acc = new_accum(n);
        for kk in 0..4 {
            let da = make_desc_sw128(32 * kk as u32, 16, 1024);
            let db = if trans_b {
                make_desc_sw128((b_base + kk * 16 * 128) as u32, 64 * 128, 1024)
            } else {
                make_desc_sw128((b_base + 32 * kk) as u32, 16, 1024)
            };
            wgmma_ss(&smem, &mut acc, n, da, db, trans_b, kk > 0);
        }
        let (af, bf) = (to_f64(&a), to_f64(&b));
        for (t, acc_t) in acc.iter().enumerate().take(WARPGROUP) {
            for (i, &got) in acc_t.iter().enumerate().take(n / 2) {
                let (r, c) = wgmma_d(t, i);
                let want: f64 = (0..64)
                    .map(|k| {
                        af[r * 64 + k]
                            * if trans_b {
                                bf[k * n + c]
                            } else {
                                bf[c * 64 + k]
                            }
                    })
                    .sum();
                assert!(
                    (got as f64 - want).abs() < 1e-4,
                    "n {n} tb {trans_b} thread {t} reg {i}"
                );
            }
        }
    }
}

#[test]
fn register_a_operand_equals_shared_a_operand() {
    // RS form: A scattered into registers by the fragment layout must give the SS result.
    let mut rng = Rng(2);
    let a = rng.bf16_vec(64 * 64);
    let b = rng.bf16_vec(128 * 64);
    let mut smem = Smem::new(64 * 128 + 128 * 128);
    tma_load_box_sw128(&mut smem, 0, 64, |r, c| a[r * 64 + c]);
    tma_load_box_sw128(&mut smem, 64 * 128, 128, |r, c| b[r * 64 + c]);
    let (mut ss, mut rs) = (new_accum(128), new_accum(128));
    for kk in 0..4 {
        let db = make_desc_sw128(64 * 128 + 32 * kk as u32, 16, 1024);
        wgmma_ss(
            &smem,
            &mut ss,
            128,
            make_desc_sw128(32 * kk as u32, 16, 1024),
            db,
            false,
            kk > 0,
        );
        let regs: Vec<[u32; 4]> = (0..WARPGROUP)
            .map(|t| {
                core::array::from_fn(|j| {
                    let lo = wgmma_a(t, 2 * j);
                    let hi = wgmma_a(t, 2 * j + 1);
                    u32::from(a[lo.0 * 64 + 16 * kk + lo.1])
                        | (u32::from(a[hi.0 * 64 + 16 * kk + hi.1]) << 16)
                })
            })
            .collect();
        wgmma_rs(&smem, &mut rs, 128, &regs, db, false, kk > 0);
    }
    assert_eq!(ss, rs);
}

// ---------------------------------------------------------------- whole kernels ----------------

#[test]
fn gemm_model_matches_f64_reference_on_random_shapes() {
    let mut rng = Rng(3);
    let mut shapes = vec![
        (1, 1, 8),
        (128, 256, 64),
        (129, 257, 72),
        (127, 255, 8),
        (300, 520, 200),
    ];
    for _ in 0..20 {
        shapes.push((
            1 + rng.below(300),
            1 + rng.below(600),
            8 * (1 + rng.below(30)),
        ));
    }
    for (m, n, k) in shapes {
        let a = rng.bf16_vec(m * k);
        let b = rng.bf16_vec(n * k);
        let out = gemm_tiled(&a, &b, m, n, k);
        let err = rel_err(&out, &ref_gemm(&a, &b, m, n, k));
        assert!(err <= 1e-5, "gemm {m}x{n}x{k}: rel err {err:e}");
    }
}

#[test]
fn attention_model_matches_f64_reference_on_random_shapes() {
    let mut rng = Rng(4);
    let mut shapes = vec![
        AttnShape {
            heads: 1,
            kv_heads: 1,
            seq_q: 128,
            seq_k: 128,
            dim: 64,
            causal: false,
        },
        AttnShape {
            heads: 2,
            kv_heads: 1,
            seq_q: 257,
            seq_k: 257,
            dim: 128,
            causal: true,
        },
        AttnShape {
            heads: 1,
            kv_heads: 1,
            seq_q: 1,
            seq_k: 1,
            dim: 64,
            causal: true,
        },
        // seq_q > seq_k, causal: the first rows see no key and must be zero.
        AttnShape {
            heads: 1,
            kv_heads: 1,
            seq_q: 200,
            seq_k: 70,
            dim: 64,
            causal: true,
        },
        AttnShape {
            heads: 4,
            kv_heads: 2,
            seq_q: 70,
            seq_k: 300,
            dim: 128,
            causal: true,
        },
        AttnShape {
            heads: 6,
            kv_heads: 1,
            seq_q: 130,
            seq_k: 129,
            dim: 64,
            causal: false,
        },
    ];
    for _ in 0..16 {
        let kv_heads = 1 + rng.below(3);
        shapes.push(AttnShape {
            heads: kv_heads * (1 + rng.below(2)),
            kv_heads,
            seq_q: 1 + rng.below(300),
            seq_k: 1 + rng.below(300),
            dim: if rng.below(2) == 0 { 64 } else { 128 },
            causal: rng.below(2) == 0,
        });
    }
    for sh in shapes {
        let nq = sh.heads * sh.seq_q * sh.dim;
        let nk = sh.kv_heads * sh.seq_k * sh.dim;
        let (q, k, v) = (rng.bf16_vec(nq), rng.bf16_vec(nk), rng.bf16_vec(nk));
        let scale = 1.0 / (sh.dim as f32).sqrt();
        let out = attention_tiled(&q, &k, &v, &sh, scale);
        let reference = ref_attention(&q, &k, &v, &sh);
        let err = rel_err(&out, &reference);
        assert!(err <= 1e-2, "{sh:?}: rel err {err:e}");
        if sh.causal && sh.seq_q > sh.seq_k {
            let row = sh.heads * sh.dim;
            assert!(
                out[..(sh.seq_q - sh.seq_k) * row].iter().all(|&x| x == 0.0),
                "rows without keys must be 0"
            );
        }
    }
}

#[test]
fn the_checks_catch_a_wrong_v_descriptor() {
    // Sensitivity: reading V with the K-major layout instead of MN-major must fail the check.
    let mut rng = Rng(5);
    let (a, b) = (rng.bf16_vec(64 * 64), rng.bf16_vec(64 * 128));
    // Room for the reads the wrong layout makes past the tile.
    let mut smem = Smem::new(64 * 128 + 4 * 64 * 128);
    tma_load_box_sw128(&mut smem, 0, 64, |r, c| a[r * 64 + c]);
    for c in 0..2 {
        tma_load_box_sw128(&mut smem, (64 * 128 + c * 64 * 128) as u32, 64, |r, col| {
            b[r * 128 + 64 * c + col]
        });
    }
    let (mut good, mut bad) = (new_accum(128), new_accum(128));
    for kk in 0..4 {
        let da = make_desc_sw128(32 * kk as u32, 16, 1024);
        let db = make_desc_sw128((64 * 128 + kk * 16 * 128) as u32, 64 * 128, 1024);
        wgmma_ss(&smem, &mut good, 128, da, db, true, kk > 0);
        wgmma_ss(&smem, &mut bad, 128, da, db, false, kk > 0);
    }
    let flat = |acc: &Vec<Vec<f32>>| acc.iter().flatten().map(|&x| x as f64).collect::<Vec<_>>();
    let g = flat(&good);
    let bad32: Vec<f32> = bad.iter().flatten().copied().collect();
    assert!(rel_err(&bad32, &g) > 0.5);
}

// ---------------------------------------------------------------- model <-> CUDA source --------

#[test]
fn model_constants_match_the_cuda_sources() {
    let gemm = include_str!("../cuda/gemm_bf16_sm90a.cu");
    let want = format!(
        "constexpr int BM = {}, BN = {}, BK = {}, STAGES = {};",
        model::gemm::BM,
        model::gemm::BN,
        model::gemm::BK,
        model::gemm::STAGES
    );
    assert!(
        gemm.contains(&want),
        "gemm tiling differs from the model: want `{want}`"
    );
    let attn = include_str!("../cuda/attention_fwd_sm90a.cu");
    let want = format!(
        "constexpr int BM = {}, BKV = {}, STAGES = {};",
        model::attention::BM,
        model::attention::BKV,
        model::attention::STAGES
    );
    assert!(
        attn.contains(&want),
        "attention tiling differs from the model: want `{want}`"
    );
    // The gate script reports the dynamic shared memory the launcher requests.
    let gates = include_str!("../cuda/gates.py");
    for (name, bytes) in [
        ("pupa_gemm_bf16_sm90a", model::gemm::SMEM_BYTES),
        (
            "pupa_attention_fwd_d64_sm90a",
            model::attention::smem_bytes(64),
        ),
        (
            "pupa_attention_fwd_d128_sm90a",
            model::attention::smem_bytes(128),
        ),
    ] {
        let line = gates
            .lines()
            .find(|l| l.contains(&format!("\"{name}\"")))
            .expect("kernel listed in gates.py");
        assert!(
            line.contains(&format!("\"dyn_smem\": {bytes}}}")),
            "{name}: gates.py dyn_smem != {bytes}"
        );
    }
}
