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
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let cfg = LaunchConfig {
        tee: TeeKind::Dev,
        vmm: Vmm::Qemu,
        image: &image().image,
        memory_mib: 512,
        vcpus: 1,
        accel: accel(),
        network: Network::UserForward {
            host_port: port,
            guest_port: 7000,
        },
        debug_exit: true,
        fw_cfg: vec![],
        payload: None,
    };
    let mut guest = Guest::start(&cfg).unwrap_or_else(|e| panic!("start qemu: {e}"));
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

/// `image/linux.lock`: the pinned Debian kernel package (`key = value` lines).
pub fn linux_lock() -> std::collections::HashMap<String, String> {
    let text = std::fs::read_to_string(workspace().join("image/linux.lock")).expect("linux.lock");
    text.lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pinned kernel package unpacked under `cache` (`dpkg-deb -x`): its `.deb` from `cache`,
/// from tests/tests/linux_boot.rs's cache, or `apt-get download`, its SHA-256 checked against
/// image/linux.lock first. Returns the unpacked root (`boot/vmlinuz-…`, `lib/modules/…`).
pub fn pinned_linux_package(cache: &Path) -> PathBuf {
    use pupa_measurements::hexfmt::encode as hex;
    use sha2::{Digest, Sha256};
    let lock = linux_lock();
    std::fs::create_dir_all(cache).expect("cache dir");
    let shared = workspace().join("target/linux-boot").join(&lock["deb"]);
    let mut deb = cache.join(&lock["deb"]);
    if !deb.exists() && shared.exists() {
        deb = shared;
    } else if !deb.exists() {
        let spec = format!("{}={}", lock["package"], lock["version"]);
        run_ok(
            Command::new("apt-get")
                .current_dir(cache)
                .args(["download", &spec]),
        );
    }
    let got = hex(&Sha256::digest(std::fs::read(&deb).expect("read the .deb")));
    assert_eq!(
        got,
        lock["sha256"],
        "{} does not match image/linux.lock",
        deb.display()
    );
    let root = cache.join("deb");
    if !root.join(&lock["vmlinuz"]).exists() {
        run_ok(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    }
    root
}

/// The Rust toolchain with the x86_64-unknown-linux-musl standard library (the pinned nightly
/// has none): `PUPA_MUSL_TOOLCHAIN`, else 1.95.0 (tests/bootstrap.sh installs it).
pub const MUSL_TOOLCHAIN: &str = "1.95.0";

/// A static `pupa-worker` (x86_64-unknown-linux-musl, release, default CPU features), built
/// into target/musl with [`MUSL_TOOLCHAIN`].
pub fn static_worker() -> PathBuf {
    let ws = workspace();
    let tc = std::env::var("PUPA_MUSL_TOOLCHAIN").unwrap_or_else(|_| MUSL_TOOLCHAIN.into());
    let target_dir = ws.join("target/musl");
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&ws)
        .arg(format!("+{tc}"))
        .args([
            "build",
            "--locked",
            "--release",
            "-p",
            "pupa-worker",
            "--bin",
            "pupa-worker",
        ])
        .args(["--target", "x86_64-unknown-linux-musl", "--target-dir"])
        .arg(&target_dir);
    for v in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC",
    ] {
        cmd.env_remove(v);
    }
    for v in [
        "RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
    ] {
        cmd.env_remove(v);
    }
    let st = cmd.status().expect("run cargo");
    assert!(
        st.success(),
        "building the static pupa-worker failed (toolchain {tc})"
    );
    target_dir.join("x86_64-unknown-linux-musl/release/pupa-worker")
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
    let mut child = Command::new(pupa_host_bin())
        .args(["run", "--image"])
        .arg(&image().image)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--forward-port", &free_port().to_string()])
        .arg("--receipts-log")
        .arg(journal)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pupa-host");
    let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("pupa-host stdout");
    let addr = line
        .trim()
        .strip_prefix("pupa-host: listening on ")
        .unwrap_or_else(|| panic!("pupa-host did not start: {line:?}"))
        .to_string();
    HostProcess { child, addr }
}
