//! The GPU payload's user space (issue 14): the glibc pupa-worker (`--features cuda,nvml`)
//! and the files `pupa_image::userspace` takes from the pinned Debian packages, staged as the
//! GPU initramfs lays them out, checked on this machine (no GPU, no NVIDIA driver):
//!
//! - every shared library the worker, libcuda, NVML and NVIDIA's PKCS#11 module need resolves
//!   inside the staged tree (the pinned loader's `--list` with only the tree's directories);
//! - the worker, started by the pinned loader on the staged libraries, loads NVML and libcuda
//!   from the tree, reports that there is no GPU (no driver), falls back to the CPU kernels,
//!   and serves a sealed job with a verified receipt.
//!
//! The NVIDIA kernel modules are not built by the test command (minutes, see
//! docs/LINUX_PAYLOAD.md); `--ignored` runs the whole GPU payload (modules included) under
//! QEMU. What a GPU would add (device nodes, cuInit, the cubins' launch) was not executed.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, Connection, EvidencePolicy};
use pupa_image::nvidia::NvidiaLock;
use pupa_image::payload::{self, PayloadOptions};
use pupa_image::{initramfs, userspace, worker};
use pupa_tests::{accel_args, free_port, image, start_host_with, workspace};

/// Builds the glibc worker and the user space, stages them under a root; returns the root and
/// the NVIDIA driver version.
fn stage() -> (PathBuf, String) {
    let ws = workspace();
    let w = worker::build(&worker::WorkerOptions {
        src: ws.clone(),
        target_dir: ws.join("target/musl"),
        cargo_home: None,
        gpu: true,
    })
    .unwrap_or_else(|e| panic!("the glibc worker: {e}"));
    let (lock, _) = NvidiaLock::read(&ws).unwrap();
    let driver = lock.upstream(&lock.source).to_string();
    let u = userspace::assemble(&ws, &ws.join("target/linux-deb"), &driver)
        .unwrap_or_else(|e| panic!("the GPU user space: {e}"));
    let root = ws.join("target/pupa-test-gpu-userspace");
    let _ = std::fs::remove_dir_all(&root);
    for (path, bytes) in &u.files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, bytes).unwrap();
        let mode = initramfs::file_mode(path);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::copy(&w.path, root.join("init")).unwrap();
    println!(
        "gpu user space: {} files, {} bytes; glibc pupa-worker {} bytes",
        u.files.len(),
        u.files.iter().map(|(_, b)| b.len()).sum::<usize>(),
        std::fs::metadata(root.join("init")).unwrap().len()
    );
    (root, driver)
}

fn library_path(root: &Path) -> String {
    format!(
        "{}:{}",
        root.join("lib/x86_64-linux-gnu").display(),
        root.join("usr/lib/x86_64-linux-gnu").display()
    )
}

fn loader(root: &Path) -> Command {
    let mut c = Command::new(root.join("lib64/ld-linux-x86-64.so.2"));
    c.arg("--library-path").arg(library_path(root));
    c
}

/// `(needed, resolved path)` of every dependency the pinned loader lists for `file`.
fn resolved(root: &Path, file: &Path) -> Vec<(String, String)> {
    let out = loader(root).arg("--list").arg(file).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{}: {text}", file.display());
    text.lines()
        .filter_map(|l| l.trim().split_once(" => "))
        .map(|(n, rest)| {
            let path = rest.split(" (").next().unwrap_or(rest).to_string();
            (n.to_string(), path)
        })
        .collect()
}

