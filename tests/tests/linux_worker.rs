//! The Linux payload end to end: the production firmware (pupa_tests::image()) boots the
//! pinned Debian kernel (image/linux.lock) through QEMU's `-kernel/-initrd/-append` with a
//! deterministic initramfs (`pupa_image::initramfs`) whose `/init` is a static pupa-worker
//! (x86_64-unknown-linux-musl) and whose modules are virtio-net's, from the same `.deb`.
//! pupa-worker, as PID 1, mounts, loads the modules, configures the NIC from the command line
//! and serves; the host client fetches the dev evidence through user networking's port
//! forward and runs a sealed matmul job with a receipt. A command line without an address
//! makes PID 1 print one fatal line and power the VM off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use pupa_host::client::{fetch_and_verify, jobspec::JobSpec, run_job, Connection, EvidencePolicy};
use pupa_host::profile::{self, LaunchConfig, Network, TeeKind, Vmm};
use pupa_host::vm::Guest;
use pupa_image::initramfs;
use pupa_tests::{accel, image, linux_lock, pinned_linux_package, static_worker, workspace};

const CMDLINE: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                       pupa.listen=0.0.0.0:7000 pupa.tee=dev";
/// Kernel boot under TCG takes tens of seconds; this bounds the whole boot.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// virtio-net and what it depends on (`depends=` of each module's modinfo), in load order,
/// relative to lib/modules/VERSION/kernel; configfs for configfs-tsm.
const MODULES: &[&str] = &[
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
    "fs/configfs/configfs.ko",
];

fn cache() -> PathBuf {
    workspace().join("target/linux-worker")
}

/// The kernel and the initramfs, made once per test process.
fn payload() -> (PathBuf, PathBuf) {
    static PAYLOAD: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    PAYLOAD.get_or_init(make_payload).clone()
}

/// The kernel and the initramfs (built twice: the two must be identical).
fn make_payload() -> (PathBuf, PathBuf) {
    let lock = linux_lock();
    let root = pinned_linux_package(&cache());
    let version = lock["vmlinuz"].trim_start_matches("boot/vmlinuz-");
    let moddir = root.join("lib/modules").join(version);
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let mut modules = Vec::new();
    for m in MODULES {
        let rel = format!("kernel/{m}");
        if builtin.lines().any(|l| l == rel) {
            continue; // built into this kernel: nothing to load
        }
        let name = Path::new(m)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        modules.push((name, std::fs::read(moddir.join(&rel)).unwrap()));
    }
    let init = std::fs::read(static_worker()).unwrap();
    let a = initramfs::payload(&init, &modules).unwrap();
    let b = initramfs::payload(&init, &modules).unwrap();
    assert!(a == b, "two initramfs builds differ");
    println!(
        "linux_worker: initramfs {} bytes ({} modules, /init {} bytes)",
        a.len(),
        modules.len(),
        init.len()
    );
    let path = cache().join("initramfs.cpio");
    std::fs::write(&path, a).unwrap();
    (root.join(&lock["vmlinuz"]), path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Starts the production firmware with the kernel, initrd and `cmdline`, the host's `port`
/// forwarded to the guest's 7000.
fn start(kernel: &Path, initrd: &Path, cmdline: &str, port: u16) -> Guest {
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
    let l = profile::command(&cfg);
    let mut cmd = Command::new(&l.program);
    cmd.args(&l.args)
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", cmdline]);
    Guest::spawn_command(cmd, false).unwrap_or_else(|e| panic!("start qemu: {e}"))
}

#[test]
fn the_firmware_boots_linux_with_pupa_worker_as_init_and_serves_a_sealed_job() {
    let (kernel, initrd) = payload();
    let port = free_port();
    let t0 = Instant::now();
    let mut guest = start(&kernel, &initrd, CMDLINE, port);
    guest
        .wait_for(
            "pupa-worker: listening",
            READY_TIMEOUT,
            |l| l.starts_with("pupa-worker: listening on 0.0.0.0:7000"),
            |l| println!("guest | {l}"),
        )
        .unwrap_or_else(|e| panic!("the worker did not get ready: {e}"));
    let ready = t0.elapsed();
    let console = guest.console.join("\n");
    assert!(
        console.contains("pupa: linux entering startup_64 at 0x"),
        "not our firmware?"
    );
    assert!(
        !console.contains("pupa: ready"),
        "the unikernel runtime must not start"
    );
    for m in MODULES.iter().filter(|m| m.contains("virtio_net")) {
        let name = Path::new(m).file_name().unwrap().to_string_lossy();
        assert!(
            console.contains(&format!("pupa-init: loaded {name}")),
            "{name}"
        );
    }
    assert!(console.contains("pupa-init: eth0 10.0.2.15/24 gw 10.0.2.2"));

    let t1 = Instant::now();
    let addr = format!("127.0.0.1:{port}");
    let mut c = Connection::connect(&addr, None, Duration::from_secs(120)).expect("connect");
    let w = fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).expect("dev evidence");
    assert_eq!(w.tee, "insecure-dev");
    let spec =
        JobSpec::from_json(r#"{"op":"matmul","m":64,"n":64,"k":64,"dtype":"f32","seed":14}"#)
            .unwrap();
    let built = spec.build().unwrap();
    let out = run_job(&mut c, &w, built.job).expect("the sealed job");
    let check = spec.check(&out.result).unwrap();
    assert!(check.passed, "{check:?}");
    assert!(
        out.receipt.statement.receipt.units > 0,
        "a receipt for the job"
    );
    let job = t1.elapsed();
    println!(
        "linux_worker: boot to ready {ready:?} ({:?}), evidence + 64³ matmul job {job:?}",
        accel()
    );
    guest.stop();
}

#[test]
fn a_fatal_error_in_pid_1_powers_the_vm_off() {
    let (kernel, initrd) = payload();
    // no pupa.ip: PID 1 cannot configure the NIC
    let cmdline = "console=ttyS0 panic=-1 pupa.tee=dev";
    let t0 = Instant::now();
    let mut guest = start(&kernel, &initrd, cmdline, free_port());
    // "Power down" with ACPI (QEMU then exits); "System halted" where the kernel has no
    // power-off method (no ACPI tables from the firmware yet): reboot(2) halts instead
    let last = guest
        .wait_for(
            "reboot",
            READY_TIMEOUT,
            |l| l.contains("reboot: Power down") || l.contains("reboot: System halted"),
            |l| println!("guest | {l}"),
        )
        .unwrap_or_else(|e| panic!("no power-off after the fatal error: {e}"));
    let console = guest.console.join("\n");
    assert!(
        console.contains("pupa-init: fatal: cmdline: no pupa.ip=ADDRESS/PREFIX"),
        "no fatal line"
    );
    assert!(
        !console.contains("Kernel panic"),
        "PID 1 exited: kernel panic"
    );
    if last.contains("Power down") {
        let status = guest.wait_exit(Duration::from_secs(10), |_| {});
        assert_eq!(status, Some(0), "QEMU did not exit on power-off");
    } else {
        println!("linux_worker: the kernel halted (no ACPI power-off); QEMU stopped by the test");
        guest.stop();
    }
    println!("linux_worker: fatal error to power-off {:?}", t0.elapsed());
}
