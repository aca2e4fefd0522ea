//! `pupa-host run`: boot the guest, expose the client endpoint, relay sealed jobs, keep the
//! guest healthy.
//!
//! - [`proxy`]: the relay proper (client connections ⇄ guest connections, never decrypting);
//! - [`track`]: frame-header bookkeeping of the client → guest stream;
//! - [`tls`]: rustls for remote clients;
//! - [`journal`]: receipts on disk before clients see them;
//! - [`health`]: the Hello → Evidence health probe;
//! - [`supervise`]: restarts a guest that died or stopped answering;
//! - [`backend`]: the VM (or external guest) being supervised;
//! - [`checks`]: flags, image and manifest checked before anything boots;
//! - this module: the command's arguments and its main loop.
//!
//! Networking: the development profile uses QEMU user networking with `hostfwd` on 127.0.0.1
//! (`--forward-port`), so only this host reaches the guest. Production uses a TAP device
//! (`--tap IFNAME`, set up by the operator as in `qemu/README.md`) and `--guest-addr` naming the
//! guest's address on it. Clients connect to `--listen`; use `--tls-cert/--tls-key` whenever
//! that is not a loopback address.
//!
//! Payloads: by default the firmware runs its own runtime (the unikernel) and is ready when it
//! prints `pupa: ready`. With `--payload linux` it boots a Linux kernel (`--payload-dir`, or
//! `--kernel/--initrd/--append`) whose `/init` is pupa-worker, ready when the worker prints
//! `pupa-worker: listening on`; the command line must give the worker the address user
//! networking forwards to (`pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2`) and `pupa.listen` on
//! `--guest-port` ([`checks::check_payload`]).
//!
//! SIGINT, SIGTERM and SIGHUP stop `run` at any point, booting included; the VMM is also tied
//! to this process (`vm::spawn`), so even a SIGKILL of `pupa-host` takes the VM with it.

pub mod backend;
pub mod checks;
pub mod health;
pub mod journal;
mod pending;
pub mod proxy;
pub mod supervise;
pub mod tls;
pub mod track;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::profile::{LinuxPayload, Network, TeeKind, Vmm};
use pupa_measurements::tee_arg;

pub use backend::{ExternalGuest, VmBackend};
pub use health::HealthConfig;
pub use journal::Journal;
pub use proxy::{
    Relay, RelayConfig, RelayStats, BUSY_DETAIL, JOB_LOST_DETAIL, RECEIPT_NOT_STORED_DETAIL,
};
pub use supervise::{start_guest, supervise, GuestBackend, StartError, Supervision};

