//! `pupa-worker` as the only process of a Linux VM (PID 1, `/init` of the initramfs that
//! `pupa-image initramfs` writes): mounts proc, sysfs, devtmpfs and configfs, loads the
//! modules the initramfs lists in `/lib/modules/pupa.order` (in that order, finit_module),
//! configures the NIC from the kernel command line ([`cmdline`]: static IPv4 address and default
//! route, or both by DHCP ([`dhcp`], one lease at boot, never renewed)), then serves like
//! `pupa-worker --listen … --tee …`. With NVIDIA's driver loaded it creates the device nodes
//! libcuda and NVML open ([`nvidia`]).
//!
//! PID 1 must never exit (the kernel panics): any fatal error prints one line
//! (`pupa-init: fatal: …`) to the console and powers the machine off. SIGCHLD is ignored, so
//! a child (there are none) could not linger as a zombie.

pub mod cmdline;
pub mod dhcp;
pub mod nvidia;
mod sys;

use std::fs::File;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use cmdline::{BootOptions, Cidr, IpConfig};
use pupa_worker::{Args, TeeChoice};

/// The module list of the initramfs: one file name per line, relative to its directory.
pub const MODULE_LIST: &str = "/lib/modules/pupa.order";
/// How long PID 1 waits for the NIC to appear after its driver loaded.
const NIC_WAIT: Duration = Duration::from_secs(10);

/// One line to the console (the kernel opened /dev/console as stdout for /init).
fn say(msg: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "pupa-init: {msg}");
    let _ = out.flush();
}

/// Prints `pupa-init: fatal: MSG` and powers off.
fn fatal(msg: &str) -> ! {
    say(&format!("fatal: {msg}; powering off"));
    sys::power_off()
}

/// The PID 1 entry point: sets the machine up, serves, and powers off if anything fails.
pub fn main() -> ! {
    if let Err(e) = sys::ignore_sigchld() {
        fatal(&format!("SIGCHLD: {e}"));
    }
    let start = Instant::now();
    if let Err(e) = setup() {
        fatal(&e);
    }
    let opts = match std::fs::read_to_string("/proc/cmdline") {
        Ok(line) => cmdline::parse(&line).unwrap_or_else(|e| fatal(&format!("cmdline: {e}"))),
        Err(e) => fatal(&format!("/proc/cmdline: {e}")),
    };
    if let Err(e) = mount_configfs(opts.tee) {
        fatal(&e);
    }
    let (iface, ip, gateway) = network(&opts).unwrap_or_else(|e| fatal(&e));
    say(&format!(
        "{iface} {}/{} gw {}, set up in {:?}",
        ip.addr,
        ip.prefix,
        gateway.map_or("none".into(), |g| g.to_string()),
        start.elapsed()
    ));
    serve(&opts)
}

/// Mounts proc, sysfs and devtmpfs, then loads the listed modules.
fn setup() -> Result<(), String> {
    for (fstype, dir) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        std::fs::create_dir_all(dir).map_err(|e| format!("mkdir {dir}: {e}"))?;
        sys::mount(fstype, dir, fstype).map_err(|e| format!("mount {fstype} on {dir}: {e}"))?;
    }
    load_modules(Path::new(MODULE_LIST))?;
    match nvidia::create_nodes() {
        Ok(0) => {}
        Ok(n) => say(&format!("nvidia: device nodes for {n} GPU(s)")),
        // libcuda and NVML then fail with their own message; the CPU kernels still serve
        Err(e) => say(&format!("nvidia: device nodes: {e}")),
    }
    Ok(())
}

/// Loads each module named in `list` (absent list: none). A module already present
/// (EEXIST: built in or loaded) is not an error; nor is one whose hardware is absent (ENODEV,
/// e.g. sev-guest outside an SNP guest, tdx-guest outside a TD): it is reported and skipped,
/// and evidence that needs it fails later with its own message. A module that then fails with
/// ENOENT (unknown symbols) after such a skip is skipped too: it needs the skipped one
/// (nvidia-uvm after nvidia on a machine without an NVIDIA GPU). A name ending in `.xz`, `.zst`
/// or `.gz` is handed to the kernel compressed (`MODULE_INIT_COMPRESSED_FILE`).
fn load_modules(list: &Path) -> Result<(), String> {
    let text = match std::fs::read_to_string(list) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", list.display())),
    };
    let dir = list.parent().unwrap_or(Path::new("/"));
    let mut skipped = false;
    for name in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let path = dir.join(name);
        let file = File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let flags = if [".xz", ".zst", ".gz"].iter().any(|s| name.ends_with(s)) {
            sys::MODULE_INIT_COMPRESSED_FILE
        } else {
            0
        };
        match sys::finit_module(&file, flags) {
            Ok(()) => say(&format!("loaded {name}")),
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => {
                say(&format!("skipped {name}: no such device on this machine"));
                skipped = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) && skipped => {
                say(&format!(
                    "skipped {name}: {e} (unknown symbols: a module it needs was skipped)"
                ));
            }
            Err(e) => return Err(format!("finit_module {}: {e}", path.display())),
        }
    }
    Ok(())
}

