//! Helpers for pupa's end-to-end tests: build the real image once per test process, boot it
//! under QEMU (KVM when it actually works here, else TCG) and capture the serial console.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pupa_host::profile::{self, Accel, LaunchConfig, Network, TeeKind, Vmm};
use pupa_host::vm::Guest;
use pupa_image::build::{self, BuildOptions, BuildOutput};
use pupa_image::deb::{self, LinuxLock, Unpacked};
use pupa_image::payload::{self, PayloadOptions, PayloadOutput};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn build_variant(name: &str, features: &[&str]) -> BuildOutput {
    let ws = workspace();
    let opts = BuildOptions {
        src: ws.clone(),
        out: ws.join("target").join(format!("pupa-test-{name}")),
        // one target dir per variant: the guest binary's path does not depend on features
        target_dir: Some(ws.join("target").join(format!("pupa-test-fw-{name}"))),
        features: features.iter().map(|s| s.to_string()).collect(),
        skip_measurements: false,
        cargo_home: None,
    };
    build::build(&opts).unwrap_or_else(|e| panic!("building the {name} image failed: {e}"))
}

/// The production image (no test features), built once per test process.
pub fn image() -> &'static BuildOutput {
    static IMG: OnceLock<BuildOutput> = OnceLock::new();
    IMG.get_or_init(|| build_variant("release", &[]))
}

/// The image with the test-only `fault-test` feature.
pub fn fault_test_image() -> &'static BuildOutput {
    static IMG: OnceLock<BuildOutput> = OnceLock::new();
    IMG.get_or_init(|| build_variant("fault", &["fault-test"]))
}

/// The benchmark-only minimal image (prints one line and powers off).
pub fn hello_image() -> &'static BuildOutput {
    static IMG: OnceLock<BuildOutput> = OnceLock::new();
    IMG.get_or_init(|| build_variant("hello", &["bench-hello"]))
}

/// KVM if a real boot under it works here, else TCG (decided once).
pub fn accel() -> Accel {
    static ACCEL: OnceLock<Accel> = OnceLock::new();
    *ACCEL.get_or_init(|| {
        if profile::kvm_works(&image().image, Duration::from_secs(10)) {
            eprintln!("pupa-tests: KVM works, using it");
            Accel::Kvm
        } else {
            eprintln!("pupa-tests: KVM unavailable or broken here, using TCG");
            Accel::Tcg
        }
    })
}

/// The real image booted with a NIC: user networking forwards a free port of 127.0.0.1 to the
/// guest's job port. Returns once the guest printed `pupa: ready` (its console echoed as
/// `guest | …`), with the forwarded port.
pub fn boot_with_nic() -> (Guest, u16) {
    boot_with_nic_vcpus(1)
}

/// [`boot_with_nic`] with `vcpus` vCPUs (multi-threaded TCG where KVM does not work).
pub fn boot_with_nic_vcpus(vcpus: u32) -> (Guest, u16) {
    boot_with_nic_smp(vcpus, &vcpus.to_string())
}

/// As [`boot_with_nic_vcpus`] with QEMU's `-smp` argument `smp` (a topology such as
/// `6,sockets=2,cores=3`), which must give `vcpus` boot vCPUs.
pub fn boot_with_nic_smp(vcpus: u32, smp: &str) -> (Guest, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image: &image().image,
        memory_mib: 512,
        vcpus,
        accel: accel(),
        network: Network::UserForward {
            host_port: port,
            guest_port: 7000,
        },
        debug_exit: true,
        fw_cfg: vec![],
        payload: None,
    };
    let mut launch = profile::command(&cfg);
    let at = launch.args.iter().position(|a| a == "-smp").expect("-smp") + 1;
    launch.args[at] = smp.to_string();
    let mut cmd = Command::new(&launch.program);
    cmd.args(&launch.args);
    let mut guest = Guest::spawn_command(cmd, true).unwrap_or_else(|e| panic!("start qemu: {e}"));
    guest
        .wait_for(
            "pupa: ready",
            Duration::from_secs(120),
            |l| l == "pupa: ready",
            |l| println!("guest | {l}"),
        )
        .unwrap_or_else(|e| panic!("guest ready: {e}"));
    (guest, port)
}

/// What a boot produced.
#[derive(Debug)]
pub struct Boot {
    /// The serial console, `\r` removed.
    pub serial: String,
    /// QEMU's exit status (`None` if killed at the timeout).
    pub status: Option<i32>,
    /// Wall time from spawning QEMU to its exit.
    pub wall: Duration,
}

/// Boot `image` once, without network, and wait for QEMU to exit (or kill it at `timeout`).
pub fn boot(image: &Path, accel: Accel, fw_cfg: &[(&str, &str)], timeout: Duration) -> Boot {
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image,
        memory_mib: 256,
        vcpus: 1,
        accel,
        network: Network::None,
        debug_exit: true,
        fw_cfg: fw_cfg
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect(),
        payload: None,
    };
    let start = Instant::now();
    let mut guest = Guest::start(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let status = guest.wait_exit(timeout, |_| {});
    let wall = start.elapsed();
    Boot {
        serial: guest.console.join("\n"),
        status,
        wall,
    }
}

/// QEMU's exit status for an isa-debug-exit `code`.
pub fn debug_exit_status(code: u32) -> i32 {
    ((code << 1) | 1) as i32
}

