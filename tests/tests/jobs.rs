//! The real image under QEMU, serving sealed jobs over virtio-net: ≥ 20 jobs over both ops, all
//! dtypes, causal and not, each result checked against the host's f64 reference; and bad input
//! on one connection never stops a good job on another.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pupa_host::client::jobspec::JobSpec;
use pupa_host::client::{self, Connection, EvidencePolicy};
use pupa_host::vm::Guest;
use pupa_tests::{boot_with_nic, boot_with_nic_vcpus};

fn start_guest() -> (Guest, String) {
    let (g, port) = boot_with_nic();
    (g, format!("127.0.0.1:{port}"))
}

fn start_guest_vcpus(n: u32) -> (Guest, String) {
    let (g, port) = boot_with_nic_vcpus(n);
    (g, format!("127.0.0.1:{port}"))
}

fn specs() -> Vec<String> {
    let mut v = Vec::new();
    for (i, dtype) in ["f32", "f16", "bf16"].iter().enumerate() {
        for (j, (m, n, k)) in [(1, 1, 1), (17, 33, 9), (64, 48, 80), (1, 130, 7)]
            .iter()
            .enumerate()
        {
            v.push(format!(
                r#"{{"op":"matmul","m":{m},"n":{n},"k":{k},"dtype":"{dtype}","seed":{}}}"#,
                10 * i + j
            ));
        }
        for (j, (sq, sk, h, g, d, causal)) in [
            (37, 37, 2, 2, 64, false),
            (64, 64, 4, 2, 64, true),
            (16, 40, 2, 1, 128, true),
            (33, 33, 1, 1, 256, false),
        ]
        .iter()
        .enumerate()
        {
            v.push(format!(
                r#"{{"op":"attention","seq_q":{sq},"seq_k":{sk},"heads":{h},"kv_heads":{g},"dim":{d},"causal":{causal},"dtype":"{dtype}","seed":{}}}"#,
                100 + 10 * i + j
            ));
        }
    }
    v
}

#[test]
fn twenty_four_sealed_jobs_match_the_reference() {
    run_all_specs(start_guest());
}

/// The same jobs with two vCPUs: the kernels' split over the vCPU pool gives results within
/// the same bounds (bit-identical to the serial drivers, by the split's construction).
#[test]
fn twenty_four_sealed_jobs_match_the_reference_on_two_vcpus() {
    run_all_specs(start_guest_vcpus(2));
}

fn run_all_specs((mut guest, addr): (Guest, String)) {
    let mut conn = Connection::connect(&addr, None, Duration::from_secs(60)).expect("connect");
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let worker = client::fetch_and_verify(&mut conn, &policy).expect("evidence");
    let specs = specs();
    assert!(specs.len() >= 20);
    for text in &specs {
        let spec = JobSpec::from_json(text).unwrap();
        let built = spec.build().unwrap();
        let out = client::run_job(&mut conn, &worker, built.job)
            .unwrap_or_else(|e| panic!("{text}: {e}"));
        let check = spec.check(&out.result).unwrap();
        println!(
            "{text}: rel err {:.2e} (bound {:.0e})",
            check.rel_err, check.tolerance
        );
        assert!(
            check.passed,
            "{text}: rel err {} > {}",
            check.rel_err, check.tolerance
        );
    }
    guest.stop();
}

#[test]
fn garbage_and_stalled_connections_do_not_stop_a_good_job() {
    let (mut guest, addr) = start_guest();
    // a client that connects and says nothing (stalls), and one that sends garbage
    let _stalled = TcpStream::connect(&addr).unwrap();
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: pupa\r\n\r\n")
        .unwrap();
    let mut reply = Vec::new();
    let _ = garbage.read_to_end(&mut reply);
    // the guest answered with a protocol error frame and closed the connection
    assert!(reply.len() > 6, "expected an error frame, got {reply:?}");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.contains("version") || text.contains("frame"), "{text}");

    let mut conn = Connection::connect(&addr, None, Duration::from_secs(60)).expect("connect");
    let policy = EvidencePolicy {
        allow_insecure_dev: true,
        ..Default::default()
    };
    let worker = client::fetch_and_verify(&mut conn, &policy).expect("evidence");
    let spec =
        JobSpec::from_json(r#"{"op":"matmul","m":8,"n":8,"k":8,"dtype":"f32","seed":5}"#).unwrap();
    let out = client::run_job(&mut conn, &worker, spec.build().unwrap().job)
        .expect("good job after garbage");
    assert!(spec.check(&out.result).unwrap().passed);
    guest.stop();
}
