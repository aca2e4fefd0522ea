//! `pupa-host run`: boot the guest, expose the client endpoint, relay sealed jobs, restart a
//! guest that dies.
//!
//! - [`proxy`]: the relay proper (client connections ⇄ guest connections, never decrypting);
//! - [`track`]: frame-header bookkeeping of the client → guest stream;
//! - [`tls`]: rustls for remote clients;
//! - [`journal`]: receipts on disk before clients see them;
//! - this module: the command's arguments, the guest backends and the supervisor.
//!
//! Networking: the development profile uses QEMU user networking with `hostfwd` on 127.0.0.1
//! (`--forward-port`), so only this host reaches the guest. Production uses a TAP device
//! (`--tap IFNAME`, set up by the operator as in `qemu/README.md`) and `--guest-addr` naming the
//! guest's address on it. Clients connect to `--listen`; use `--tls-cert/--tls-key` whenever
//! that is not a loopback address.

pub mod journal;
pub mod proxy;
pub mod tls;
pub mod track;

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::profile::{self, Accel, LaunchConfig, Network, Tee, Vmm};
use crate::vm;

pub use journal::Journal;
pub use proxy::{Relay, RelayConfig, RelayStats, JOB_LOST_DETAIL};

/// Arguments of `pupa-host run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// TEE the VM is launched as (`none`: plain VM with insecure dev evidence).
    #[arg(long, value_enum, default_value = "none")]
    pub tee: Tee,
    /// VMM that launches the guest.
    #[arg(long, value_enum, default_value = "qemu")]
    pub vmm: Vmm,
    /// The firmware image (pupa.fd). Without it, `--guest-addr` must name a guest already
    /// running (started by another tool).
    #[arg(long)]
    pub image: Option<PathBuf>,
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
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 512)]
    pub memory_mib: u32,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 1)]
    pub vcpus: u32,
    /// Seconds to wait for the guest to print `pupa: ready`.
    #[arg(long, default_value_t = 120)]
    pub ready_timeout_s: u64,
    /// Receipt journal (JSON lines, fsync'd before a receipt reaches its client).
    #[arg(long)]
    pub receipts_log: Option<PathBuf>,
    /// Most client connections at once.
    #[arg(long, default_value_t = 256)]
    pub max_connections: usize,
}