/// Arguments of `pupa-host run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// TEE the VM is launched as (`dev`, also spelled `none`: a plain VM with insecure dev
    /// evidence).
    #[arg(long, default_value = "dev", value_parser = tee_arg::parser(&TeeKind::ALL))]
    pub tee: TeeKind,
    /// VMM that launches the guest.
    #[arg(long, value_enum, default_value = "qemu")]
    pub vmm: Vmm,
    /// The firmware image (pupa.fd). Without it, `--guest-addr` must name a guest already
    /// running (started by another tool).
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// What the firmware boots: its own runtime (`unikernel`), or a Linux kernel whose /init
    /// is pupa-worker (`linux`; give --payload-dir, or --kernel, --initrd and --append).
    #[arg(long, value_enum, default_value = "unikernel")]
    pub payload: Payload,
    /// --payload linux: a directory with `vmlinuz`, `initramfs.cpio` and `cmdline` (what
    /// `pupa-image build --payload linux` writes into target/pupa/linux/); --kernel, --initrd
    /// and --append override its files.
    #[arg(long)]
    pub payload_dir: Option<PathBuf>,
    /// --payload linux: the kernel (bzImage).
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// --payload linux: the initramfs (its /init is pupa-worker).
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// --payload linux: the kernel command line, e.g. `console=ttyS0 panic=-1
    /// pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 pupa.listen=0.0.0.0:7000 pupa.tee=dev`.
    #[arg(long, allow_hyphen_values = true)]
    pub append: Option<String>,
    /// Client endpoint.
    #[arg(long, default_value = "127.0.0.1:7100")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM) for the client endpoint.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the client endpoint.
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The guest's job port.
    #[arg(long, default_value_t = 7000)]
    pub guest_port: u16,
    /// Host port on 127.0.0.1 forwarded to the guest's job port (user networking).
    #[arg(long, default_value_t = 7001)]
    pub forward_port: u16,
    /// Production networking: the TAP device the guest is attached to (needs --guest-addr).
    #[arg(long)]
    pub tap: Option<String>,
    /// Where the guest's job port is reached (TAP networking, or an externally run guest).
    #[arg(long)]
    pub guest_addr: Option<SocketAddr>,
    /// Guest memory in MiB (at least 128: early memory, the shared window, the heap and one
    /// 64 MiB job frame; at least 512 for --payload linux). Default: 512, 1024 for --payload
    /// linux.
    #[arg(long, visible_alias = "memory")]
    pub memory_mib: Option<u32>,
    /// How QEMU runs a plain (`--tee dev`) guest: `kvm` or `tcg`. Default: KVM if a probe boot
    /// of the image works under it (up to 20 s), else TCG. TEE guests always use KVM.
    #[arg(long, value_enum)]
    pub accel: Option<crate::profile::Accel>,
    /// Guest vCPUs (1..=512).
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Seconds to wait for the guest to print `pupa: ready` (with --payload linux: for the
    /// worker to print `pupa-worker: listening on`). Default: 120, 300 for --payload linux.
    #[arg(long)]
    pub ready_timeout_s: Option<u64>,
    /// Receipt journal (checked records, fsync'd before a receipt reaches its client; the
    /// input of `pupa-host receipts relay`).
    #[arg(long)]
    pub receipts_log: Option<PathBuf>,
    /// The image's manifest.json: the image's SHA-384 must match it before anything boots.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// Seconds between health checks (Hello → Evidence) of the guest; 0: none.
    #[arg(long, default_value_t = 10)]
    pub health_period_s: u64,
    /// Seconds a health check waits for the guest's Evidence (a probe can wait behind a job).
    #[arg(long, default_value_t = 15)]
    pub health_timeout_s: u64,
    /// Failed health checks in a row before the guest is restarted.
    #[arg(long, default_value_t = 3)]
    pub health_failures: u32,
    /// Most client connections at once.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
}

/// What the firmware boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Payload {
    /// The firmware's own runtime.
    Unikernel,
    /// A Linux kernel and initramfs whose /init is pupa-worker.
    Linux,
}

impl RunArgs {
    /// Guest memory in MiB: `--memory-mib`, else the payload's default.
    pub fn memory(&self) -> u32 {
        self.memory_mib.unwrap_or(match self.payload {
            Payload::Unikernel => 512,
            Payload::Linux => crate::profile::LINUX_DEFAULT_MEMORY_MIB,
        })
    }

    /// Seconds to wait for readiness: `--ready-timeout-s`, else the payload's default.
    pub fn ready_timeout_s(&self) -> u64 {
        self.ready_timeout_s.unwrap_or(match self.payload {
            Payload::Unikernel => 120,
            Payload::Linux => 300,
        })
    }
}

