//! pupa-bench: kernel benchmarks side by side with references.
//!
//! ```text
//! pupa-bench matmul --backend cpu [--dtype f32|f16|bf16] --m M --n N --k K [--threads T] [--json]
//! pupa-bench attention --backend cpu [--dtype ...] --seq S --heads H [--kv-heads G] --dim D [--causal] [--json]
//! ```
//! Sizes and thread counts take comma-separated lists (a sweep, with a progress bar). Each
//! configuration runs `--rounds` rounds; in each round pupa and every reference are timed
//! `--repeats` times after `--warmup` runs, interleaved, so that noise from the machine hits
//! all of them alike. Reported: median, min and max GFLOP/s over all samples, % of the peak
//! (`--peak`, or measured with an FMA / `vdpbf16ps` throughput loop), and the ratio to pupa.
//!
//! CPU references: `faer` (Rust), numpy/OpenBLAS through `kernels/bench/ref_numpy.py`
//! (`--python`, run with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE removed from its environment),
//! and a naive triple loop (`--naive`, off above 2^31 FLOPs unless forced).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use half::{bf16, f16};
use indicatif::{ProgressBar, ProgressStyle};
use pupa_kernels::{attention_parallel, detect, matmul_parallel, AttnShape, Element, Isa, MatRef};
use serde::Serialize;

#[cfg(feature = "cuda")]
#[path = "pupa_bench/cuda.rs"]
mod cuda;
#[path = "pupa_bench/huge.rs"]
mod huge;
use huge::HugeBuf;
#[path = "pupa_bench/naive.rs"]
mod naive;
#[path = "pupa_bench/peak.rs"]
mod peak;

