//! `pupa-client`: verify a worker's evidence, seal a job to it, get the sealed result and a
//! verified receipt; or benchmark the sealed-job path.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use pupa_host::client::bench::{run_bench, BenchConfig};
use pupa_host::client::jobspec::RefCheck;
use pupa_host::client::report::{receipt_json, receipt_lines};
use pupa_host::client::{
    fetch_and_verify, run_job, BuiltJob, ClientError, Connection, EvidencePolicy, JobOutcome,
    JobSpec, TlsClient, VerifiedWorker,
};

#[derive(Parser)]
#[command(
    name = "pupa-client",
    version,
    about = "pupa client: sealed jobs to a verified worker"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct Common {
    /// The worker (relay) address, HOST:PORT.
    #[arg(long)]
    worker: String,
    /// Accept INSECURE development evidence (a guest without a TEE): for testing only.
    #[arg(long)]
    allow_insecure_dev: bool,
    /// SEV-SNP / TDX: the expected measurements, from the manifest.json of `pupa-image build`
    /// (overrides the policy file's measurement choice).
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Evidence policy file (TOML, as `pupa-measure verify --policy`: expect, measurements,
    /// allow_debug, snp_min_tcb, tdx_min_tcb, vmpl, allow_migration_agent, hpke_pk, receipt_pk).
    #[arg(long)]
    policy: Option<PathBuf>,
    /// SEV-SNP: the VCEK certificate (DER or PEM), used instead of one inside the evidence.
    #[arg(long)]
    vcek: Option<PathBuf>,
    /// TDX: the collateral JSON (TCB info, QE identity, CRLs, issuer chains).
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// The verification time (VCEK validity, TDX collateral), RFC 3339; default the clock.
    #[arg(long)]
    now: Option<String>,
    /// Connect with TLS, trusting the PEM certificate(s) in this file.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// Server name expected in the relay's TLS certificate (default: the host of --worker).
    #[arg(long)]
    tls_name: Option<String>,
    /// Seconds to wait for each reply.
    #[arg(long, default_value_t = 120)]
    timeout_s: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one job described by a JSON file and check its result against the f64 reference.
    Run {
        #[command(flatten)]
        common: Common,
        /// Job description (JSON), e.g. {"op":"matmul","m":64,"n":64,"k":64,"dtype":"f32","seed":7}.
        job: PathBuf,
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Measure the sealed-job overhead (tiny job, sequential) and jobs/s with concurrent clients.
    Bench {
        #[command(flatten)]
        common: Common,
        /// Concurrent clients in the throughput run.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Jobs in the throughput run.
        #[arg(long, default_value_t = 800)]
        jobs: usize,
        /// Sequential jobs in the overhead run.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// The job (default: a tiny 4×4×4 f32 matmul).
        #[arg(long)]
        job: Option<PathBuf>,
        /// One JSON object on stdout instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot read {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("result check failed: relative error {rel_err:.3e} exceeds {tolerance:.0e}")]
    CheckFailed { rel_err: f64, tolerance: f64 },
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn tls(c: &Common) -> Result<Option<TlsClient>, CliError> {
    let Some(ca) = &c.tls_ca else { return Ok(None) };
    let host = c.tls_name.clone().unwrap_or_else(|| {
        c.worker
            .rsplit_once(':')
            .map_or(c.worker.clone(), |(h, _)| {
                h.trim_matches(['[', ']']).to_string()
            })
    });
    Ok(Some(TlsClient::new(ca, &host)?))
}

fn evidence_policy(c: &Common) -> Result<EvidencePolicy, CliError> {
    Ok(EvidencePolicy::load(
        c.allow_insecure_dev,
        c.policy.as_deref(),
        c.expect.as_deref(),
        c.vcek.as_deref(),
        c.collateral.as_deref(),
        c.now.as_deref(),
    )?)
}

fn read_spec(p: &PathBuf) -> Result<JobSpec, CliError> {
    let text = std::fs::read_to_string(p).map_err(|e| CliError::Read(p.clone(), e))?;
    Ok(JobSpec::from_json(&text).map_err(ClientError::from)?)
}

fn run(cli: Cli) -> Result<(), CliError> {
    match cli.cmd {
        Cmd::Run { common, job, json } => run_one(&common, &job, json),
        Cmd::Bench {
            common,
            clients,
            jobs,
            samples,
            job,
            json,
        } => bench(&common, clients, jobs, samples, job.as_ref(), json),
    }
}

/// `pupa-client run`: one job, checked against the reference.
fn run_one(common: &Common, job: &PathBuf, json: bool) -> Result<(), CliError> {
    let spec = read_spec(job)?;
    let built = spec.build().map_err(ClientError::from)?;
    let policy = evidence_policy(common)?;
    let timeout = Duration::from_secs(common.timeout_s);
    let mut c = Connection::connect(&common.worker, tls(common)?.as_ref(), timeout)?;
    let w = fetch_and_verify(&mut c, &policy)?;
    if w.tee == "insecure-dev" && !json {
        eprintln!("WARNING: the worker runs without a TEE (insecure development evidence): the job is NOT confidential");
    }
    let out = run_job(&mut c, &w, built.job.clone())?;
    let check = built.check(&out.result).map_err(ClientError::from)?;
    let t = out.timing;
    if json {
        let v = serde_json::json!({
            "evidence": w.tee,
            "image_sha384": w.image_sha384.map(|h| hex(&h)),
            "measurement": w.measurement.map(|h| hex(&h)),
            "hpke_pk": hex(&w.hpke_pk), "receipt_pk": hex(&w.receipt_pk),
            "job_id": hex(&out.result.job_id), "dims": out.result.dims,
            "flops": built.flops, "sealed_bytes": out.sealed_bytes,
            "rel_err": check.rel_err, "tolerance": check.tolerance, "passed": check.passed,
            "receipt": receipt_json(&out.receipt),
            "timing_us": { "seal": t.seal.as_secs_f64() * 1e6, "round_trip": t.round_trip.as_secs_f64() * 1e6,
                           "open_verify": t.open_verify.as_secs_f64() * 1e6 },
        });
        println!("{v}");
    } else {
        print_text(&w, &out, &built, &check);
    }
    if !check.passed {
        return Err(CliError::CheckFailed {
            rel_err: check.rel_err,
            tolerance: check.tolerance,
        });
    }
    Ok(())
}

/// The human-readable report of `pupa-client run`.
fn print_text(w: &VerifiedWorker, out: &JobOutcome, built: &BuiltJob, check: &RefCheck) {
    let t = out.timing;
    println!(
        "worker      {} evidence, receipt key {}{}",
        w.tee,
        &hex(&w.receipt_pk)[..16],
        w.measurement
            .map(|m| format!(", measurement {}", &hex(&m)[..16]))
            .unwrap_or_default()
    );
    println!(
        "job         {} dims {:?}, {} flops, sealed {} bytes",
        &hex(&out.result.job_id)[..16],
        out.result.dims,
        built.flops,
        out.sealed_bytes
    );
    println!(
        "result      rel. error {:.3e} vs f64 reference (bound {:.0e}): {}",
        check.rel_err,
        check.tolerance,
        if check.passed { "ok" } else { "FAILED" }
    );
    for line in receipt_lines(&out.receipt) {
        println!("{line}");
    }
    println!(
        "timing      seal {:.1} µs, round trip {:.3} ms, open+verify {:.1} µs",
        t.seal.as_secs_f64() * 1e6,
        t.round_trip.as_secs_f64() * 1e3,
        t.open_verify.as_secs_f64() * 1e6
    );
}

/// `pupa-client bench`.
fn bench(
    common: &Common,
    clients: usize,
    jobs: usize,
    samples: usize,
    job: Option<&PathBuf>,
    json: bool,
) -> Result<(), CliError> {
    let spec = match job {
        Some(p) => read_spec(p)?,
        None => JobSpec::from_json(r#"{"op":"matmul","m":4,"n":4,"k":4,"dtype":"f32","seed":1}"#)
            .map_err(ClientError::from)?,
    };
    let cfg = BenchConfig {
        addr: common.worker.clone(),
        tls: tls(common)?,
        policy: evidence_policy(common)?,
        spec,
        samples: samples.max(1),
        clients,
        jobs,
        timeout: Duration::from_secs(common.timeout_s),
    };
    let r = run_bench(&cfg, |m| eprintln!("{m}"))?;
    if json {
        println!("{}", serde_json::to_string(&r).unwrap_or_default());
    } else {
        println!(
            "sealed-job overhead ({} sequential tiny jobs, medians; p10–p90):",
            r.samples
        );
        println!(
            "  client-visible total  {:>9.1} µs  ({:.1}–{:.1})",
            r.total.median_us, r.total.p10_us, r.total.p90_us
        );
        println!("    seal                {:>9.1} µs", r.seal.median_us);
        println!(
            "    round trip          {:>9.1} µs  ({:.1}–{:.1})",
            r.round_trip.median_us, r.round_trip.p10_us, r.round_trip.p90_us
        );
        println!(
            "    open + verify       {:>9.1} µs",
            r.open_verify.median_us
        );
        println!(
            "  kernel (same job, this process) {:>6.2} µs",
            r.kernel.median_us
        );
        println!("  overhead              {:>9.1} µs", r.overhead_us);
        println!(
            "throughput: {} jobs, {} clients, {:.2} s: {:.0} jobs/s",
            r.jobs, r.clients, r.wall_s, r.jobs_per_s
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let CliError::Client(c) = &e {
                if let Some(v) = pupa_host::client::attest::rejected_verdict(c) {
                    for ch in &v.checks {
                        let mark = if ch.passed { "PASS" } else { "FAIL" };
                        eprintln!("  {mark}  {}: {}", ch.name, ch.detail);
                    }
                }
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
