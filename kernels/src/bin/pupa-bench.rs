//! pupa-bench: kernel benchmarks side by side with references.
//!
//! ```text
//! pupa-bench matmul --backend cpu [--dtype f32|f16|bf16] --m M --n N --k K [--threads T] [--json] [--plot F.svg]
//! pupa-bench attention --backend cpu [--dtype ...] --seq S --heads H [--kv-heads G] --dim D [--causal] [--json]
//! ```
//! Sizes and thread counts take comma-separated lists (a sweep, with a progress bar). Each
//! configuration runs `--rounds` rounds; in each round pupa and every reference are timed
//! `--repeats` times after `--warmup` runs, interleaved, so that noise from the machine hits
//! all of them alike. Reported: median, min and max GFLOP/s over all samples, % of the peak
//! (`--peak`, or measured with an FMA / `vdpbf16ps` throughput loop before the first
//! configuration and again in every round, the best trial counting), and the ratio to pupa.
//! `--json` prints one JSON document with every row; `--plot` draws the sweep as SVG.
//!
//! CPU references: `faer` (Rust), numpy/OpenBLAS through `kernels/bench/ref_numpy.py` (in a
//! venv pupa-bench creates and reuses, or `--python`; run with OPENBLAS_CORETYPE and
//! OPENBLAS_L2_SIZE removed from its environment), and a naive triple loop (`--naive`, off
//! above 2^31 FLOPs unless forced). When numpy cannot be set up, one line says how, and the
//! bench goes on without it.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use pupa_kernels::{detect, AttnShape, Isa};
use serde::Serialize;

#[path = "pupa_bench/cpu.rs"]
mod cpu;
#[cfg(feature = "cuda")]
#[path = "pupa_bench/cuda.rs"]
mod cuda;
#[path = "pupa_bench/huge.rs"]
mod huge;
#[path = "pupa_bench/naive.rs"]
mod naive;
#[path = "pupa_bench/numpy.rs"]
mod numpy;
#[path = "pupa_bench/peak.rs"]
mod peak;
#[path = "pupa_bench/plot.rs"]
mod plot;
#[path = "pupa_bench/report.rs"]
mod report;
use report::{Case, Document, Run};

#[derive(Parser)]
#[command(
    name = "pupa-bench",
    about = "Benchmark pupa's kernels against references",
    after_help = "numpy reference: a venv at $PUPA_BENCH_VENV, else $XDG_CACHE_HOME/pupa-bench/venv, else ~/.cache/pupa-bench/venv, created on first use (python3 -m venv, pip install -r kernels/bench/requirements.txt)"
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
    /// python interpreter with numpy for the numpy reference (default: a venv pupa-bench
    /// creates once with the pinned numpy of kernels/bench/requirements.txt)
    #[arg(long)]
    python: Option<String>,
    /// print one JSON document (every row of the tables, same fields) instead of the tables
    #[arg(long)]
    json: bool,
    /// write an SVG plot of the sweep: GFLOP/s vs size, one series per implementation, the peak
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
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

fn main() {
    let cli = Cli::parse();
    let json = common(&cli.cmd).json;
    if let Err(e) = run(cli) {
        eprintln!("pupa-bench: error: {e}");
        if json {
            // A script reading stdout gets a document here too.
            println!("{}", serde_json::json!({ "error": e }));
        }
        std::process::exit(2);
    }
}

fn common(cmd: &Cmd) -> &Common {
    match cmd {
        Cmd::Matmul { common, .. } | Cmd::Attention { common, .. } => common,
    }
}

/// The ISA pupa runs with: `--isa`, checked against the CPU, else the best detected.
fn pick_isa(common: &Common) -> Result<Isa, String> {
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
    Ok(isa)
}

/// One configuration of a sweep: its label, its plot size, and its dimensions.
struct Config {
    label: String,
    size: f64,
    /// [m, n, k] or [seq]
    dims: Vec<usize>,
}