#[derive(Parser)]
#[command(
    name = "pupa-bench",
    about = "Benchmark pupa's kernels against references"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// C = A·B (A: M×K, B: K×N, row-major; f32 accumulation)
    Matmul {
        #[command(flatten)]
        common: Common,
        /// rows of A and C (comma-separated list for a sweep)
        #[arg(long, value_delimiter = ',', required = true)]
        m: Vec<usize>,
        /// columns of B and C
        #[arg(long, value_delimiter = ',', required = true)]
        n: Vec<usize>,
        /// inner dimension
        #[arg(long, value_delimiter = ',', required = true)]
        k: Vec<usize>,
    },
    /// Attention forward (FLOPs counted as 4·seq²·dim per head, half when causal)
    Attention {
        #[command(flatten)]
        common: Common,
        /// sequence length (queries = keys)
        #[arg(long, value_delimiter = ',', required = true)]
        seq: Vec<usize>,
        /// query heads
        #[arg(long)]
        heads: usize,
        /// key/value heads (default: heads)
        #[arg(long)]
        kv_heads: Option<usize>,
        /// head dimension
        #[arg(long)]
        dim: usize,
        /// causal mask
        #[arg(long)]
        causal: bool,
    },
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum Backend {
    Cpu,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Dt {
    F32,
    F16,
    Bf16,
}

#[derive(Args)]
struct Common {
    /// cpu, or cuda (needs a build with --features cuda and a GPU)
    #[arg(long, value_enum, default_value = "cpu")]
    backend: Backend,
    /// input dtype (accumulation is always f32)
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dt,
    /// worker threads (comma-separated list for a sweep)
    #[arg(long, value_delimiter = ',', default_value = "1")]
    threads: Vec<usize>,
    /// untimed runs per round and implementation
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// timed runs per round and implementation
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// interleaved rounds (pupa, faer, numpy, pupa, faer, numpy, ...)
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// peak GFLOP/s to report against (default: measured on this machine, with --clock's clock)
    #[arg(long)]
    peak: Option<f64>,
    /// force an ISA for pupa (portable, avx2, avx512, avx512bf16)
    #[arg(long)]
    isa: Option<String>,
    /// skip the numpy/OpenBLAS reference
    #[arg(long)]
    no_numpy: bool,
    /// skip the faer reference
    #[arg(long)]
    no_faer: bool,
    /// run the naive triple-loop reference even for large problems
    #[arg(long)]
    naive: bool,
    /// python interpreter for the numpy reference
    #[arg(long, default_value = "python3")]
    python: String,
    /// one JSON object per line and implementation instead of the table
    #[arg(long)]
    json: bool,
    /// wall: elapsed time; thread-cpu: CPU time of the timing thread (with --threads 1 only;
    /// excludes time descheduled by other processes on a shared machine)
    #[arg(long, value_enum, default_value = "wall")]
    clock: Clock,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Clock {
    Wall,
    ThreadCpu,
}

/// Seconds on `clock` (thread-cpu: `CLOCK_THREAD_CPUTIME_ID`, POSIX clock_gettime).
fn now(clock: Clock) -> f64 {
    match clock {
        Clock::Wall => {
            static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
            START.get_or_init(Instant::now).elapsed().as_secs_f64()
        }
        Clock::ThreadCpu => {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: clock_gettime writes one timespec through a valid pointer.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
        }
    }
}

/// One measured implementation in one configuration (a `--json` line).
#[derive(Serialize)]
struct Run {
    bench: &'static str,
    implementation: String,
    backend: &'static str,
    dtype: Dt,
    shape: String,
    threads: usize,
    gflops: f64,
    gflops_min: f64,
    gflops_max: f64,
    seconds_median: f64,
    samples: usize,
    peak_gflops: f64,
    peak_source: &'static str,
    pct_of_peak: f64,
    ratio_to_pupa: f64,
    note: String,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        eprintln!("pupa-bench: error: {e}");
        std::process::exit(2);
    }
}

type Timer<'a> = Box<dyn FnMut() -> Result<Vec<f64>, String> + 'a>;

fn run(cli: Cli) -> Result<(), String> {
    let common = match &cli.cmd {
        Cmd::Matmul { common, .. } | Cmd::Attention { common, .. } => common,
    };
    if common.backend == Backend::Cuda && !cfg!(feature = "cuda") {
        return Err("--backend cuda: this pupa-bench was built without the `cuda` feature (cargo build --release -p pupa-kernels --features cuda)".into());
    }
    if common.backend == Backend::Cuda && common.dtype != Dt::Bf16 {
        return Err(
            "--backend cuda: the Hopper kernels take bf16 inputs (use --dtype bf16)".into(),
        );
    }
    if common.repeats == 0 || common.rounds == 0 {
        return Err("--repeats and --rounds must be at least 1".into());
    }
    if common.clock == Clock::ThreadCpu && common.threads.iter().any(|&t| t != 1) {
        return Err("--clock thread-cpu measures one thread: use it with --threads 1".into());
    }
    if common.threads.contains(&0) {
        return Err("--threads must be at least 1".into());
    }
    let isa = match common.isa.as_deref() {
        None => detect(),
        Some(name) => [Isa::Portable, Isa::Avx2Fma, Isa::Avx512, Isa::Avx512Bf16]
            .into_iter()
            .find(|i| i.name() == name)
            .ok_or_else(|| {
                format!("unknown --isa {name:?} (portable, avx2, avx512, avx512bf16)")
            })?,
    };
    if isa > detect() {
        return Err(format!(
            "--isa {} is not supported by this CPU (best: {})",
            isa.name(),
            detect().name()
        ));
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("bench/ref_numpy.py");
    let configs: Vec<(String, Vec<usize>)> = match &cli.cmd {
        Cmd::Matmul { m, n, k, .. } => {
            let mut v = vec![];
            for &m in m {
                for &n in n {
                    for &k in k {
                        v.push((format!("{m}x{n}x{k}"), vec![m, n, k]));
                    }
                }
            }
            v
        }
        Cmd::Attention {
            seq,
            heads,
            kv_heads,
            dim,
            causal,
            ..
        } => seq
            .iter()
            .map(|&s| {
                (
                    format!(
                        "seq{s} h{heads} kv{} d{dim}{}",
                        kv_heads.unwrap_or(*heads),
                        if *causal { " causal" } else { "" }
                    ),
                    vec![s],
                )
            })
            .collect(),
    };
    let total = (configs.len() * common.threads.len()) as u64;
    let bar = if total > 1 && !common.json {
        ProgressBar::new(total)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed}]")
            .map_err(|e| e.to_string())?,
    );
    let mut peaks = std::collections::HashMap::new();
    let bench_name = if matches!(cli.cmd, Cmd::Matmul { .. }) {
        "matmul"
    } else {
        "attention"
    };
    for (label, dims) in &configs {
        for &threads in &common.threads {
            bar.set_message(format!("{label} t{threads}"));
            #[cfg(feature = "cuda")]
            if common.backend == Backend::Cuda {
                let job = match &cli.cmd {
                    Cmd::Matmul { .. } => cuda::Job::Matmul(dims[0], dims[1], dims[2]),
                    Cmd::Attention {
                        heads,
                        kv_heads,
                        dim,
                        causal,
                        ..
                    } => cuda::Job::Attention(AttnShape {
                        seq_q: dims[0],
                        seq_k: dims[0],
                        heads: *heads,
                        kv_heads: kv_heads.unwrap_or(*heads),
                        dim: *dim,
                        causal: *causal,
                    }),
                };
                let (timed, flops) =
                    cuda::time(&job, common.warmup, common.repeats * common.rounds)?;
                let case = Case {
                    bench: bench_name,
                    backend: "cuda",
                    dtype: common.dtype,
                    shape: label,
                    threads,
                    flops,
                    peak: common.peak.unwrap_or(f64::NAN),
                    peak_source: if common.peak.is_some() {
                        "given"
                    } else {
                        "none (pass --peak)"
                    },
                    pupa_median: median(&timed[0].2),
                };
                let runs: Vec<Run> = timed
                    .into_iter()
                    .map(|(name, note, gf)| case.row(name.into(), &gf, note.into()))
                    .collect();
                bar.suspend(|| print_runs(&runs, common.json, isa));
                bar.inc(1);
                continue;
            }
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .map_err(|e| e.to_string())?;
            let bf16_peak = common.dtype == Dt::Bf16 && isa == Isa::Avx512Bf16;
            let (peak, peak_source) = match common.peak {
                Some(p) => (p, "given"),
                None => (
                    *peaks.entry((threads, bf16_peak)).or_insert_with(|| {
                        peak::measure(isa, bf16_peak, threads, common.clock == Clock::ThreadCpu)
                    }),
                    "measured",
                ),
            };
            let runs = match &cli.cmd {
                Cmd::Matmul { .. } => bench_matmul(
                    common, isa, &pool, threads, dims[0], dims[1], dims[2], &script,
                )?,
                Cmd::Attention {
                    heads,
                    kv_heads,
                    dim,
                    causal,
                    ..
                } => {
                    let sh = AttnShape {
                        seq_q: dims[0],
                        seq_k: dims[0],
                        heads: *heads,
                        kv_heads: kv_heads.unwrap_or(*heads),
                        dim: *dim,
                        causal: *causal,
                    };
                    sh.validate(0, 0, 0, 0, None)
                        .or_else(|e| {
                            if matches!(e, pupa_kernels::KernelError::BufferTooShort { .. }) {
                                Ok(())
                            } else {
                                Err(e)
                            }
                        })
                        .map_err(|e| e.to_string())?;
                    bench_attention(common, isa, &pool, threads, sh, &script)?
                }
            };
            let pupa_median = median(&runs[0].1);
            let out: Vec<Run> = runs
                .into_iter()
                .map(|(name, gf, note, flops)| {
                    Case {
                        bench: bench_name,
                        backend: "cpu",
                        dtype: common.dtype,
                        shape: label,
                        threads,
                        flops,
                        peak,
                        peak_source,
                        pupa_median,
                    }
                    .row(name, &gf, note)
                })
                .collect();
            bar.suspend(|| print_runs(&out, common.json, isa));
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(())
}

/// What the rows of one benchmark case share.
struct Case<'a> {
    bench: &'static str,
    backend: &'static str,
    dtype: Dt,
    shape: &'a str,
    threads: usize,
    flops: f64,
    peak: f64,
    peak_source: &'static str,
    /// pupa's median GFLOP/s, the base of `ratio_to_pupa`.
    pupa_median: f64,
}

impl Case<'_> {
    /// The row of one implementation from its GFLOP/s samples.
    fn row(&self, implementation: String, gf: &[f64], note: String) -> Run {
        let med = median(gf);
        Run {
            bench: self.bench,
            implementation,
            backend: self.backend,
            dtype: self.dtype,
            shape: self.shape.to_string(),
            threads: self.threads,
            gflops: med,
            gflops_min: gf.iter().cloned().fold(f64::INFINITY, f64::min),
            gflops_max: gf.iter().cloned().fold(0.0, f64::max),
            seconds_median: self.flops / med / 1e9,
            samples: gf.len(),
            peak_gflops: self.peak,
            peak_source: self.peak_source,
            pct_of_peak: 100.0 * med / self.peak,
            ratio_to_pupa: med / self.pupa_median,
            note,
        }
    }
}