#[test]
fn the_gpu_user_space_is_complete_and_the_worker_serves_from_it() {
    let (root, driver) = stage();
    let usr = root.join("usr/lib/x86_64-linux-gnu");
    for file in [
        root.join("init"),
        usr.join("libcuda.so.1"),
        usr.join("libnvidia-ml.so.1"),
        usr.join(format!("libnvidia-pkcs11-openssl3.so.{driver}")),
    ] {
        let deps = resolved(&root, &file);
        assert!(
            !deps.is_empty(),
            "{}: no dependencies listed",
            file.display()
        );
        for (needed, path) in deps {
            assert!(
                path.starts_with(root.to_str().unwrap()),
                "{}: {needed} resolves to {path}, outside the payload",
                file.display()
            );
        }
    }
    let port = free_port();
    let mut child = loader(&root)
        .arg(root.join("init"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--tee", "dev"])
        .args(["--compute", "auto", "--gpus", "auto", "--cuda-cubins"])
        .arg(root.join("lib/pupa/cuda"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    while !log.contains("keys made") {
        match lines.next() {
            Some(Ok(l)) => {
                println!("worker | {l}");
                log.push_str(&l);
                log.push('\n');
            }
            _ => {
                let _ = child.kill();
                panic!("the worker stopped before serving:\n{log}");
            }
        }
    }
    std::thread::spawn(move || lines.for_each(|l| println!("worker | {}", l.unwrap_or_default())));
    // NVML and libcuda were found in the tree and said there is no GPU; the CPU serves.
    assert!(log.contains("--gpus auto"), "{log}");
    assert!(!log.contains("without the nvml feature"), "{log}");
    assert!(log.contains("--compute auto: no CUDA backend"), "{log}");
    assert!(
        !log.contains("libcuda) is not present"),
        "libcuda not found:\n{log}"
    );
    let mut conn =
        Connection::connect(&format!("127.0.0.1:{port}"), None, Duration::from_secs(30)).unwrap();
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let w = client::fetch_and_verify(&mut conn, &policy).expect("evidence");
    let spec =
        JobSpec::from_json(r#"{"op":"matmul","m":32,"n":48,"k":64,"dtype":"bf16","seed":3}"#)
            .unwrap();
    let built = spec.build().unwrap();
    let out = client::run_job(&mut conn, &w, built.job).expect("job");
    assert!(spec.check(&out.result).unwrap().passed);
    let _ = child.kill();
    let _ = child.wait();
}

/// The whole GPU payload (`pupa-image build --payload linux`: NVIDIA's modules built, about
/// three minutes the first time, `apt-get update` as root if the archive's non-free parts are
/// not enabled yet) booted by pupa's firmware under QEMU on this GPU-less machine: the 110 MB
/// initramfs unpacks, the glibc pupa-worker runs as PID 1, nvidia.ko finds no GPU and is
/// skipped, NVML and libcuda load from the initramfs and say so, and a sealed job is served
/// through `pupa-host run` with a verified receipt.
#[test]
#[ignore = "builds the NVIDIA modules (minutes): cargo test -p pupa-tests --test linux_gpu_userspace -- --ignored --nocapture"]
fn the_gpu_payload_boots_and_serves_without_a_gpu() {
    let ws = workspace();
    let out = ws.join("target/pupa-test-linux-gpu");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&image().image, out.join("pupa.fd")).unwrap();
    std::fs::copy(&image().manifest, out.join("manifest.json")).unwrap();
    let p = payload::build(&PayloadOptions {
        gpu: true,
        ..PayloadOptions::new(&ws, &out)
    })
    .unwrap_or_else(|e| panic!("the GPU payload: {e}"));
    let g = p.gpu.as_ref().expect("the GPU part");
    println!(
        "gpu payload: initramfs {} bytes ({} without the GPU part, {} of user space)",
        p.initrd_size, g.initrd_size_without_gpu, g.userspace_bytes
    );
    let log = out.join("host.log");
    let _ = std::fs::remove_file(&log);
    let mut args: Vec<std::ffi::OsString> = vec![
        "--payload".into(),
        "linux".into(),
        "--payload-dir".into(),
        out.join("linux").into(),
        "--memory-mib".into(),
        "1536".into(),
        "--ready-timeout-s".into(),
        "600".into(),
    ];
    args.extend(accel_args());
    let host = start_host_with(&out.join("journal"), &args, Some(&log));
    let console = std::fs::read_to_string(&log).unwrap();
    for line in [
        "pupa-init: skipped nvidia.ko.xz: no such device on this machine",
        "--compute auto: no CUDA backend (no CUDA device",
        "--gpus auto: no NVML (nvmlInit: NVIDIA driver is not loaded)",
    ] {
        assert!(console.contains(line), "no {line:?} in\n{console}");
    }
    let mut conn = Connection::connect(&host.addr, None, Duration::from_secs(120)).unwrap();
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let w = client::fetch_and_verify(&mut conn, &policy).expect("evidence");
    let spec = JobSpec::from_json(
        r#"{"op":"attention","seq_q":64,"seq_k":64,"heads":2,"kv_heads":1,"dim":64,"causal":true,"dtype":"bf16","seed":9}"#,
    )
    .unwrap();
    let built = spec.build().unwrap();
    let out = client::run_job(&mut conn, &w, built.job).expect("job");
    assert!(spec.check(&out.result).unwrap().passed);
    drop(host);
}
