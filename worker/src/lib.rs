//! pupa-worker: pupa's runtime (`pupa_runtime`: keys, evidence, sealed jobs, billing,
//! receipts, one `Session` per connection — the code the firmware runs) as a Linux process.
//!
//! - [`serve`]: the serving loop on std's nonblocking TCP sockets (the firmware's limits);
//! - [`tsm`]: SEV-SNP / TDX evidence through configfs-tsm (Documentation/ABI/testing/
//!   configfs-tsm); [`certtable`]: the SNP certificate table of its `auxblob`;
//! - [`gpu`]: NVIDIA GPU evidence through NVML (`--gpus`), bound to the same REPORT_DATA;
//! - [`compute`]: `--compute auto|cpu|cuda`; [`layout`]: job tensors as the CUDA kernels take them;
//! - [`platform`]: entropy (`getrandom`) and the monotonic clock.
//!
//! Keys exist only in this process's memory; nothing is written to disk.

pub mod boot_digests;
pub mod certtable;
pub mod compute;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod gpu;
pub mod layout;
pub mod platform;
pub mod serve;
pub mod tsm;

use std::cell::RefCell;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::AtomicBool;

use pupa_runtime::{Config, DevTee, Tee, Worker};

use compute::{ComputeChoice, ComputeSetupError};
use gpu::{GpuChoice, GpuStartError};
use platform::{MonotonicClock, OsEntropy};
use tsm::{ConfigfsTsm, TsmKind};

/// The TEE whose evidence the worker serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TeeChoice {
    /// What the guest is: the configfs-tsm provider (`sev_guest`: snp, `tdx_guest`: tdx), or
    /// `dev` when the kernel has no TSM (a plain VM). One command line for every platform; a
    /// TEE guest whose driver failed to register falls to `dev` evidence, which clients refuse.
    Auto,
    /// The insecure development report: no TEE, anyone can forge it.
    Dev,
    /// AMD SEV-SNP through configfs-tsm.
    Snp,
    /// Intel TDX through configfs-tsm.
    Tdx,
}

