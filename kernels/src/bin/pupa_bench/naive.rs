//! Naive references for pupa-bench's side-by-side column (scalar f32 loops, no blocking).

use pupa_kernels::{AttnShape, Element};

/// `C = A·B`, row-major, i-k-j loop order.
pub fn matmul<T: Element>(a: &[T], b: &[T], c: &mut [f32], m: usize, n: usize, k: usize) {
    c.fill(0.0);
    for i in 0..m {
        for p in 0..k {
            let x = a[i * k + p].to_f32();
            for j in 0..n {
                c[i * n + j] += x * b[p * n + j].to_f32();
            }
        }
    }
}

/// Two-pass softmax attention per query row (layouts as `pupa_kernels::attention`).
pub fn attention<T: Element>(q: &[T], k: &[T], v: &[T], out: &mut [f32], sh: &AttnShape) {
    let (h, g, d) = (sh.heads, sh.kv_heads, sh.dim);
    let scale = 1.0 / (d as f32).sqrt();
    let mut s = vec![0f32; sh.seq_k];
    for head in 0..h {
        let kvh = head / (h / g);
        for i in 0..sh.seq_q {
            let lim = sh.key_limit(i);
            let mut mx = f32::NEG_INFINITY;
            for (j, sj) in s.iter_mut().enumerate().take(lim) {
                let mut dot = 0f32;
                for dd in 0..d {
                    dot += q[(i * h + head) * d + dd].to_f32() * k[(j * g + kvh) * d + dd].to_f32();
                }
                *sj = dot * scale;
                mx = mx.max(*sj);
            }
            let o = &mut out[(i * h + head) * d..][..d];
            o.fill(0.0);
            let mut sum = 0f32;
            for (j, sj) in s.iter().enumerate().take(lim) {
                let p = (sj - mx).exp();
                sum += p;
                for dd in 0..d {
                    o[dd] += p * v[(j * g + kvh) * d + dd].to_f32();
                }
            }
            for x in o.iter_mut() {
                *x /= sum;
            }
        }
    }
}