/// Why `pupa-host run` stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Arguments that do not fit together.
    #[error("{0}")]
    Usage(&'static str),
    /// TLS files.
    #[error(transparent)]
    Tls(#[from] tls::TlsSetupError),
    /// The receipt journal could not be opened.
    #[error("cannot open the receipt journal {0}: {1}")]
    Journal(PathBuf, std::io::Error),
    /// The client endpoint could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Listen(SocketAddr, std::io::Error),
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    /// The guest did not start.
    #[error("guest: {0}")]
    Guest(String),
}

/// A guest the supervisor can start, watch and stop: a VM, or (in tests) a host process.
pub trait GuestBackend: Send {
    /// Starts the guest and waits until it serves; returns where its job port is reached.
    fn start(&mut self) -> Result<SocketAddr, String>;
    /// Whether the guest is still running.
    fn is_running(&mut self) -> bool;
    /// Stops it.
    fn stop(&mut self);
}

/// A guest VM launched from a profile (`profile::command`) and watched through `vm::Guest`.
pub struct VmBackend {
    /// The firmware image.
    pub image: PathBuf,
    /// TEE kind.
    pub tee: Tee,
    /// VMM.
    pub vmm: Vmm,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Networking.
    pub network: Network,
    /// Where the job port is reached once the guest is up.
    pub guest_addr: SocketAddr,
    /// How long to wait for `pupa: ready`.
    pub ready_timeout: Duration,
    accel: Option<Accel>,
    guest: Option<vm::Guest>,
}

impl VmBackend {
    fn accel(&mut self) -> Accel {
        if self.tee != Tee::None {
            return Accel::Kvm;
        }
        *self.accel.get_or_insert_with(|| {
            if profile::kvm_works(&self.image, Duration::from_secs(20)) {
                Accel::Kvm
            } else {
                tracing::info!("KVM does not run the image here; using TCG");
                Accel::Tcg
            }
        })
    }
}

impl GuestBackend for VmBackend {
    fn start(&mut self) -> Result<SocketAddr, String> {
        let accel = self.accel();
        let cfg = LaunchConfig {
            tee: self.tee,
            vmm: self.vmm,
            image: &self.image,
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            accel,
            network: self.network.clone(),
            debug_exit: false,
            fw_cfg: vec![],
        };
        let mut g = vm::Guest::start(&cfg).map_err(|e| e.to_string())?;
        g.wait_for(
            "pupa: ready",
            self.ready_timeout,
            |l| l.contains("pupa: ready"),
            |l| tracing::info!(target: "guest", "{l}"),
        )
        .map_err(|e| e.to_string())?;
        self.guest = Some(g);
        Ok(self.guest_addr)
    }

    fn is_running(&mut self) -> bool {
        self.guest.as_mut().is_some_and(|g| g.is_running())
    }

    fn stop(&mut self) {
        if let Some(mut g) = self.guest.take() {
            g.stop();
        }
    }
}

/// Watches the guest every `period`; when it is gone, cuts the relay's guest connections (each
/// client with a job in flight gets the "job lost" error), restarts it (with back-off) and
/// points the relay at it again. Returns when `stop` is set.
pub fn supervise(
    relay: &Relay,
    backend: &mut dyn GuestBackend,
    period: Duration,
    stop: &AtomicBool,
) {
    let mut backoff = Duration::from_millis(200);
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(period);
        if backend.is_running() {
            continue;
        }
        relay.set_guest(None);
        let cut = relay.guest_lost();
        tracing::warn!(connections = cut, "guest is not running; restarting it");
        backend.stop();
        loop {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let t = Instant::now();
            match backend.start() {
                Ok(addr) => {
                    tracing::info!(%addr, ms = t.elapsed().as_millis() as u64, "guest restarted");
                    relay.set_guest(Some(addr));
                    backoff = Duration::from_millis(200);
                    break;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in_ms = backoff.as_millis() as u64, "guest restart failed");
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}

/// A guest run by someone else: only checks that its port still accepts connections.
struct ExternalGuest(SocketAddr);

impl GuestBackend for ExternalGuest {
    fn start(&mut self) -> Result<SocketAddr, String> {
        Ok(self.0)
    }
    fn is_running(&mut self) -> bool {
        true
    }
    fn stop(&mut self) {}
}

/// `pupa-host run` with logging set up (`RUST_LOG`, default `info`, to stderr).
pub fn run_command(args: RunArgs) -> Result<(), RunError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    run(args)
}

/// `pupa-host run`: serves until killed.
pub fn run(args: RunArgs) -> Result<(), RunError> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls::server_config(c, k)?),
        _ => None,
    };
    if tls.is_none() && !args.listen.ip().is_loopback() {
        tracing::warn!(listen = %args.listen, "client endpoint is not loopback and has no TLS (--tls-cert/--tls-key)");
    }
    let journal = match &args.receipts_log {
        Some(p) => Some(Journal::open(p).map_err(|e| RunError::Journal(p.clone(), e))?),
        None => None,
    };
    let mut backend: Box<dyn GuestBackend> = match (&args.image, args.guest_addr) {
        (None, Some(addr)) => Box::new(ExternalGuest(addr)),
        (None, None) => {
            return Err(RunError::Usage(
                "give --image to boot a guest, or --guest-addr to relay to a running one",
            ))
        }
        (Some(image), addr) => {
            let (network, guest_addr) = match (&args.tap, addr) {
                (Some(ifname), Some(a)) => (Network::Tap { ifname: ifname.clone() }, a),
                (Some(_), None) => return Err(RunError::Usage("--tap needs --guest-addr (the guest's address on the TAP network)")),
                (None, Some(_)) => return Err(RunError::Usage("--guest-addr with --image needs --tap (user networking forwards --forward-port)")),
                (None, None) => (
                    Network::UserForward { host_port: args.forward_port, guest_port: args.guest_port },
                    SocketAddr::from(([127, 0, 0, 1], args.forward_port)),
                ),
            };
            Box::new(VmBackend {
                image: image.clone(),
                tee: args.tee,
                vmm: args.vmm,
                memory_mib: args.memory_mib,
                vcpus: args.vcpus,
                network,
                guest_addr,
                ready_timeout: Duration::from_secs(args.ready_timeout_s),
                accel: None,
                guest: None,
            })
        }
    };
    let cfg = RelayConfig {
        tls,
        max_connections: args.max_connections,
        ..RelayConfig::default()
    };
    let relay = Relay::new(cfg, journal, None);
    // A killed `pupa-host` must not leave its VM running: signals end the supervisor loop,
    // which then stops the guest.
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signal)?;
    }
    let listener =
        std::net::TcpListener::bind(args.listen).map_err(|e| RunError::Listen(args.listen, e))?;
    let addr = backend.start().map_err(RunError::Guest)?;
    // The guest's port may take a moment to accept after the ready line.
    let t = Instant::now();
    while TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err()
        && t.elapsed() < Duration::from_secs(10)
    {
        thread::sleep(Duration::from_millis(50));
    }
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
        .map_err(|e| RunError::Guest(e.to_string()))?;
    supervise(&relay, backend.as_mut(), Duration::from_millis(100), &stop);
    tracing::info!("signal received: stopping the guest");
    backend.stop();
    Ok(())
}
