//! Times the serial kernels (best of 3) on the shapes the job cost model
//! (`pupa_protocol::job`, `JobShape::units`) was fitted to: compute-bound, skinny and k = 1
//! GEMMs, decode and dim-1 attention. `cargo run --release -p pupa-kernels --example
//! cost_probe [bf16]`; divide each time by the shape's units to get ns per unit.
use half::bf16;
use pupa_kernels::{attention_until, detect, matmul_until, AttnShape, MatRef};
use std::time::Instant;

fn t<F: FnMut()>(mut f: F) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let s = Instant::now();
        f();
        best = best.min(s.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let isa = detect();
    println!("isa {isa:?}");
    let args: Vec<String> = std::env::args().collect();
    let bf = args.get(1).map(|s| s == "bf16").unwrap_or(false);
    for &(m, n, k) in &[
        (1024usize, 1024usize, 1024usize),
        (1, 1, 4 << 20),
        (1, 4096, 4096),
        (4096, 4096, 1),
        (4096, 1, 4096),
        (64, 64, 65536),
        (2048, 2048, 16),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let s = if bf {
            let a: Vec<bf16> = a.iter().map(|&x| bf16::from_f32(x)).collect();
            let b: Vec<bf16> = b.iter().map(|&x| bf16::from_f32(x)).collect();
            t(|| {
                matmul_until(
                    isa,
                    MatRef::row_major(&a, m, k).unwrap(),
                    MatRef::row_major(&b, k, n).unwrap(),
                    &mut c,
                    n,
                    &|| false,
                )
                .unwrap()
            })
        } else {
            t(|| {
                matmul_until(
                    isa,
                    MatRef::row_major(&a, m, k).unwrap(),
                    MatRef::row_major(&b, k, n).unwrap(),
                    &mut c,
                    n,
                    &|| false,
                )
                .unwrap()
            })
        };
        println!("matmul m={m} n={n} k={k}: {:.4} s", s);
    }
    for &(sq, sk, h, g, d) in &[
        (1usize, 500_000usize, 1usize, 1usize, 1usize),
        (2048, 2048, 4, 4, 64),
        (1024, 1024, 4, 4, 128),
        (4096, 4096, 1, 1, 1),
        (1, 200_000, 8, 8, 128),
        (1, 200_000, 8, 1, 128),
        (16, 100_000, 4, 1, 64),
        (300, 300, 64, 64, 256),
        (96, 100_000, 1, 1, 1),
        (1, 10_000, 256, 1, 1),
    ] {
        let sh = AttnShape {
            seq_q: sq,
            seq_k: sk,
            heads: h,
            kv_heads: g,
            dim: d,
            causal: false,
        };
        let q = vec![0.1f32; sq * h * d];
        let kk = vec![0.2f32; sk * g * d];
        let v = vec![0.3f32; sk * g * d];
        let mut o = vec![0f32; sq * h * d];
        let s = if bf {
            let c = |x: &Vec<f32>| -> Vec<bf16> { x.iter().map(|&y| bf16::from_f32(y)).collect() };
            let (q, kk, v) = (c(&q), c(&kk), c(&v));
            t(|| attention_until(isa, &q, &kk, &v, &mut o, sh, None, &|| false).unwrap())
        } else {
            t(|| attention_until(isa, &q, &kk, &v, &mut o, sh, None, &|| false).unwrap())
        };
        println!("attn sq={sq} sk={sk} h={h} g={g} d={d}: {:.4} s", s);
    }
}