/// Copy the source tree (the files git tracks, plus untracked files it does not ignore) to
/// `dst`: what a fresh clone of this checkout would hold.
pub fn copy_source(dst: &Path) -> std::io::Result<usize> {
    let ws = workspace();
    let out = Command::new("git")
        .current_dir(&ws)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()?;
    if !out.status.success() {
        return Err(std::io::Error::other("git ls-files failed"));
    }
    let mut n = 0;
    for rel in out.stdout.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        let rel = Path::new(std::str::from_utf8(rel).map_err(std::io::Error::other)?);
        let from = ws.join(rel);
        if !from.is_file() {
            continue; // deleted in the work tree
        }
        let to = dst.join(rel);
        std::fs::create_dir_all(to.parent().expect("a file has a parent"))?;
        std::fs::copy(&from, &to)?;
        n += 1;
    }
    Ok(n)
}

/// The `pupa-host` binary of this workspace, built (with the profile the tests run under) if
/// it is not there yet.
pub fn pupa_host_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let ws = workspace();
        // target/<profile>/deps/<this test> → target/<profile>/pupa-host
        let exe = std::env::current_exe().expect("test executable");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| ws.join("target").join("debug"));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&ws)
            .args(["build", "--locked", "-p", "pupa-host", "--bin", "pupa-host"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo");
        assert!(st.success(), "building pupa-host failed");
        profile_dir.join("pupa-host")
    })
    .clone()
}

/// `image/linux.lock`: the pinned Debian kernel package.
pub fn linux_lock() -> LinuxLock {
    LinuxLock::read(&workspace()).unwrap_or_else(|e| panic!("{e}"))
}

/// The pinned kernel package, SHA-256-checked and unpacked by `pupa_image::deb` in the cache
/// `pupa-image build --payload linux` uses (target/linux-deb).
pub fn pinned_linux_package() -> Unpacked {
    deb::fetch(&linux_lock(), &workspace().join("target/linux-deb"))
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The Linux payload of the production image ([`image`]), built once per test process by
/// `pupa_image::payload` (what `pupa-image build --payload linux --no-gpu` runs) into
/// target/pupa-test-linux beside a copy of the image and its manifest: the pinned kernel, the
/// initramfs with the static pupa-worker and the modules, the default command line.
pub fn linux_payload() -> &'static PayloadOutput {
    static P: OnceLock<PayloadOutput> = OnceLock::new();
    P.get_or_init(|| {
        let ws = workspace();
        let img = image();
        let out = ws.join("target/pupa-test-linux");
        std::fs::create_dir_all(&out).expect("payload dir");
        std::fs::copy(&img.image, out.join("pupa.fd")).expect("copy pupa.fd");
        std::fs::copy(&img.manifest, out.join("manifest.json")).expect("copy manifest.json");
        let p = payload::build(&PayloadOptions::new(&ws, &out))
            .unwrap_or_else(|e| panic!("the Linux payload: {e}"));
        println!(
            "pupa-tests: Linux payload: initramfs {} bytes, {} modules, static pupa-worker {} \
             bytes (cargo {:.1} s){}",
            p.initrd_size,
            p.modules.load.len(),
            p.worker_size,
            p.worker_build_time.as_secs_f64(),
            p.snp_note
                .as_ref()
                .map_or(String::new(), |n| format!("; no SNP digests: {n}"))
        );
        p
    })
}

/// A free TCP port on 127.0.0.1 (bound and released; another process could take it first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// `pupa-host run` over the production image as a child process, killed (and waited for) on
/// drop.
pub struct HostProcess {
    pub child: Child,
    /// The relay's listen address, from its one stdout line.
    pub addr: String,
    /// From spawning `pupa-host` to its stdout line: the guest booted, printed its ready line
    /// and answered a health probe (`Hello` → `Evidence`) through the forward.
    pub ready: Duration,
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pupa-host run` with the production image, journaling receipts to `journal`, and
/// waits for its one stdout line ("pupa-host: listening on ADDR", once the guest serves).
pub fn start_host(journal: &Path) -> HostProcess {
    start_host_with(journal, &accel_args(), None)
}

/// `--accel` for `pupa-host run`: what [`accel`] found here, so that pupa-host does not probe
/// KVM again on every start (a 20 s boot attempt where /dev/kvm opens but cannot run a guest).
pub fn accel_args() -> Vec<std::ffi::OsString> {
    let a = match accel() {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    vec!["--accel".into(), a.into()]
}

/// [`start_host`] with `extra` arguments after the defaults (e.g. `--payload linux
/// --payload-dir DIR`), and its stderr (the log, with the guest's console lines under target
/// `guest`) appended to `log` instead of discarded.
pub fn start_host_with(
    journal: &Path,
    extra: &[std::ffi::OsString],
    log: Option<&Path>,
) -> HostProcess {
    let stderr = match log {
        Some(p) => Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display())),
        ),
        None => Stdio::null(),
    };
    let t0 = Instant::now();
    let mut child = Command::new(pupa_host_bin())
        .args(["run", "--image"])
        .arg(&image().image)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--forward-port", &free_port().to_string()])
        .arg("--receipts-log")
        .arg(journal)
        .args(extra)
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn pupa-host");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("pupa-host stdout");
    let ready = t0.elapsed();
    let addr = line
        .trim()
        .strip_prefix("pupa-host: listening on ")
        .unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            let why = log
                .and_then(|p| std::fs::read_to_string(p).ok())
                .map(|l| {
                    let lines: Vec<&str> = l.lines().collect();
                    lines[lines.len().saturating_sub(40)..].join("\n")
                })
                .unwrap_or_default();
            panic!("pupa-host did not start: {line:?}\n{why}")
        })
        .to_string();
    HostProcess { child, addr, ready }
}
