//! The CPU benchmarks: pupa's kernels and the references (faer, numpy/OpenBLAS, naive) timed
//! interleaved, round after round, with a short peak probe in every round.

use half::{bf16, f16};
use pupa_kernels::{attention_parallel, matmul_parallel, AttnShape, Element, Isa, MatRef};

use super::huge::HugeBuf;
use super::numpy::NumpyRef;
use super::{naive, now, peak, Clock, Common, Dt};

type Timer<'a> = Box<dyn FnMut() -> Result<Vec<f64>, String> + 'a>;

/// What every CPU benchmark of one configuration shares.
pub struct Ctx<'a> {
    pub common: &'a Common,
    pub isa: Isa,
    pub pool: &'a rayon::ThreadPool,
    pub threads: usize,
    pub numpy: Option<&'a NumpyRef>,
    /// Probe the peak once per round (the `vdpbf16ps` loop when true), unless `--peak` is given.
    pub probe_bf16: Option<bool>,
}

/// Per implementation: name, GFLOP/s samples, note, FLOPs; and the best peak probe of the rounds
/// (0 without probes).
pub type Measured = (Vec<(String, Vec<f64>, String, f64)>, f64);

pub(crate) fn time_it(
    clock: Clock,
    warmup: usize,
    repeats: usize,
    mut f: impl FnMut() -> Result<(), String>,
) -> Result<Vec<f64>, String> {
    for _ in 0..warmup {
        f()?;
    }
    let mut secs = Vec::with_capacity(repeats);
    for _ in 0..repeats {
        let t = now(clock);
        f()?;
        secs.push(now(clock) - t);
    }
    Ok(secs)
}

fn random<T: Element>(n: usize, seed: u64) -> HugeBuf<T> {
    let mut s = seed;
    let mut v = HugeBuf::new(n, T::from_f32(0.0));
    for x in v.iter_mut() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        *x = T::from_f32((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0);
    }
    v
}

/// Runs the timers interleaved for `rounds` rounds and converts seconds to GFLOP/s.
fn interleave(
    ctx: &Ctx<'_>,
    flops: f64,
    mut timers: Vec<(String, String, Timer<'_>)>,
) -> Result<Measured, String> {
    let mut secs: Vec<Vec<f64>> = vec![vec![]; timers.len()];
    let mut probe = 0.0f64;
    let cpu_clock = ctx.common.clock == Clock::ThreadCpu;
    for _ in 0..ctx.common.rounds {
        for (i, (_, _, t)) in timers.iter_mut().enumerate() {
            secs[i].extend(t()?);
        }
        if let Some(bf16) = ctx.probe_bf16 {
            let p = peak::measure(
                ctx.isa,
                bf16,
                ctx.threads,
                cpu_clock,
                peak::TRIALS_PER_ROUND,
            );
            probe = probe.max(p);
        }
    }
    let rows = timers
        .into_iter()
        .zip(secs)
        .map(|((name, note, _), s)| {
            (
                name,
                s.iter().map(|t| flops / t / 1e9).collect(),
                note,
                flops,
            )
        })
        .collect();
    Ok((rows, probe))
}

/// `C = A·B` with A m×k and B k×n, row-major, in `--dtype`.
pub fn bench_matmul(ctx: &Ctx<'_>, m: usize, n: usize, k: usize) -> Result<Measured, String> {
    match ctx.common.dtype {
        Dt::F32 => bench_matmul_t::<f32>(ctx, m, n, k),
        Dt::F16 => bench_matmul_t::<f16>(ctx, m, n, k),
        Dt::Bf16 => bench_matmul_t::<bf16>(ctx, m, n, k),
    }
}

fn bench_matmul_t<T: Element>(
    ctx: &Ctx<'_>,
    m: usize,
    n: usize,
    k: usize,
) -> Result<Measured, String> {
    let (common, isa, pool, threads) = (ctx.common, ctx.isa, ctx.pool, ctx.threads);
    if m == 0 || n == 0 || k == 0 {
        return Err("--m, --n and --k must be at least 1".into());
    }
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let a = random::<T>(m * k, 1);
    let b = random::<T>(k * n, 2);
    let mut c = HugeBuf::new(m * n, 0f32);
    let (w, r, ck) = (common.warmup, common.repeats, common.clock);
    let mut timers: Vec<(String, String, Timer<'_>)> = vec![];
    let cref = &mut c;
    let (ar, br) = (&a, &b);
    timers.push((
        "pupa".into(),
        format!("isa {}", isa.name()),
        Box::new(move || {
            let av = MatRef::row_major(ar, m, k).map_err(|e| e.to_string())?;
            let bv = MatRef::row_major(br, k, n).map_err(|e| e.to_string())?;
            pool.install(|| {
                time_it(ck, w, r, || {
                    matmul_parallel(isa, av, bv, cref, n).map_err(|e| e.to_string())
                })
            })
        }),
    ));
    if !common.no_faer {
        timers.push(faer_timer(ctx, &a, &b, m, n, k));
    }
    if let Some(np) = ctx.numpy {
        let args = vec![
            "matmul".into(),
            "f32".into(),
            m.to_string(),
            n.to_string(),
            k.to_string(),
        ];
        let note = if T::DTYPE == pupa_kernels::DType::F32 {
            format!("numpy {} OpenBLAS sgemm", np.version)
        } else {
            format!(
                "numpy {} OpenBLAS sgemm (no low-precision GEMM)",
                np.version
            )
        };
        timers.push((
            "numpy-openblas".into(),
            note,
            Box::new(move || np.time(&args, w, r, threads)),
        ));
    }
    if common.naive || flops <= (1u64 << 31) as f64 {
        timers.push((
            "naive".into(),
            "triple loop, 1 run/round".into(),
            Box::new(move || {
                let mut cn = vec![0f32; m * n];
                time_it(ck, 0, 1, || {
                    naive::matmul(ar, br, &mut cn, m, n, k);
                    Ok(())
                })
            }),
        ));
    }
    interleave(ctx, flops, timers)
}

/// faer's f32 GEMM on the same values (widened from f16/bf16).
fn faer_timer<'a, T: Element>(
    ctx: &Ctx<'a>,
    a: &[T],
    b: &[T],
    m: usize,
    n: usize,
    k: usize,
) -> (String, String, Timer<'a>) {
    let (w, r, ck, pool) = (
        ctx.common.warmup,
        ctx.common.repeats,
        ctx.common.clock,
        ctx.pool,
    );
    let fa = faer::Mat::<f32>::from_fn(m, k, |i, j| a[i * k + j].to_f32());
    let fb = faer::Mat::<f32>::from_fn(k, n, |i, j| b[i * n + j].to_f32());
    let mut fc = faer::Mat::<f32>::zeros(m, n);
    let par = if ctx.threads == 1 {
        faer::Par::Seq
    } else {
        faer::Par::rayon(ctx.threads)
    };
    let note = if T::DTYPE == pupa_kernels::DType::F32 {
        String::from("faer 0.24")
    } else {
        String::from("faer 0.24, f32 on the same values")
    };
    let timer: Timer<'a> = Box::new(move || {
        pool.install(|| {
            time_it(ck, w, r, || {
                faer::linalg::matmul::matmul(
                    fc.as_mut(),
                    faer::Accum::Replace,
                    fa.as_ref(),
                    fb.as_ref(),
                    1.0f32,
                    par,
                );
                Ok(())
            })
        })
    });
    ("faer".into(), note, timer)
}