fn configs(cmd: &Cmd) -> Vec<Config> {
    match cmd {
        Cmd::Matmul { m, n, k, .. } => {
            let mut v = vec![];
            for &m in m {
                for &n in n {
                    for &k in k {
                        v.push(Config {
                            label: format!("{m}x{n}x{k}"),
                            size: (m as f64 * n as f64 * k as f64).cbrt(),
                            dims: vec![m, n, k],
                        });
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
            .map(|&s| Config {
                label: format!(
                    "seq{s} h{heads} kv{} d{dim}{}",
                    kv_heads.unwrap_or(*heads),
                    if *causal { " causal" } else { "" }
                ),
                size: s as f64,
                dims: vec![s],
            })
            .collect(),
    }
}

fn attn_shape(cmd: &Cmd, seq: usize) -> Option<AttnShape> {
    match cmd {
        Cmd::Attention {
            heads,
            kv_heads,
            dim,
            causal,
            ..
        } => Some(AttnShape {
            seq_q: seq,
            seq_k: seq,
            heads: *heads,
            kv_heads: kv_heads.unwrap_or(*heads),
            dim: *dim,
            causal: *causal,
        }),
        Cmd::Matmul { .. } => None,
    }
}

/// What one invocation shares across its configurations.
struct Session<'a> {
    cmd: &'a Cmd,
    common: &'a Common,
    isa: Isa,
    bench: &'static str,
    numpy: Option<numpy::NumpyRef>,
    /// Measured peaks by (threads, bf16 loop).
    peaks: std::collections::HashMap<(usize, bool), f64>,
}

fn run(cli: Cli) -> Result<(), String> {
    let common = common(&cli.cmd);
    let isa = pick_isa(common)?;
    let mut warnings = vec![];
    let numpy = if common.backend == Backend::Cpu && !common.no_numpy {
        let cpu_clock = common.clock == Clock::ThreadCpu;
        match numpy::setup(common.python.as_deref(), cpu_clock, common.json) {
            Ok(np) => {
                if let Some(w) = &np.fallback {
                    eprintln!("pupa-bench: {w}");
                    warnings.push(w.clone());
                }
                Some(np)
            }
            Err(e) => {
                eprintln!("pupa-bench: numpy reference skipped: {e}");
                warnings.push(format!("numpy reference skipped: {e}"));
                None
            }
        }
    } else {
        None
    };
    let bench = if matches!(cli.cmd, Cmd::Matmul { .. }) {
        "matmul"
    } else {
        "attention"
    };
    let mut s = Session {
        cmd: &cli.cmd,
        common,
        isa,
        bench,
        numpy,
        peaks: Default::default(),
    };
    let configs = configs(&cli.cmd);
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
    let mut all: Vec<Run> = vec![];
    for cfg in &configs {
        for &threads in &common.threads {
            bar.set_message(format!("{} t{threads}", cfg.label));
            let rows = if common.backend == Backend::Cuda {
                cuda_case(&s, cfg, threads)?
            } else {
                cpu_case(&mut s, cfg, threads)?
            };
            if !common.json {
                bar.suspend(|| report::print_table(&rows));
            }
            all.extend(rows);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    finish(&s, &all, &warnings)
}

/// The JSON document and the plot.
fn finish(s: &Session<'_>, all: &[Run], warnings: &[String]) -> Result<(), String> {
    let common = s.common;
    if common.json {
        let doc = Document {
            bench: s.bench,
            backend: backend_name(common.backend),
            isa: s.isa.name(),
            dtype: common.dtype,
            clock: match common.clock {
                Clock::Wall => "wall",
                Clock::ThreadCpu => "thread-cpu",
            },
            warnings,
            runs: all,
        };
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        println!("{text}");
    }
    if let Some(path) = &common.plot {
        std::fs::write(path, plot::svg(all))
            .map_err(|e| format!("writing the plot {}: {e}", path.display()))?;
        if !common.json {
            println!("\nplot: {}", path.display());
        }
    }
    Ok(())
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Cpu => "cpu",
        Backend::Cuda => "cuda",
    }
}

/// One CPU configuration: pupa and the references, the peak measured (once per thread count
/// and loop, then refreshed by every round's probe) or given.
fn cpu_case(s: &mut Session<'_>, cfg: &Config, threads: usize) -> Result<Vec<Run>, String> {
    let common = s.common;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| e.to_string())?;
    let bf16_peak = common.dtype == Dt::Bf16 && s.isa == Isa::Avx512Bf16;
    let cpu_clock = common.clock == Clock::ThreadCpu;
    let isa = s.isa;
    let probe = common.peak.is_none() && isa != Isa::Portable;
    if probe {
        s.peaks
            .entry((threads, bf16_peak))
            .or_insert_with(|| peak::measure(isa, bf16_peak, threads, cpu_clock, peak::TRIALS));
    }
    let ctx = cpu::Ctx {
        common,
        isa,
        pool: &pool,
        threads,
        numpy: s.numpy.as_ref(),
        probe_bf16: probe.then_some(bf16_peak),
    };
    let (runs, probe) = match attn_shape(s.cmd, cfg.dims[0]) {
        None => cpu::bench_matmul(&ctx, cfg.dims[0], cfg.dims[1], cfg.dims[2])?,
        Some(sh) => {
            sh.validate(0, 0, 0, 0, None)
                .or_else(|e| {
                    if matches!(e, pupa_kernels::KernelError::BufferTooShort { .. }) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .map_err(|e| e.to_string())?;
            cpu::bench_attention(&ctx, sh)?
        }
    };
    let (peak, peak_source) = match common.peak {
        Some(p) => (p, "given"),
        None if isa == Isa::Portable => (f64::NAN, "none (no peak loop for portable; pass --peak)"),
        None => {
            let p = s.peaks.entry((threads, bf16_peak)).or_insert(0.0);
            *p = p.max(probe);
            (*p, "measured")
        }
    };
    let case = Case {
        bench: s.bench,
        backend: "cpu",
        isa: isa.name(),
        dtype: common.dtype,
        shape: &cfg.label,
        size: cfg.size,
        threads,
        flops: runs[0].3,
        peak,
        peak_source,
        pupa_median: report::median(&runs[0].1),
    };
    Ok(runs
        .into_iter()
        .map(|(name, gf, note, _)| case.row(name, &gf, note))
        .collect())
}

/// One CUDA configuration: pupa's Hopper kernel and cuBLAS.
#[cfg(feature = "cuda")]
fn cuda_case(s: &Session<'_>, cfg: &Config, threads: usize) -> Result<Vec<Run>, String> {
    let common = s.common;
    let job = match attn_shape(s.cmd, cfg.dims[0]) {
        None => cuda::Job::Matmul(cfg.dims[0], cfg.dims[1], cfg.dims[2]),
        Some(sh) => cuda::Job::Attention(sh),
    };
    let (timed, flops) = cuda::time(&job, common.warmup, common.repeats * common.rounds)?;
    let case = Case {
        bench: s.bench,
        backend: "cuda",
        isa: "sm_90a",
        dtype: common.dtype,
        shape: &cfg.label,
        size: cfg.size,
        threads,
        flops,
        peak: common.peak.unwrap_or(f64::NAN),
        peak_source: if common.peak.is_some() {
            "given"
        } else {
            "none (pass --peak)"
        },
        pupa_median: report::median(&timed[0].2),
    };
    Ok(timed
        .into_iter()
        .map(|(name, note, gf)| case.row(name.into(), &gf, note.into()))
        .collect())
}

#[cfg(not(feature = "cuda"))]
fn cuda_case(_: &Session<'_>, _: &Config, _: usize) -> Result<Vec<Run>, String> {
    Err("--backend cuda: built without the `cuda` feature".into())
}