fn print_runs(runs: &[Run], json: bool, isa: Isa) {
    if json {
        for r in runs {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return;
    }
    let r0 = &runs[0];
    println!(
        "\n{} {} {} threads={} isa={} peak={:.1} GFLOP/s ({})",
        r0.bench,
        r0.shape,
        serde_json::to_string(&r0.dtype)
            .unwrap_or_default()
            .trim_matches('"'),
        r0.threads,
        isa.name(),
        r0.peak_gflops,
        r0.peak_source
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>7} {:>9}  note",
        "impl", "GFLOP/s", "min", "max", "%peak", "vs pupa"
    );
    for r in runs {
        println!(
            "{:<16} {:>10.1} {:>10.1} {:>10.1} {:>6.1}% {:>8.3}x  {}",
            r.implementation,
            r.gflops,
            r.gflops_min,
            r.gflops_max,
            r.pct_of_peak,
            r.ratio_to_pupa,
            r.note
        );
    }
}

fn median(x: &[f64]) -> f64 {
    let mut v = x.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Times `f` `warmup + repeats` times and returns the timed seconds.
fn time_it(
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

fn numpy(
    common: &Common,
    threads: usize,
    script: &PathBuf,
    args: &[String],
) -> Result<Vec<f64>, String> {
    let out = Command::new(&common.python)
        .arg(script)
        .args(args)
        .arg(common.warmup.to_string())
        .arg(common.repeats.to_string())
        .env_remove("OPENBLAS_CORETYPE")
        .env_remove("OPENBLAS_L2_SIZE")
        .env("OPENBLAS_NUM_THREADS", threads.to_string())
        .env("OMP_NUM_THREADS", threads.to_string())
        .env(
            "PUPA_BENCH_CLOCK",
            if common.clock == Clock::ThreadCpu {
                "thread-cpu"
            } else {
                "wall"
            },
        )
        .output()
        .map_err(|e| {
            format!(
                "running {} {}: {e} (use --no-numpy to skip)",
                common.python,
                script.display()
            )
        })?;
    if !out.status.success() {
        return Err(format!(
            "numpy reference failed (use --no-numpy to skip): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("numpy reference printed bad JSON: {e}"))?;
    v["seconds"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .ok_or_else(|| "numpy reference: no seconds".into())
}

type Measured = Vec<(String, Vec<f64>, String, f64)>;

/// Runs the timers interleaved for `rounds` rounds and converts seconds to GFLOP/s.
fn interleave(
    common: &Common,
    flops: f64,
    mut timers: Vec<(String, String, Timer<'_>)>,
) -> Result<Measured, String> {
    let mut secs: Vec<Vec<f64>> = vec![vec![]; timers.len()];
    for _ in 0..common.rounds {
        for (i, (_, _, t)) in timers.iter_mut().enumerate() {
            secs[i].extend(t()?);
        }
    }
    Ok(timers
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
        .collect())
}

#[allow(clippy::too_many_arguments)]
fn bench_matmul(
    common: &Common,
    isa: Isa,
    pool: &rayon::ThreadPool,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    script: &PathBuf,
) -> Result<Measured, String> {
    match common.dtype {
        Dt::F32 => bench_matmul_t::<f32>(common, isa, pool, threads, m, n, k, script),
        Dt::F16 => bench_matmul_t::<f16>(common, isa, pool, threads, m, n, k, script),
        Dt::Bf16 => bench_matmul_t::<bf16>(common, isa, pool, threads, m, n, k, script),
    }
}

#[allow(clippy::too_many_arguments)]
fn bench_matmul_t<T: Element>(
    common: &Common,
    isa: Isa,
    pool: &rayon::ThreadPool,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    script: &PathBuf,
) -> Result<Measured, String> {
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
        let fa = faer::Mat::<f32>::from_fn(m, k, |i, j| a[i * k + j].to_f32());
        let fb = faer::Mat::<f32>::from_fn(k, n, |i, j| b[i * n + j].to_f32());
        let mut fc = faer::Mat::<f32>::zeros(m, n);
        let par = if threads == 1 {
            faer::Par::Seq
        } else {
            faer::Par::rayon(threads)
        };
        let note = if T::DTYPE == pupa_kernels::DType::F32 {
            String::from("faer 0.24")
        } else {
            String::from("faer 0.24, f32 on the same values")
        };
        timers.push((
            "faer".into(),
            note,
            Box::new(move || {
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
            }),
        ));
    }
    if !common.no_numpy {
        let args = vec![
            "matmul".into(),
            "f32".into(),
            m.to_string(),
            n.to_string(),
            k.to_string(),
        ];
        let note = if T::DTYPE == pupa_kernels::DType::F32 {
            "numpy/OpenBLAS sgemm"
        } else {
            "numpy/OpenBLAS sgemm (no low-precision GEMM)"
        };
        timers.push((
            "numpy-openblas".into(),
            note.into(),
            Box::new(move || numpy(common, threads, script, &args)),
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
    interleave(common, flops, timers)
}

fn bench_attention(
    common: &Common,
    isa: Isa,
    pool: &rayon::ThreadPool,
    threads: usize,
    sh: AttnShape,
    script: &PathBuf,
) -> Result<Measured, String> {
    match common.dtype {
        Dt::F32 => bench_attention_t::<f32>(common, isa, pool, threads, sh, script),
        Dt::F16 => bench_attention_t::<f16>(common, isa, pool, threads, sh, script),
        Dt::Bf16 => bench_attention_t::<bf16>(common, isa, pool, threads, sh, script),
    }
}

fn bench_attention_t<T: Element>(
    common: &Common,
    isa: Isa,
    pool: &rayon::ThreadPool,
    threads: usize,
    sh: AttnShape,
    script: &PathBuf,
) -> Result<Measured, String> {
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
    if !common.no_numpy {
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
            "numpy: per head QKᵀ, softmax, PV in f32".into(),
            Box::new(move || numpy(common, threads, script, &args)),
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
    interleave(common, flops, timers)
}