/// Mounts configfs on /sys/kernel/config (configfs-tsm lives there); required for SNP/TDX
/// evidence, only warned about for `dev`.
fn mount_configfs(tee: TeeChoice) -> Result<(), String> {
    let dir = "/sys/kernel/config";
    match sys::mount("configfs", dir, "configfs") {
        Ok(()) => Ok(()),
        Err(e) if matches!(tee, TeeChoice::Dev | TeeChoice::Auto) => {
            say(&format!(
                "no configfs on {dir} ({e}); not needed for pupa.tee=dev (auto: dev then)"
            ));
            Ok(())
        }
        Err(e) => Err(format!("mount configfs on {dir}: {e}")),
    }
}

/// The interface to configure: `pupa.iface`, else the first non-loopback one in name order.
fn find_iface(opts: &BootOptions) -> Option<String> {
    if let Some(i) = &opts.iface {
        return Path::new("/sys/class/net")
            .join(i)
            .exists()
            .then(|| i.clone());
    }
    let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "lo")
        .collect();
    names.sort();
    names.into_iter().next()
}

/// Brings lo and the NIC up with the static address and default route, or those of a DHCP
/// lease; returns the NIC's name, address and gateway.
fn network(opts: &BootOptions) -> Result<(String, Cidr, Option<Ipv4Addr>), String> {
    let deadline = Instant::now() + NIC_WAIT;
    let iface = loop {
        if let Some(i) = find_iface(opts) {
            break i;
        }
        if Instant::now() > deadline {
            return Err(format!("no network interface after {NIC_WAIT:?}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ctl = sys::NetCtl::open().map_err(|e| format!("socket: {e}"))?;
    ctl.up("lo").map_err(|e| format!("lo up: {e}"))?;
    let (ip, gateway) = match opts.ip {
        IpConfig::Static(ip) => (ip, opts.gateway),
        IpConfig::Dhcp => {
            ctl.up(&iface).map_err(|e| format!("{iface} up: {e}"))?;
            let mac = ctl
                .hwaddr(&iface)
                .map_err(|e| format!("dhcp: {iface}: MAC address: {e}"))?;
            let sock = sys::dhcp_socket(&iface)
                .map_err(|e| format!("dhcp: {iface}: socket on port 68: {e}"))?;
            let lease = dhcp::obtain(&sock, &iface, &mac)?;
            say(&format!(
                "dhcp: {iface} leased {}/{} router {} from {} (lease {}; not renewed)",
                lease.addr,
                lease.prefix,
                lease.router.map_or("none".into(), |g| g.to_string()),
                lease.server,
                lease
                    .lease_secs
                    .map_or("unlimited".into(), |s| format!("{s} s"))
            ));
            let ip = Cidr {
                addr: lease.addr,
                prefix: lease.prefix,
            };
            (ip, lease.router)
        }
    };
    ctl.set_ipv4(&iface, ip.addr, ip.netmask())
        .map_err(|e| format!("{iface}: address: {e}"))?;
    ctl.up(&iface).map_err(|e| format!("{iface} up: {e}"))?;
    if let Some(gw) = gateway {
        ctl.default_route(gw)
            .map_err(|e| format!("default route via {gw}: {e}"))?;
    }
    Ok((iface, ip, gateway))
}

/// Where an initramfs keeps the CUDA kernels built ahead of time (`--cuda-cubins`).
const CUDA_CUBINS: &str = "/lib/pupa/cuda";

/// Serves as `pupa-worker --listen … --tee … --compute …` would; powers off when it ends.
fn serve(opts: &BootOptions) -> ! {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .init();
    // through the parser, so that options added to `Args` later keep their defaults
    let name = |v: Option<clap::builder::PossibleValue>| v.map(|v| v.get_name().to_string());
    let mut argv = vec![
        "pupa-worker".to_string(),
        format!("--listen={}", opts.listen),
        format!(
            "--tee={}",
            name(opts.tee.to_possible_value()).unwrap_or_default()
        ),
        format!(
            "--compute={}",
            name(opts.compute.to_possible_value()).unwrap_or_default()
        ),
    ];
    // An initramfs that carries the kernels built ahead of time (for the R535 driver) gets
    // them used; NVRTC is not in the payload.
    if std::path::Path::new(CUDA_CUBINS).is_dir() {
        argv.push(format!("--cuda-cubins={CUDA_CUBINS}"));
    }
    let args = Args::try_parse_from(argv).unwrap_or_else(|e| fatal(&format!("arguments: {e}")));
    let stop = AtomicBool::new(false);
    match pupa_worker::run(&args, &stop) {
        Ok(()) => fatal("the worker stopped"),
        Err(e) => fatal(&format!("worker: {e}")),
    }
}
