//! `pupa-worker --tee dev --compute cpu` behind `pupa-host run --guest-addr` (the relay, with
//! its receipt journal) serves sealed matmul and attention jobs in every dtype, MHA and GQA,
//! causal or not: the client (pupa-host's library: evidence, sealing, receipts, the f64
//! reference check) gets correct results with verified receipts.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{temp_dir, workspace_bin, WorkerProc};
use pupa_host::client::{fetch_and_verify, run_job, Connection, EvidencePolicy, JobSpec};

fn pupa_host_bin() -> PathBuf {
    workspace_bin("pupa-host", "pupa-host")
}

struct Relay(Child);

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `pupa-host run --guest-addr WORKER --listen 127.0.0.1:0 --receipts-log DIR/receipts.jsonl`.
fn start_relay(worker: SocketAddr, dir: &Path) -> (Relay, SocketAddr) {
    let mut child = Command::new(pupa_host_bin())
        .args([
            "run",
            "--guest-addr",
            &worker.to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--receipts-log")
        .arg(dir.join("receipts.jsonl"))
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("relay.stderr")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("pupa-host: listening on ")
        .unwrap_or_else(|| {
            panic!(
                "relay ready line: {line:?}\n{}",
                std::fs::read_to_string(dir.join("relay.stderr")).unwrap_or_default()
            )
        })
        .parse()
        .unwrap();
    (Relay(child), addr)
}

/// The sealed-job suite: both ops, every dtype, MHA and GQA, causal and not, head dims 64/128.
fn suite() -> Vec<String> {
    let mut jobs = Vec::new();
    for dtype in ["f32", "f16", "bf16"] {
        jobs.push(format!(
            r#"{{"op":"matmul","m":33,"n":70,"k":48,"dtype":"{dtype}","seed":1}}"#
        ));
        for (heads, kv, dim, causal) in [(4, 4, 64, true), (8, 2, 128, false), (6, 3, 64, false)] {
            jobs.push(format!(
                r#"{{"op":"attention","seq_q":40,"seq_k":72,"heads":{heads},"kv_heads":{kv},"dim":{dim},"causal":{causal},"dtype":"{dtype}","seed":2}}"#
            ));
        }
    }
    jobs
}

#[test]
fn dev_worker_serves_the_job_suite_through_the_relay() {
    let dir = temp_dir("jobs");
    let worker = WorkerProc::start(&["--tee", "dev", "--compute", "cpu"], &dir);
    assert!(
        worker.log().contains("INSECURE development report"),
        "{}",
        worker.log()
    );
    let (_relay, relay_addr) = start_relay(worker.addr, &dir);
    let mut c =
        Connection::connect(&relay_addr.to_string(), None, Duration::from_secs(60)).unwrap();
    let w = fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).unwrap();
    assert_eq!(w.tee, "insecure-dev");
    let suite = suite();
    for spec in &suite {
        let s = JobSpec::from_json(spec).unwrap();
        let built = s.build().unwrap();
        let out = run_job(&mut c, &w, built.job).unwrap_or_else(|e| panic!("{spec}: {e}"));
        let check = s.check(&out.result).unwrap();
        assert!(check.passed, "{spec}: {check:?}");
        assert!(out.receipt.statement.receipt.units > 0, "{spec}");
    }
    // Every receipt reached the relay's journal before the client saw it.
    let journal = std::fs::read_to_string(dir.join("receipts.jsonl")).unwrap_or_default();
    let receipts = journal
        .lines()
        .filter(|l| l.contains(r#""kind":"receipt""#));
    assert_eq!(receipts.count(), suite.len(), "{journal}");
}

#[test]
fn cpu_is_what_auto_falls_back_to() {
    let dir = temp_dir("auto");
    let worker = WorkerProc::start(&["--tee", "dev", "--compute", "auto"], &dir);
    let log = worker.log();
    assert!(log.contains("jobs run on the CPU kernels"), "{log}");
}

#[test]
fn cuda_without_a_gpu_is_one_line_and_exit_2() {
    let dir = temp_dir("cuda");
    let Err((code, err)) = WorkerProc::try_start(&["--tee", "dev", "--compute", "cuda"], &dir)
    else {
        // A machine with a working Hopper GPU and the cuda feature: nothing to check here.
        return;
    };
    assert_eq!(code, Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("pupa-worker: "), "{err}");
    assert!(lines[0].contains("--compute cuda"), "{err}");
}