/// `pupa-worker`'s command line.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "pupa-worker",
    version,
    about = "pupa's runtime as a Linux process: serves pupa's protocol on TCP with TEE evidence from configfs-tsm"
)]
pub struct Args {
    /// Address to serve on (ADDR:PORT; port 0 picks a free one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// Evidence: `dev` (INSECURE development report), `snp` or `tdx` (configfs-tsm).
    #[arg(long, value_enum)]
    pub tee: TeeChoice,
    /// The configfs-tsm report directory.
    #[arg(long, default_value = tsm::DEFAULT_TSM_PATH)]
    pub tsm_path: PathBuf,
    /// TDX: the RTMR event log the firmware published (its CCEL ACPI table's log area), sent
    /// with every quote so that a verifier can replay the RTMRs; missing: quotes go without.
    #[arg(long, default_value = tsm::DEFAULT_CCEL_PATH)]
    pub ccel: PathBuf,
    /// Dev evidence: where Linux lists the boot parameters' setup_data, in which pupa's
    /// firmware leaves the digests of what it booted.
    #[arg(long, default_value = boot_digests::DEFAULT_BOOT_PARAMS)]
    pub boot_params: PathBuf,
    /// Where jobs run.
    #[arg(long, value_enum, default_value = "auto")]
    pub compute: ComputeChoice,
    /// CUDA: load the kernels built ahead of time from this directory
    /// (`gemm_bf16_sm90a.cubin`, `attention_fwd_sm90a.cubin`, as `kernels/cuda/check.sh` builds
    /// them for the R535 driver) instead of compiling them with NVRTC.
    #[arg(long)]
    pub cuda_cubins: Option<PathBuf>,
    /// GPU evidence: `auto` (NVML if it loads and sees GPUs), `none`, `nvml` (required) or
    /// `mock:DIR` (tests: serves DIR's sample, see `gpu::mock`).
    #[arg(long, default_value = "auto")]
    pub gpus: GpuChoice,
    /// Connections served at once.
    #[arg(long, default_value_t = 64)]
    pub max_connections: usize,
    /// Bytes of the runtime's memory budget (partial frames, replies, job memory), MiB.
    #[arg(long, default_value_t = 1024)]
    pub memory_budget_mib: usize,
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `--compute` cannot be honoured.
    #[error(transparent)]
    Compute(#[from] ComputeSetupError),
    /// The GPUs cannot be attested.
    #[error(transparent)]
    Gpu(#[from] GpuStartError),
    /// `--compute cuda` on a TEE without GPU evidence.
    #[error("--compute cuda needs GPU evidence (--gpus auto|nvml with a GPU in CC mode) unless --tee dev")]
    CudaWithoutGpuEvidence,
    /// The listening socket.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime could not make its keys or boot evidence.
    #[error("the runtime cannot start: {0}")]
    Runtime(#[from] pupa_runtime::WorkerError),
    /// The serving loop failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

impl StartError {
    /// The process exit code: 2 for a configuration the machine cannot honour, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Compute(_)
            | StartError::Listen { .. }
            | StartError::Gpu(_)
            | StartError::CudaWithoutGpuEvidence => 2,
            _ => 1,
        }
    }
}

/// SHA-384 of this executable, the dev report's "image" (the firmware hashes its ROM).
/// The dev evidence's `image_sha384`: the firmware and payload pupa's firmware booted (its
/// boot-digests node), else this binary's SHA-384.
fn dev_measurement(boot_params: &std::path::Path) -> [u8; 48] {
    match boot_digests::read(boot_params) {
        Ok(Some(d)) => {
            tracing::info!(
                "dev evidence names pupa's firmware and the Linux payload it booted (boot digests from setup_data)"
            );
            d.dev_measurement()
        }
        Ok(None) => own_sha384(),
        Err(e) => {
            tracing::warn!("{e}: dev evidence names this binary instead");
            own_sha384()
        }
    }
}

fn own_sha384() -> [u8; 48] {
    use sha2::{Digest, Sha384};
    match std::fs::read("/proc/self/exe") {
        Ok(b) => Sha384::digest(&b).into(),
        Err(e) => {
            tracing::warn!(
                "cannot read /proc/self/exe ({e}): dev evidence names an all-zero image hash"
            );
            [0; 48]
        }
    }
}

/// The TEE backend `args` asks for, with the GPUs' evidence beside it when `gpus` is some.
pub fn tee_with_gpus(args: &Args, gpus: Option<Box<dyn gpu::GpuAttestation>>) -> Box<dyn Tee> {
    let cpu = tee_of(args);
    match gpus {
        Some(g) => Box::new(gpu::GpuTee::new(cpu, g)),
        None => cpu,
    }
}

/// `--tee auto` made concrete (see [`TeeChoice::Auto`]); other choices are returned as given.
pub fn resolve_tee(choice: TeeChoice, tsm_path: &std::path::Path) -> TeeChoice {
    if choice != TeeChoice::Auto {
        return choice;
    }
    match tsm::provider(tsm_path, std::time::Duration::from_secs(2)) {
        Ok(Some(p)) if p == TsmKind::Snp.provider() => TeeChoice::Snp,
        Ok(Some(p)) if p == TsmKind::Tdx.provider() => TeeChoice::Tdx,
        Ok(Some(p)) => {
            tracing::warn!(provider = %p, "--tee auto: unknown TSM provider; serving dev evidence");
            TeeChoice::Dev
        }
        Ok(None) => {
            tracing::info!(tsm = %tsm_path.display(), "--tee auto: no TSM: not a TEE guest; serving dev evidence");
            TeeChoice::Dev
        }
        Err(e) => {
            tracing::warn!("--tee auto: {e}; serving dev evidence");
            TeeChoice::Dev
        }
    }
}

/// The CPU TEE backend `args` asks for.
pub fn tee_of(args: &Args) -> Box<dyn Tee> {
    // (resolve_tee never returns Auto)
    match resolve_tee(args.tee, &args.tsm_path) {
        TeeChoice::Dev | TeeChoice::Auto => {
            for line in [
                "--tee dev: serving the INSECURE development report: no TEE, no confidentiality;",
                "anyone can forge this evidence; clients refuse it unless --allow-insecure-dev.",
                "Never run --tee dev where real data or payments are involved.",
            ] {
                tracing::warn!("{line}");
            }
            Box::new(DevTee {
                image_sha384: dev_measurement(&args.boot_params),
            })
        }
        TeeChoice::Snp => Box::new(ConfigfsTsm::new(&args.tsm_path, TsmKind::Snp)),
        TeeChoice::Tdx => {
            let tsm = ConfigfsTsm::new(&args.tsm_path, TsmKind::Tdx);
            match tsm::read_event_log(&args.ccel) {
                Ok(log) => {
                    tracing::info!(path = %args.ccel.display(), bytes = log.len(), "TDX event log (CCEL) attached to quotes");
                    Box::new(tsm.with_event_log(log))
                }
                Err(e) => {
                    tracing::warn!(path = %args.ccel.display(), "no TDX event log: {e}; quotes go without it and verifiers cannot replay the RTMRs");
                    Box::new(tsm)
                }
            }
        }
    }
}

/// Binds the listening socket.
fn listen(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let err = |source| StartError::Listen { addr, source };
    let listener = TcpListener::bind(addr).map_err(err)?;
    let local = listener.local_addr().map_err(err)?;
    Ok((listener, local))
}

/// Starts the worker and serves until `stop` is set: checks the GPUs (`--gpus`), opens the
/// compute backend, listens, makes the keys and boot evidence, prints `pupa-worker: listening
/// on ADDR` to stdout. With GPUs the compute backend opens after the boot evidence, which
/// attests them and sets them ready (CUDA takes work on a CC GPU only then).
pub fn run(args: &Args, stop: &AtomicBool) -> Result<(), StartError> {
    let args = &Args {
        tee: resolve_tee(args.tee, &args.tsm_path),
        ..args.clone()
    };
    let (gpus, n_gpus, note) = match gpu::open(&args.gpus)? {
        gpu::Opened::Gpus(g, n) => (Some(g), n, None),
        gpu::Opened::NoGpus(why) => (None, 0, Some(why)),
    };
    if args.compute == ComputeChoice::Cuda && gpus.is_none() && args.tee != TeeChoice::Dev {
        return Err(StartError::CudaWithoutGpuEvidence);
    }
    let early = match gpus {
        None => Some(compute::select(args.compute, args.cuda_cubins.as_deref())?),
        Some(_) => None,
    };
    if let Some(why) = note {
        tracing::info!("{why}");
    }
    let compute = Rc::new(RefCell::new(early));
    let (listener, addr) = listen(args.listen)?;
    let config = Config {
        memory_budget: args.memory_budget_mib.saturating_mul(1 << 20),
        ..Config::default()
    };
    let mut worker = Worker::with_compute(
        tee_with_gpus(args, gpus),
        OsEntropy,
        MonotonicClock::start(),
        config,
        gpu::LateCompute(compute.clone()),
    )?;
    if compute.borrow().is_none() {
        let opened = compute::select(args.compute, args.cuda_cubins.as_deref())?;
        *compute.borrow_mut() = Some(opened);
    }
    tracing::info!(
        tee = ?args.tee,
        compute = pupa_runtime::Compute::name(&gpu::LateCompute(compute.clone())),
        gpus = n_gpus,
        "keys made, boot evidence ready"
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pupa-worker: listening on {addr}");
    let _ = out.flush();
    drop(out);
    let limits = serve::Limits {
        sessions: args.max_connections.max(1),
        ..serve::Limits::default()
    };
    serve::serve(&listener, &mut worker, limits, stop).map_err(StartError::Serve)
}
