//! `pupa-client bench`: the sealed-job overhead and the throughput of concurrent clients.
//!
//! Overhead of a tiny job = client-visible time (seal + round trip through host and guest +
//! open + receipt check) minus the kernel's own time for the same job, measured side by side
//! by running the same kernel (`pupa_kernels`) in this process. Throughput = jobs completed per
//! second with `clients` connections each running its share of `jobs` back to back.

use std::thread;
use std::time::{Duration, Instant};

use pupa_protocol::job::Op;

use super::{
    fetch_boot_evidence, run_job, ClientError, Connection, EvidencePolicy, JobSpec, TlsClient,
};

/// What to benchmark.
#[derive(Clone)]
pub struct BenchConfig {
    /// Worker address.
    pub addr: String,
    /// TLS, if the relay serves it.
    pub tls: Option<TlsClient>,
    /// Evidence policy.
    pub policy: EvidencePolicy,
    /// The job run (a tiny one for the overhead).
    pub spec: JobSpec,
    /// Sequential jobs for the overhead measurement.
    pub samples: usize,
    /// Concurrent clients for the throughput measurement.
    pub clients: usize,
    /// Jobs in the throughput measurement (split over the clients).
    pub jobs: usize,
    /// Reply timeout.
    pub timeout: Duration,
}

/// Summary of a sample of durations, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    /// Median.
    pub median_us: f64,
    /// 10th percentile.
    pub p10_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        if v.is_empty() {
            return Stats::default();
        }
        v.sort();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        Stats {
            median_us: at(0.5),
            p10_us: at(0.1),
            p90_us: at(0.9),
        }
    }
}

/// Benchmark results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    /// Sequential jobs measured.
    pub samples: usize,
    /// Client-visible time per job: seal + round trip + open/verify.
    pub total: Stats,
    /// Round trip (send → receipt received).
    pub round_trip: Stats,
    /// Sealing on the client.
    pub seal: Stats,
    /// Opening and verifying on the client.
    pub open_verify: Stats,
    /// The same kernel in this process.
    pub kernel: Stats,
    /// Median total minus median kernel time.
    pub overhead_us: f64,
    /// Concurrent clients.
    pub clients: usize,
    /// Jobs completed in the throughput run.
    pub jobs: usize,
    /// Wall time of the throughput run.
    pub wall_s: f64,
    /// Jobs per second.
    pub jobs_per_s: f64,
}

fn kernel_time(spec: &JobSpec, n: usize) -> Result<Vec<Duration>, ClientError> {
    let built = spec.build()?;
    let mut out = Vec::with_capacity(n);
    let f32s = |b: &[u8]| {
        b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect::<Vec<f32>>()
    };
    // The overhead is defined for f32 jobs; other dtypes are timed as f32 of the same shape.
    let t: Vec<Vec<f32>> = built.job.tensors.iter().map(|b| f32s(b)).collect();
    for _ in 0..n {
        let t0 = Instant::now();
        match (built.job.op, t.as_slice()) {
            (Op::Matmul { m, n, k, .. }, [a, b])
                if built.job.dtype == pupa_protocol::job::DType::F32 =>
            {
                let (m, n, k) = (m as usize, n as usize, k as usize);
                let mut c = vec![0f32; m * n];
                let (Ok(a), Ok(b)) = (
                    pupa_kernels::MatRef::row_major(a, m, k),
                    pupa_kernels::MatRef::row_major(b, k, n),
                ) else {
                    break;
                };
                let _ = pupa_kernels::matmul(a, b, &mut c);
                std::hint::black_box(&c);
            }
            _ => return Ok(Vec::new()),
        }
        out.push(t0.elapsed());
    }
    Ok(out)
}

/// Runs the benchmark. Every job's result is opened and its receipt verified, as in `run`.
pub fn run_bench(
    cfg: &BenchConfig,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, ClientError> {
    let mut c = Connection::connect(&cfg.addr, cfg.tls.as_ref(), cfg.timeout)?;
    let w = fetch_boot_evidence(&mut c, &cfg.policy)?;
    let built = cfg.spec.build()?;
    // Warm up connections, caches and the guest's code paths.
    for _ in 0..cfg.samples.min(20) {
        run_job(&mut c, &w, built.job.clone())?;
    }
    progress(&format!("overhead: {} sequential jobs", cfg.samples));
    let (mut total, mut rt, mut seal, mut open) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cfg.samples {
        let o = run_job(&mut c, &w, built.job.clone())?;
        total.push(o.timing.seal + o.timing.round_trip + o.timing.open_verify);
        rt.push(o.timing.round_trip);
        seal.push(o.timing.seal);
        open.push(o.timing.open_verify);
    }
    drop(c);
    let kernel = Stats::of(kernel_time(&cfg.spec, cfg.samples.max(1))?);
    let total = Stats::of(total);

    progress(&format!(
        "throughput: {} jobs over {} clients",
        cfg.jobs, cfg.clients
    ));
    let clients = cfg.clients.max(1);
    let per = cfg.jobs.div_ceil(clients);
    let t0 = Instant::now();
    let handles: Vec<_> = (0..clients)
        .map(|_| {
            let (cfg, job) = (cfg.clone(), built.job.clone());
            thread::spawn(move || -> Result<usize, ClientError> {
                let mut c = Connection::connect(&cfg.addr, cfg.tls.as_ref(), cfg.timeout)?;
                let w = fetch_boot_evidence(&mut c, &cfg.policy)?;
                for _ in 0..per {
                    run_job(&mut c, &w, job.clone())?;
                }
                Ok(per)
            })
        })
        .collect();
    let mut done = 0;
    for h in handles {
        done += h.join().map_err(|_| {
            ClientError::Io(std::io::Error::other("a benchmark client thread panicked"))
        })??;
    }
    let wall = t0.elapsed().as_secs_f64();
    Ok(BenchReport {
        samples: cfg.samples,
        total,
        round_trip: Stats::of(rt),
        seal: Stats::of(seal),
        open_verify: Stats::of(open),
        kernel,
        overhead_us: total.median_us - kernel.median_us,
        clients,
        jobs: done,
        wall_s: wall,
        jobs_per_s: done as f64 / wall,
    })
}
