//! The Linux payload end to end: the production firmware (pupa_tests::image()) boots the
//! pinned Debian kernel (image/linux.lock) through QEMU's `-kernel/-initrd/-append` with a
//! deterministic initramfs (`pupa_image::initramfs`) whose `/init` is a static pupa-worker
//! (x86_64-unknown-linux-musl) and whose modules (virtio-net, configfs, configfs-tsm, sev-guest,
//! tdx-guest and their dependencies) come from the same `.deb`: `pupa_image::payload`.
//! pupa-worker, as PID 1, mounts, loads the modules, configures the NIC from the command line
//! and serves; the host client fetches the dev evidence through user networking's port
//! forward and runs a sealed matmul job with a receipt. A command line without an address
//! makes PID 1 print one fatal line and power the VM off. With `pupa.ip=dhcp` PID 1 takes
//! user networking's lease (10.0.2.15/24, router 10.0.2.2) and serves through the same forward.
//!
//! The main test boots it the way an operator does, `pupa-host run --payload linux` (ready on
//! the worker's `pupa-worker: listening on` line), right after the unikernel image through
//! `pupa-host run` (boot-to-ready of both printed), and runs sealed jobs through the relay: a
//! matmul f32, an attention f16, a malformed job (InvalidJob, the connection still serves),
//! another matmul; the relay's receipt journal must hold every receipt, each verifying under
//! the guest's key from the evidence.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pupa_host::client::{
    fetch_and_verify, jobspec::JobSpec, run_job, ClientError, Connection, EvidencePolicy,
    JobOutcome, VerifiedWorker,
};
use pupa_host::profile::{LaunchConfig, LinuxPayload, Network, TeeKind, Vmm};
use pupa_host::receipts::parse_hex;
use pupa_host::relay::journal::{read_all, Line, Record};
use pupa_host::vm::Guest;
use pupa_protocol::msg::ErrorCode;
use pupa_protocol::receipt::{Receipt, SignedReceipt};
use pupa_tests::{accel, image, linux_payload};
use pupa_tests::{accel_args, free_port, pupa_host_bin, start_host_with};

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

/// Starts the production firmware with the kernel, initrd and `cmdline` (the profile's Linux
/// payload: QEMU's `-kernel/-initrd/-append`), the host's `port` forwarded to the guest's 7000.
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
        payload: Some(LinuxPayload {
            kernel: kernel.to_path_buf(),
            initrd: initrd.to_path_buf(),
            append: cmdline.to_string(),
        }),
    };
    Guest::start(&cfg).unwrap_or_else(|e| panic!("start qemu: {e}"))
}

/// `pupa-host run` arguments for the payload: `--payload-dir` when [`payload`] comes from the
/// directory `pupa-image build --payload linux` writes (`vmlinuz`, `initramfs.cpio` and
/// `cmdline` side by side), else `--kernel/--initrd/--append` with [`CMDLINE`].
fn host_payload_args(kernel: &Path, initrd: &Path) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["--payload".into(), "linux".into()];
    match kernel.parent() {
        Some(dir)
            if kernel.file_name() == Some("vmlinuz".as_ref())
                && initrd == dir.join("initramfs.cpio")
                && dir.join("cmdline").is_file() =>
        {
            a.extend(["--payload-dir".into(), dir.into()]);
        }
        _ => a.extend([
            "--kernel".into(),
            kernel.into(),
            "--initrd".into(),
            initrd.into(),
            "--append".into(),
            CMDLINE.into(),
        ]),
    }
    a
}

/// The dev evidence names what the firmware booted (its boot-digests setup_data node, read by
/// pupa-worker): the firmware image's and the payload's SHA-384s as computed here from the
/// files (`pupa_image::payload::dev_measurement`, the manifest's `payload.measurements.dev`),
/// with the command line the firmware reports it was given.
fn check_dev_measurement(w: &VerifiedWorker, console: &str, kernel: &Path, initrd: &Path) {
    let cmdline = console
        .lines()
        .find_map(|l| l.split_once("pupa: linux cmdline \"")?.1.strip_suffix('"'))
        .expect("the firmware prints the command line");
    let fw: [u8; 48] = pupa_measurements::hexfmt::decode_array(&image().sha384).unwrap();
    let want = pupa_image::payload::dev_measurement(
        &fw,
        &std::fs::read(kernel).unwrap(),
        &std::fs::read(initrd).unwrap(),
        cmdline,
    );
    assert_eq!(
        w.image_sha384,
        Some(want),
        "the dev evidence does not name this firmware and payload"
    );
    println!("linux_worker: dev evidence names the firmware and the payload (boot digests)");
}

