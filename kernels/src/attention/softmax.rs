//! The online-softmax step of the attention tile, per ISA, and a vectorisable `exp2`.
//!
//! Operates on a strip of 16 query columns of the transposed score tile `Sᵀ` (rows = keys,
//! row stride `stride`), in the log2 domain (`c = log2(e)/√d` folded into one multiply-sub):
//!
//! ```text
//! m' = max(m, c·max_r s[r]);  α = 2^(m − m');  p[r] = 2^(c·s[r] − m');  l' = α·l + Σ p
//! ```
//! (Milakov & Gimelshein 2018, "Online normalizer calculation for softmax"; Dao et al. 2022,
//! FlashAttention, Algorithm 1). `-inf` scores (masked keys) give `p = 0`; a column whose
//! maximum is still `-inf` uses 0 as its shift so that no `inf − inf` NaN appears.

/// Scalar `2^x`: range reduction to `x = n + f, |f| ≤ 1/2`, degree-7 Taylor polynomial of
/// `e^(f ln 2)` (truncation error < 5e-9 relative), scaled by `2^n` through the exponent bits.
/// Results below 2^-126 flush to 0; NaN propagates.
#[inline(always)]
pub(crate) fn exp2_scalar(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < -126.0 {
        return 0.0;
    }
    let x = if x > 127.0 { 127.0 } else { x };
    // Round to nearest with the 1.5·2^23 trick (|x| < 2^22 here).
    let n = (x + 12_582_912.0) - 12_582_912.0;
    let f = x - n;
    let p = poly(f);
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    p * scale
}

/// `(ln 2)^k / k!` for k = 0..=7.
const C: [f32; 8] = [
    1.0,
    core::f32::consts::LN_2,
    0.240_226_5,
    0.055_504_11,
    0.009_618_129,
    0.001_333_356,
    0.000_154_035_3,
    0.000_015_252_73,
];

#[inline(always)]
fn poly(f: f32) -> f32 {
    let mut p = C[7];
    for &c in C[..7].iter().rev() {
        p = p * f + c;
    }
    p
}

