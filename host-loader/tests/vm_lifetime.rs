//! The VMM dies with `pupa-host`: a child spawned through the tied spawn helper dies when its
//! parent is SIGKILLed (even after the thread that asked for it has ended), and `pupa-host run`
//! takes its QEMU with it on SIGKILL and stops at once on SIGINT during boot.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::procs::{children, gone, pgrp, signal, wait_until, KillOnDrop};
use pupa_host::vm::spawn::spawn_tied;

const CHILD_ENV: &str = "PUPA_TIED_SPAWN_CHILD";

/// Middle process: spawns `sleep 1000` from a thread that then ends, prints its PID, waits to
/// be killed.
fn middle() -> ! {
    let child = std::thread::spawn(|| {
        let mut c = Command::new("sleep");
        c.arg("1000");
        spawn_tied(c).unwrap()
    })
    .join()
    .unwrap();
    println!("SLEEP {}", child.id());
    std::mem::forget(child);
    loop {
        std::thread::park();
    }
}

#[test]
fn a_tied_child_dies_with_its_parent() {
    if std::env::var_os(CHILD_ENV).is_some() {
        middle();
    }
    let mut mid = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "a_tied_child_dies_with_its_parent",
                "--nocapture",
            ])
            .env(CHILD_ENV, "1")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let out = mid.0.stdout.take().unwrap();
    let pid: u32 = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("SLEEP ").map(|p| p.parse().unwrap()))
        .expect("the middle process names its child");
    // The thread that asked for the child has ended; the child lives on.
    assert!(
        !gone(pid),
        "the child died with the thread that requested it"
    );
    mid.0.kill().unwrap();
    mid.0.wait().unwrap();
    wait_until("the tied child to die", Duration::from_secs(10), || {
        gone(pid)
    });
}

/// A firmware that parses (OVMF footer table) and loops forever at its reset vector.
pub fn looping_image(dir: &std::path::Path) -> std::path::PathBuf {
    let n = 64 * 1024;
    let mut b = vec![0u8; n];
    b[n - 0x32..n - 0x30].copy_from_slice(&18u16.to_le_bytes());
    b[n - 0x30..n - 0x20].copy_from_slice(&pupa_measurements::guid::OVMF_TABLE_FOOTER.0);
    b[n - 0x10..n - 0x0e].copy_from_slice(&[0xEB, 0xFE]); // jmp $
    let p = dir.join("loop.fd");
    std::fs::write(&p, b).unwrap();
    p
}

fn qemu_present() -> bool {
    Command::new("qemu-system-x86_64")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `pupa-host run` booting `image` (never ready); returns it and its QEMU's PID.
fn booting_host(image: &std::path::Path) -> (KillOnDrop, u32) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let host = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_pupa-host"))
            .args(["run", "--listen", "127.0.0.1:0", "--ready-timeout-s", "300"])
            .arg("--image")
            .arg(image)
            .args(["--forward-port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let pid = host.0.id();
    let mut qemu = Vec::new();
    wait_until("pupa-host to start QEMU", Duration::from_secs(30), || {
        qemu = children(pid, "qemu");
        !qemu.is_empty()
    });
    (host, qemu[0])
}

#[test]
fn kill_9_of_pupa_host_leaves_no_qemu_behind() {
    if !qemu_present() {
        eprintln!("SKIPPED: no qemu-system-x86_64 (the attack suite in tests/ covers this too)");
        return;
    }
    let dir = common::temp_dir("kill9");
    let (mut host, qemu) = booting_host(&looping_image(&dir));
    // Started through the tied spawner: its own process group (and PR_SET_PDEATHSIG, which
    // `a_tied_child_dies_with_its_parent` checks; /proc does not show it).
    assert_eq!(pgrp(qemu), Some(qemu));
    host.0.kill().unwrap(); // SIGKILL
    host.0.wait().unwrap();
    wait_until(
        "QEMU to die with pupa-host",
        Duration::from_secs(10),
        || gone(qemu),
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigint_during_boot_stops_pupa_host_at_once() {
    if !qemu_present() {
        eprintln!("SKIPPED: no qemu-system-x86_64 (the attack suite in tests/ covers this too)");
        return;
    }
    let dir = common::temp_dir("sigint");
    let (mut host, qemu) = booting_host(&looping_image(&dir));
    let t = Instant::now();
    signal(host.0.id(), libc::SIGINT);
    wait_until(
        "pupa-host to exit on SIGINT",
        Duration::from_secs(5),
        || host.0.try_wait().unwrap().is_some(),
    );
    assert!(t.elapsed() < Duration::from_secs(5));
    wait_until("QEMU to be stopped", Duration::from_secs(5), || gone(qemu));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_vmm_error_and_exit_status_are_in_the_early_exit_error() {
    let mut cmd = Command::new("sh");
    cmd.args([
        "-c",
        "echo 'SeaBIOS (version 1.16)'; echo 'qemu-system-x86_64: could not load PC BIOS' >&2; exit 1",
    ]);
    let mut g = pupa_host::vm::Guest::spawn_command(cmd, false).unwrap();
    let e = g
        .wait_for(
            "pupa: ready",
            Duration::from_secs(10),
            |l| l == "pupa: ready",
            |_| {},
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("exit status: 1"), "{e}");
    assert!(
        e.contains("VMM error:\nqemu-system-x86_64: could not load PC BIOS"),
        "{e}"
    );
    assert!(e.contains("console:\nSeaBIOS (version 1.16)"), "{e}");
}