/// Why `pupa-host run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Arguments that do not fit together.
    #[error("{0}")]
    Usage(&'static str),
    /// A flag, the image or the manifest is wrong.
    #[error(transparent)]
    Check(#[from] checks::CheckError),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// The receipt journal could not be opened.
    #[error("cannot open the receipt journal {0}: {1}")]
    Journal(PathBuf, journal::JournalError),
    /// The client endpoint could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    /// The guest did not start.
    #[error("guest: {0}")]
    Guest(#[from] StartError),
    /// A thread could not be started.
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// `pupa-host run` with logging set up (`RUST_LOG`, default `info`, to stderr).
pub fn run_command(args: RunArgs) -> Result<(), RunError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // colour codes only for a terminal, not in a log file
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    run(args)
}

/// The guest backend `args` describe.
fn backend_for(
    args: &RunArgs,
    payload: Option<LinuxPayload>,
) -> Result<Box<dyn GuestBackend>, RunError> {
    let image = match (&args.image, args.guest_addr) {
        (None, Some(addr)) => return Ok(Box::new(ExternalGuest(addr))),
        (None, None) => {
            return Err(RunError::Usage(
                "give --image to boot a guest, or --guest-addr to relay to a running one",
            ))
        }
        (Some(image), _) => image,
    };
    let (network, guest_addr) =
        match (&args.tap, args.guest_addr) {
            (Some(ifname), Some(a)) => (
                Network::Tap {
                    ifname: ifname.clone(),
                },
                a,
            ),
            (Some(_), None) => {
                return Err(RunError::Usage(
                    "--tap needs --guest-addr (the guest's address on the TAP network)",
                ))
            }
            (None, Some(_)) => return Err(RunError::Usage(
                "--guest-addr with --image needs --tap (user networking forwards --forward-port)",
            )),
            (None, None) => (
                Network::UserForward {
                    host_port: args.forward_port,
                    guest_port: args.guest_port,
                },
                SocketAddr::from(([127, 0, 0, 1], args.forward_port)),
            ),
        };
    let mut vm = VmBackend::new(
        image.clone(),
        args.tee,
        args.vmm,
        args.memory(),
        args.vcpus,
        network,
        guest_addr,
        Duration::from_secs(args.ready_timeout_s()),
    );
    vm.payload = payload;
    vm.accel = args.accel;
    Ok(Box::new(vm))
}

/// What [`preflight`] found good.
struct Preflight {
    tls: Option<Arc<rustls::ServerConfig>>,
    journal: Option<Journal>,
    payload: Option<LinuxPayload>,
}

/// Everything checked before boot: flags, image (and manifest), the Linux payload, TLS files,
/// the journal.
fn preflight(args: &RunArgs) -> Result<Preflight, RunError> {
    checks::check_flags(args)?;
    let payload = checks::check_payload(args)?;
    if let Some(image) = &args.image {
        let bytes = checks::check_image(image, args.tee)?;
        if payload.is_some() {
            checks::check_image_for_payload(image, &bytes, args.tee)?;
        }
        if let Some(m) = &args.manifest {
            checks::check_manifest(m, image, &bytes)?;
        }
    } else if args.manifest.is_some() {
        return Err(RunError::Usage("--manifest needs --image"));
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k)?),
        _ => None,
    };
    let journal = match &args.receipts_log {
        Some(p) => Some(Journal::open(p).map_err(|e| RunError::Journal(p.clone(), e))?),
        None => None,
    };
    Ok(Preflight {
        tls,
        journal,
        payload,
    })
}

/// `pupa-host run`: serves until a signal.
pub fn run(args: RunArgs) -> Result<(), RunError> {
    // Signals first: Ctrl-C must work while the guest boots.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signal)?;
    }
    let Preflight {
        tls,
        journal,
        payload,
    } = preflight(&args)?;
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "client endpoint is not loopback and has no TLS (--tls-cert/--tls-key)");
    }
    let mut backend = backend_for(&args, payload)?;
    let sup = Supervision {
        poll: Duration::from_millis(100),
        health: (args.health_period_s > 0 && args.image.is_some()).then(|| HealthConfig {
            period: Duration::from_secs(args.health_period_s),
            deadline: Duration::from_secs(args.health_timeout_s),
            failures: args.health_failures,
        }),
        ready_timeout: Duration::from_secs(args.ready_timeout_s()),
    };
    let relay = Relay::new(
        RelayConfig {
            tls,
            max_connections: args.max_connections,
            ..RelayConfig::default()
        },
        journal,
        None,
    );
    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|e| RunError::Listen(args.listen, e))?;
    // Ready when the guest answers a Hello with its evidence (the probe closes its connection
    // cleanly, so it leaves no guest slot behind).
    let addr = start_guest(backend.as_mut(), &sup, &stop)?;
    relay.set_guest(Some(addr));
    let local = listener
        .local_addr()
        .map_err(|e| RunError::Listen(args.listen, e))?;
    tracing::info!(listen = %local, guest = %addr, "relaying");
    // One line on stdout for scripts and tests: where clients connect.
    println!("pupa-host: listening on {local}");
    let _ = std::io::Write::flush(&mut std::io::stdout());
    let r = relay.clone();
    thread::Builder::new()
        .name("relay-accept".into())
        .spawn(move || r.serve(listener))
        .map_err(RunError::Thread)?;
    supervise(&relay, backend.as_mut(), &sup, &stop);
    tracing::info!("signal received: stopping the guest");
    backend.stop();
    Ok(())
}
