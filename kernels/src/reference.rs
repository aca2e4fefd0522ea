//! f64 reference implementations of the kernels, and the error measure the checks use.
//!
//! Deliberately naive (triple loops, two-pass softmax in f64): they are the independent truth
//! that the fast kernels — and the host-side checks of the whole system — are compared with.

extern crate alloc;
use alloc::vec::Vec;

use crate::attention::AttnShape;
use crate::mat::{Element, MatRef};

/// `A · B` in f64, row-major `m × n`.
pub fn matmul_f64<T: Element>(a: &MatRef<'_, T>, b: &MatRef<'_, T>) -> Vec<f64> {
    let (m, k, n) = (a.rows(), a.cols(), b.cols());
    let mut c = alloc::vec![0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let x = a.at(i, p).to_f32() as f64;
            for j in 0..n {
                c[i * n + j] += x * b.at(p, j).to_f32() as f64;
            }
        }
    }
    c
}

/// Attention forward in f64 with the same layouts and conventions as
/// [`crate::attention`]: returns `(out [seq_q][heads][dim], lse [heads][seq_q])`.
/// Rows whose causal window is empty give 0 and `lse = -inf`.
///
/// Inputs must already be validated (see [`AttnShape::validate`]).
pub fn attention_f64<T: Element>(q: &[T], k: &[T], v: &[T], s: &AttnShape) -> (Vec<f64>, Vec<f64>) {
    let (h, g, d) = (s.heads, s.kv_heads, s.dim);
    let group = h / g;
    let scale = 1.0 / libm::sqrt(d as f64);
    let mut out = alloc::vec![0f64; s.seq_q * h * d];
    let mut lse = alloc::vec![f64::NEG_INFINITY; h * s.seq_q];
    let mut logits = alloc::vec![0f64; s.seq_k];
    for head in 0..h {
        let kvh = head / group;
        for i in 0..s.seq_q {
            let limit = s.key_limit(i); // keys j < limit are visible
            if limit == 0 {
                continue;
            }
            let qi = &q[(i * h + head) * d..][..d];
            let mut mx = f64::NEG_INFINITY;
            for (j, l) in logits.iter_mut().enumerate().take(limit) {
                let kj = &k[(j * g + kvh) * d..][..d];
                let dot: f64 = qi
                    .iter()
                    .zip(kj)
                    .map(|(x, y)| x.to_f32() as f64 * y.to_f32() as f64)
                    .sum();
                *l = dot * scale;
                mx = mx.max(*l);
            }
            let mut sum = 0f64;
            let o = &mut out[(i * h + head) * d..][..d];
            for (j, l) in logits.iter().enumerate().take(limit) {
                let p = libm::exp(l - mx);
                sum += p;
                let vj = &v[(j * g + kvh) * d..][..d];
                for (x, y) in o.iter_mut().zip(vj) {
                    *x += p * y.to_f32() as f64;
                }
            }
            for x in o.iter_mut() {
                *x /= sum;
            }
            lse[head * s.seq_q + i] = mx + libm::log(sum);
        }
    }
    (out, lse)
}

/// Relative error `‖out − ref‖₂ / ‖ref‖₂` (absolute `‖out‖₂` when the reference is zero).
/// Any NaN or infinity in `out`, or a length mismatch, gives `f64::INFINITY`, so NaN never
/// passes a threshold.
pub fn rel_l2_error(out: &[f32], reference: &[f64]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0f64, 0f64);
    for (&o, &r) in out.iter().zip(reference) {
        if !o.is_finite() {
            return f64::INFINITY;
        }
        let e = o as f64 - r;
        num += e * e;
        den += r * r;
    }
    let err = if den > 0.0 {
        libm::sqrt(num / den)
    } else {
        libm::sqrt(num)
    };
    if err.is_nan() {
        f64::INFINITY
    } else {
        err
    }
}