/// Seconds from spawning the VMM to the guest's ready line, as pupa-host logged them.
fn vm_ready_s(log: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains("guest printed its ready line"))
        .find_map(|l| {
            l.split("ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .map(|ms: u64| ms as f64 / 1000.0)
        .unwrap_or_else(|| panic!("no ready line logged by pupa-host:\n{log}"))
}

/// Runs the sealed job `spec` and checks its result against the reference.
fn job(c: &mut Connection, w: &VerifiedWorker, spec: &str) -> JobOutcome {
    let spec = JobSpec::from_json(spec).expect("job spec");
    let built = spec.build().expect("job");
    let t = Instant::now();
    let out = run_job(c, w, built.job).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
    let check = spec.check(&out.result).expect("reference check");
    assert!(check.passed, "{check:?}");
    assert!(out.receipt.statement.receipt.units > 0, "a receipt");
    println!(
        "linux_worker: {:?} {:?} through pupa-host: {:?} (seal {:?}, round trip {:?}), {} units",
        spec.op,
        spec.dtype,
        t.elapsed(),
        out.timing.seal,
        out.timing.round_trip,
        out.receipt.statement.receipt.units
    );
    out
}

/// The relay's journal holds exactly `outcomes`' receipts, in order, each signed by the guest's
/// receipt key from the evidence.
fn check_journal(journal: &Path, w: &VerifiedWorker, outcomes: &[JobOutcome]) {
    let key = |s: &str| -> [u8; 32] {
        parse_hex(s)
            .and_then(|b| b.try_into().ok())
            .unwrap_or_else(|| panic!("journal: not a 32-byte hex key: {s}"))
    };
    let lines = read_all(journal).expect("read the journal");
    assert_eq!(lines.len(), outcomes.len(), "journal: {lines:?}");
    for ((at, line), out) in lines.into_iter().zip(outcomes) {
        let Ok(Line::Record(Record::Receipt {
            guest_key,
            client_key,
            job_hash,
            seq,
            units,
            total_units,
            signature,
            ..
        })) = line
        else {
            panic!("journal byte {at}: {line:?}")
        };
        let signed = SignedReceipt {
            receipt: Receipt {
                guest_key: key(&guest_key),
                client_key: key(&client_key),
                job_hash: key(&job_hash),
                seq,
                units,
                total_units,
            },
            signature: parse_hex(&signature)
                .and_then(|b| b.try_into().ok())
                .expect("a 64-byte signature"),
        };
        signed
            .verify(&w.receipt_pk)
            .unwrap_or_else(|e| panic!("journal byte {at}: {e}"));
        assert_eq!(signed, out.receipt.statement, "journal byte {at}");
        assert_eq!(signed.receipt.job_hash, out.job_hash, "journal byte {at}");
    }
}

/// The Linux payload booted by `pupa-host run --payload linux` (boot-to-ready printed beside
/// the unikernel's, booted the same way just before), then sealed jobs through the relay: a
/// matmul f32, an attention f16, a malformed job refused with InvalidJob on a connection that
/// then still runs a job; every receipt journaled and verified.
#[test]
fn pupa_host_runs_the_linux_payload_and_relays_sealed_jobs() {
    let (kernel, initrd) = payload();
    // Built before the clocks start: the boot times below are boots only.
    let _ = (image(), accel(), pupa_host_bin());
    let dir = pupa_tests::workspace()
        .join("target/linux-worker-host")
        .join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();

    let uni_log = dir.join("unikernel.log");
    let uni = start_host_with(
        &dir.join("unikernel.journal"),
        &accel_args(),
        Some(&uni_log),
    );
    let uni_ready = uni.ready;
    drop(uni);
    let uni_console = std::fs::read_to_string(&uni_log).unwrap();
    assert!(uni_console.contains("pupa: ready"), "{uni_console}");
    let uni_vm = vm_ready_s(&uni_console);

    let log = dir.join("linux.log");
    let journal = dir.join("linux.journal");
    let mut args = host_payload_args(&kernel, &initrd);
    args.extend(accel_args());
    println!("linux_worker: pupa-host run {args:?}");
    let host = start_host_with(&journal, &args, Some(&log));
    let linux_ready = host.ready;
    let console = std::fs::read_to_string(&log).unwrap();
    let linux_vm = vm_ready_s(&console);
    println!(
        "linux_worker: boot to ready through pupa-host run ({:?}): VMM start to ready line: \
         unikernel {uni_vm:.2} s, Linux payload {linux_vm:.2} s ({:.1}x); pupa-host start to \
         serving (first health probe answered): unikernel {:.2} s, Linux payload {:.2} s ({:.1}x)",
        accel(),
        linux_vm / uni_vm,
        uni_ready.as_secs_f64(),
        linux_ready.as_secs_f64(),
        linux_ready.as_secs_f64() / uni_ready.as_secs_f64()
    );
    assert!(
        console.contains("pupa: linux entering startup_64 at 0x"),
        "not our firmware?\n{console}"
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
    assert!(console.contains("pupa-worker: listening on 0.0.0.0:7000"));

    let mut c = Connection::connect(&host.addr, None, Duration::from_secs(120)).expect("connect");
    let w = fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).expect("dev evidence");
    assert_eq!(w.tee, "insecure-dev");
    check_dev_measurement(&w, &console, &kernel, &initrd);
    let matmul = r#"{"op":"matmul","m":64,"n":64,"k":64,"dtype":"f32","seed":14}"#;
    let mut outcomes = vec![
        job(&mut c, &w, matmul),
        job(
            &mut c,
            &w,
            r#"{"op":"attention","seq_q":64,"seq_k":64,"heads":4,"kv_heads":2,"dim":64,"causal":true,"dtype":"f16","seed":15}"#,
        ),
    ];
    // Malformed: the first tensor is 7 bytes short of 64x64 f32.
    let mut bad = JobSpec::from_json(matmul).unwrap().build().unwrap().job;
    let len = bad.tensors[0].len();
    bad.tensors[0].truncate(len - 7);
    let t = Instant::now();
    match run_job(&mut c, &w, bad) {
        Err(ClientError::Worker(e)) => {
            assert_eq!(e.code, ErrorCode::InvalidJob, "{e:?}");
            assert!(!e.detail.is_empty(), "a reason with the error");
            println!(
                "linux_worker: malformed job refused in {:?}: {:?}: {}",
                t.elapsed(),
                e.code,
                e.detail
            );
        }
        other => panic!("a malformed job: expected InvalidJob, got {other:?}"),
    }
    // The same connection still serves.
    outcomes.push(job(
        &mut c,
        &w,
        r#"{"op":"matmul","m":32,"n":48,"k":16,"dtype":"f32","seed":16}"#,
    ));
    drop(c);
    check_journal(&journal, &w, &outcomes);
    println!(
        "linux_worker: {} receipts journaled by pupa-host and verified under the evidence's key",
        outcomes.len()
    );
    drop(host);
    let _ = std::fs::remove_dir_all(&dir);
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

#[test]
fn pid_1_takes_its_address_by_dhcp() {
    let (kernel, initrd) = payload();
    // user networking's DHCP server leases 10.0.2.15/24, router 10.0.2.2, to the first client
    let cmdline = "console=ttyS0 panic=-1 pupa.ip=dhcp pupa.listen=0.0.0.0:7000 pupa.tee=dev";
    let port = free_port();
    let t0 = Instant::now();
    let mut guest = start(&kernel, &initrd, cmdline, port);
    guest
        .wait_for(
            "pupa-worker: listening on",
            READY_TIMEOUT,
            |l| l.contains("pupa-worker: listening on") || l.contains("pupa-init: fatal"),
            |l| println!("guest | {l}"),
        )
        .unwrap_or_else(|e| panic!("the worker did not come up by DHCP: {e}"));
    let console = guest.console.join("\n");
    assert!(
        console.contains("pupa-init: dhcp: eth0 leased 10.0.2.15/24 router 10.0.2.2 from 10.0.2.2"),
        "no lease line"
    );
    assert!(console.contains("pupa-init: eth0 10.0.2.15/24 gw 10.0.2.2"));
    assert!(console.contains("pupa-worker: listening on 0.0.0.0:7000"));
    // the forward reaches the worker at its leased address
    let mut c = Connection::connect(&format!("127.0.0.1:{port}"), None, Duration::from_secs(60))
        .expect("connect");
    let w = fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).expect("dev evidence");
    assert_eq!(w.tee, "insecure-dev");
    drop(c);
    guest.stop();
    println!(
        "linux_worker: DHCP boot to verified evidence {:?}",
        t0.elapsed()
    );
}