/// Portable strip update (16 columns), see the module docs.
///
/// # Safety
/// `s` holds `rows` rows of stride `stride` with 16 valid columns; `m`, `l`, `alpha` hold 16.
pub(crate) unsafe fn strip_portable(
    s: *mut f32,
    rows: usize,
    stride: usize,
    m: *mut f32,
    l: *mut f32,
    alpha: *mut f32,
    c: f32,
) {
    // SAFETY: caller contract.
    let (m, l, alpha) = unsafe {
        (
            &mut *m.cast::<[f32; 16]>(),
            &mut *l.cast::<[f32; 16]>(),
            &mut *alpha.cast::<[f32; 16]>(),
        )
    };
    let mut mx = [f32::NEG_INFINITY; 16];
    for r in 0..rows {
        // SAFETY: row r < rows.
        let row = unsafe { &*s.add(r * stride).cast::<[f32; 16]>() };
        for (x, &y) in mx.iter_mut().zip(row) {
            *x = if y > *x || y.is_nan() { y } else { *x };
        }
    }
    let mut shift = [0f32; 16];
    for j in 0..16 {
        let mnew = if m[j] > mx[j] * c { m[j] } else { mx[j] * c };
        shift[j] = if mnew == f32::NEG_INFINITY { 0.0 } else { mnew };
        alpha[j] = exp2_scalar(m[j] - shift[j]);
        m[j] = mnew;
    }
    let mut sum = [0f32; 16];
    for r in 0..rows {
        // SAFETY: row r < rows.
        let row = unsafe { &mut *s.add(r * stride).cast::<[f32; 16]>() };
        for j in 0..16 {
            let p = exp2_scalar(row[j] * c - shift[j]);
            row[j] = p;
            sum[j] += p;
        }
    }
    for j in 0..16 {
        l[j] = l[j] * alpha[j] + sum[j];
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::C;
    use core::arch::x86_64::*;

    /// `2^x` on 16 lanes: as [`super::exp2_scalar`], with `vscalefps` applying `2^n`
    /// (AVX-512F; underflow gives 0, NaN propagates through `max`'s second operand).
    #[inline]
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) fn exp2_avx512(x: __m512) -> __m512 {
        let x = _mm512_max_ps(_mm512_set1_ps(-200.0), x);
        let x = _mm512_min_ps(_mm512_set1_ps(127.0), x);
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm512_sub_ps(x, n);
        let mut p = _mm512_set1_ps(C[7]);
        for &c in C[..7].iter().rev() {
            p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c));
        }
        _mm512_scalef_ps(p, n)
    }

    /// AVX-512 strip update (16 columns), see the module docs.
    ///
    /// # Safety
    /// CPU has AVX-512F/FMA; pointers as for [`super::strip_portable`].
    #[target_feature(enable = "avx512f,fma")]
    pub(crate) unsafe fn strip_avx512(
        s: *mut f32,
        rows: usize,
        stride: usize,
        m: *mut f32,
        l: *mut f32,
        alpha: *mut f32,
        c: f32,
    ) {
        // SAFETY: (whole body) every pointer offset stays within the caller's rows × 16 strip
        // and the 16-element m, l, alpha arrays.
        unsafe {
            let cv = _mm512_set1_ps(c);
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            let mut r = 0;
            let mut mx2 = mx;
            while r + 1 < rows {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(s.add(r * stride)));
                mx2 = _mm512_max_ps(mx2, _mm512_loadu_ps(s.add((r + 1) * stride)));
                r += 2;
            }
            if r < rows {
                mx = _mm512_max_ps(mx, _mm512_loadu_ps(s.add(r * stride)));
            }
            mx = _mm512_max_ps(mx, mx2);
            let mold = _mm512_loadu_ps(m);
            let mnew = _mm512_max_ps(_mm512_mul_ps(mx, cv), mold);
            let ninf = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(mnew, _mm512_set1_ps(f32::NEG_INFINITY));
            let shift = _mm512_mask_blend_ps(ninf, mnew, _mm512_setzero_ps());
            let a = exp2_avx512(_mm512_sub_ps(mold, shift));
            _mm512_storeu_ps(alpha, a);
            _mm512_storeu_ps(m, mnew);
            let mut sum = _mm512_setzero_ps();
            let mut sum2 = _mm512_setzero_ps();
            let mut r = 0;
            while r + 1 < rows {
                let p0 = s.add(r * stride);
                let p1 = s.add((r + 1) * stride);
                let e0 = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(p0), cv, shift));
                let e1 = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(p1), cv, shift));
                _mm512_storeu_ps(p0, e0);
                _mm512_storeu_ps(p1, e1);
                sum = _mm512_add_ps(sum, e0);
                sum2 = _mm512_add_ps(sum2, e1);
                r += 2;
            }
            if r < rows {
                let p0 = s.add(r * stride);
                let e0 = exp2_avx512(_mm512_fmsub_ps(_mm512_loadu_ps(p0), cv, shift));
                _mm512_storeu_ps(p0, e0);
                sum = _mm512_add_ps(sum, e0);
            }
            sum = _mm512_add_ps(sum, sum2);
            let lv = _mm512_fmadd_ps(_mm512_loadu_ps(l), a, sum);
            _mm512_storeu_ps(l, lv);
        }
    }
}
#[cfg(target_arch = "x86_64")]
pub(crate) use x86::strip_avx512;

#[cfg(test)]
mod tests {
    use super::*;

    fn check(f: impl Fn(f32) -> f32) {
        let mut x = -130.0f32;
        while x <= 2.0 {
            let want = libm::exp2(x as f64);
            let got = f(x) as f64;
            if x >= -126.0 {
                assert!(
                    ((got - want) / want).abs() < 4e-7,
                    "2^{x}: got {got}, want {want}"
                );
            } else {
                assert!(
                    got <= 2f64.powi(-125),
                    "2^{x} must be tiny or flushed: {got}"
                );
            }
            x += 0.0137;
        }
        assert_eq!(f(f32::NEG_INFINITY), 0.0);
        assert_eq!(f(-1e4), 0.0);
        assert!(f(f32::NAN).is_nan());
        assert_eq!(f(0.0), 1.0);
    }

    #[test]
    fn exp2_scalar_matches_libm() {
        check(exp2_scalar);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn exp2_avx512_matches_libm() {
        if !(std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("fma")) {
            eprintln!("skipped: no AVX-512F on this CPU");
            return;
        }
        check(|x| {
            let mut out = [0f32; 16];
            // SAFETY: AVX-512F and FMA checked above; out holds 16 floats.
            unsafe {
                use core::arch::x86_64::*;
                _mm512_storeu_ps(out.as_mut_ptr(), x86::exp2_avx512(_mm512_set1_ps(x)));
            }
            out[7]
        });
    }
}
