//! The Linux payload end to end: the production firmware (pupa_tests::image()) boots the
//! pinned Debian kernel (image/linux.lock) through QEMU's `-kernel/-initrd/-append` with a
//! deterministic initramfs (`pupa_image::initramfs`) whose `/init` is a static pupa-worker
//! (x86_64-unknown-linux-musl) and whose modules (virtio-net, configfs, configfs-tsm, sev-guest,
//! tdx-guest and their dependencies) come from the same `.deb`: `pupa_image::payload`.
//! pupa-worker, as PID 1, mounts, loads the modules, configures the NIC from the command line
//! and serves; the host client fetches the dev evidence through user networking's port
//! forward and runs a sealed matmul job with a receipt. A command line without an address
//! makes PID 1 print one fatal line and power the VM off.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pupa_host::client::{fetch_and_verify, jobspec::JobSpec, run_job, Connection, EvidencePolicy};
use pupa_host::profile::{self, LaunchConfig, Network, TeeKind, Vmm};
use pupa_host::vm::Guest;
use pupa_tests::{accel, image, linux_payload};

const CMDLINE: &str = "console=ttyS0 panic=-1 pupa.ip=10.0.2.15/24 pupa.gw=10.0.2.2 \
                       pupa.listen=0.0.0.0:7000 pupa.tee=dev";
/// Kernel boot under TCG takes tens of seconds; this bounds the whole boot.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Modules whose load the test checks (the payload's list is computed by
/// `pupa_image::modules` from the kernel's dependency data; the package ships them xz-compressed).
const MODULES: &[&str] = &["kernel/drivers/net/virtio_net.ko.xz"];

/// The kernel and the initramfs (`pupa_tests::linux_payload`: pupa-image's Linux payload,
/// built once per test process).
fn payload() -> (PathBuf, PathBuf) {
    let p = linux_payload();
    (p.kernel.clone(), p.initrd.clone())
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
    // power-off method (no ACPI tables from the firmware yet): reboot(2) halts instead (6.1:
    // "reboot: System halted"; 6.12: "reboot: Power off not available: System halted instead")
    let last = guest
        .wait_for(
            "reboot",
            READY_TIMEOUT,
            |l| {
                l.contains("reboot: Power down")
                    || (l.contains("reboot: ") && l.contains("System halted"))
            },
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