/// Attention forward of shape `sh` in `--dtype`.
pub fn bench_attention(ctx: &Ctx<'_>, sh: AttnShape) -> Result<Measured, String> {
    match ctx.common.dtype {
        Dt::F32 => bench_attention_t::<f32>(ctx, sh),
        Dt::F16 => bench_attention_t::<f16>(ctx, sh),
        Dt::Bf16 => bench_attention_t::<bf16>(ctx, sh),
    }
}

fn bench_attention_t<T: Element>(ctx: &Ctx<'_>, sh: AttnShape) -> Result<Measured, String> {
    let (common, isa, pool, threads) = (ctx.common, ctx.isa, ctx.pool, ctx.threads);
    if sh.seq_q == 0 {
        return Err("--seq must be at least 1".into());
    }
    let flops = sh.flops();
    let q = random::<T>(sh.seq_q * sh.heads * sh.dim, 3);
    let k = random::<T>(sh.seq_k * sh.kv_heads * sh.dim, 4);
    let v = random::<T>(sh.seq_k * sh.kv_heads * sh.dim, 5);
    let mut out = HugeBuf::new(sh.seq_q * sh.heads * sh.dim, 0f32);
    let (w, r, ck) = (common.warmup, common.repeats, common.clock);
    let (qr, kr, vr) = (&q, &k, &v);
    let oref = &mut out;
    let mut timers: Vec<(String, String, Timer<'_>)> = vec![(
        "pupa".into(),
        format!("isa {}", isa.name()),
        Box::new(move || {
            pool.install(|| {
                time_it(ck, w, r, || {
                    attention_parallel(isa, qr, kr, vr, oref, sh, None).map_err(|e| e.to_string())
                })
            })
        }),
    )];
    if let Some(np) = ctx.numpy {
        let args = vec![
            "attention".into(),
            "f32".into(),
            sh.seq_q.to_string(),
            sh.heads.to_string(),
            sh.kv_heads.to_string(),
            sh.dim.to_string(),
            if sh.causal { "1".into() } else { "0".into() },
        ];
        timers.push((
            "numpy-openblas".into(),
            format!("numpy {}: per head QKᵀ, softmax, PV in f32", np.version),
            Box::new(move || np.time(&args, w, r, threads)),
        ));
    }
    if common.naive || flops <= (1u64 << 31) as f64 {
        timers.push((
            "naive".into(),
            "scalar loops, 1 run/round".into(),
            Box::new(move || {
                let mut on = vec![0f32; sh.seq_q * sh.heads * sh.dim];
                time_it(ck, 0, 1, || {
                    naive::attention(qr, kr, vr, &mut on, &sh);
                    Ok(())
                })
            }),
        ));
    }
    interleave(ctx, flops, timers)
}
