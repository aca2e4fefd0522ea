//! Every vCPU computes (issue 15): the image under QEMU with 1, 2 and 4 vCPUs (multi-threaded
//! TCG here) starts them all (`pupa: cpus N of N online`), serves, and gets the same results as
//! the host's reference; and (a benchmark, `--ignored`) the time of a 2048-token attention job
//! with 2 vCPUs beside 1, in one run (printed, never asserted).

use std::time::{Duration, Instant};

use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, Connection, EvidencePolicy};
use pupa_tests::boot_with_nic_vcpus;

/// Boots with `n` vCPUs; checks the banner; runs `specs` on one connection, each checked
/// against the reference; returns each job's round-trip time.
fn serve_with(n: u32, specs: &[&str]) -> Vec<Duration> {
    let (mut guest, port) = boot_with_nic_vcpus(n);
    let console = guest.console.join("\n");
    assert!(
        console.contains(&format!("pupa: cpus {n} of {n} online")),
        "{n} vCPUs:\n{console}"
    );
    let addr = format!("127.0.0.1:{port}");
    let mut conn = Connection::connect(&addr, None, Duration::from_secs(300)).expect("connect");
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let worker = client::fetch_and_verify(&mut conn, &policy).expect("evidence");
    let mut times = Vec::new();
    for text in specs {
        let spec = JobSpec::from_json(text).unwrap();
        let built = spec.build().unwrap();
        let t = Instant::now();
        let out = client::run_job(&mut conn, &worker, built.job)
            .unwrap_or_else(|e| panic!("{n} vCPUs, {text}: {e}"));
        times.push(t.elapsed());
        let check = spec.check(&out.result).unwrap();
        assert!(check.passed, "{n} vCPUs, {text}: {check:?}");
    }
    guest.stop();
    times
}

const MIXED: &[&str] = &[
    r#"{"op":"matmul","m":96,"n":80,"k":72,"dtype":"f32","seed":1}"#,
    r#"{"op":"matmul","m":130,"n":33,"k":17,"dtype":"bf16","seed":2}"#,
    r#"{"op":"attention","seq_q":64,"seq_k":64,"heads":4,"kv_heads":2,"dim":64,"causal":true,"dtype":"f16","seed":3}"#,
    r#"{"op":"attention","seq_q":37,"seq_k":90,"heads":3,"kv_heads":1,"dim":128,"causal":false,"dtype":"f32","seed":4}"#,
];

#[test]
fn one_two_and_four_vcpus_boot_and_serve() {
    for n in [1, 2, 4] {
        serve_with(n, MIXED);
    }
}

/// A benchmark (about 75 s under TCG here), so not part of the test command: run it with
/// `cargo test -p pupa-tests --test smp -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: cargo test -p pupa-tests --test smp -- --ignored --nocapture"]
fn attention_2048_tokens_on_two_vcpus_beside_one() {
    const LONG: &str = r#"{"op":"attention","seq_q":2048,"seq_k":2048,"heads":1,"kv_heads":1,"dim":64,"causal":true,"dtype":"f32","seed":7}"#;
    let one = serve_with(1, &[LONG])[0];
    let two = serve_with(2, &[LONG])[0];
    println!(
        "smp: 2048-token causal attention (1 head, dim 64, f32): 1 vCPU {:.2} s, 2 vCPUs {:.2} s, \
         speed-up {:.2}x (round trip, dominated by the kernel; TCG thread=multi on this host)",
        one.as_secs_f64(),
        two.as_secs_f64(),
        one.as_secs_f64() / two.as_secs_f64()
    );
}
