//! `pupa-client` as a user runs it, against the guest runtime in a host process (direct, and
//! through `pupa-host run --guest-addr`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use common::guest_process::GuestProcess;
use common::*;

fn client(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pupa-client"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn run_prints_a_checked_result_and_refuses_dev_evidence_without_the_flag() {
    let guest = GuestProcess::start();
    let dir = temp_dir("cli");
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        r#"{ "op": "matmul", "m": 24, "n": 40, "k": 56, "dtype": "f32", "seed": 7 }"#,
    )
    .unwrap();
    let worker = guest.addr().to_string();
    let job_s = job.to_str().unwrap();

    let out = client(&[
        "run",
        "--worker",
        &worker,
        job_s,
        "--allow-insecure-dev",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["passed"], true);
    assert_eq!(v["evidence"], "insecure-dev");
    assert_eq!(v["dims"], serde_json::json!([24, 40]));
    assert_eq!(v["flops"], 2 * 24 * 40 * 56);
    let spec = r#"{ "op": "matmul", "m": 24, "n": 40, "k": 56, "dtype": "f32", "seed": 7 }"#;
    let units = pupa_host::client::JobSpec::from_json(spec)
        .unwrap()
        .build()
        .unwrap()
        .job
        .validate()
        .unwrap()
        .units;
    assert_eq!(v["receipt"]["units"], units);
    assert_eq!(v["receipt"]["guest_key"], v["receipt_pk"]);
    assert_eq!(v["receipt"]["signature_verified"], true);
    assert_eq!(v["receipt"]["job_hash"].as_str().unwrap().len(), 64);
    assert!(v["receipt"]["ton"].is_null(), "no voucher, no TON receipt");
    assert!(v["rel_err"].as_f64().unwrap() <= 1e-5);

    let text = client(&["run", "--worker", &worker, job_s, "--allow-insecure-dev"]);
    assert!(text.status.success());
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(
        s.contains("receipt (per-job statement): signature verified") && s.contains("rel. error"),
        "{s}"
    );
    let guest_key = v["receipt_pk"].as_str().unwrap();
    assert!(
        s.contains(&format!("  guest key          {guest_key}")),
        "{s}"
    );
    assert!(
        s.contains("TON receipt: none (the job carried no voucher)"),
        "{s}"
    );
    assert!(!s.contains("guest_key: ["), "a Debug dump: {s}");
    assert!(String::from_utf8_lossy(&text.stderr).contains("NOT confidential"));

    let refused = client(&["run", "--worker", &worker, job_s]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("INSECURE development evidence"));

    std::fs::write(&job, r#"{ "op": "matmul", "m": 2, "n": 2 }"#).unwrap();
    let bad = client(&["run", "--worker", &worker, job_s, "--allow-insecure-dev"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains(r#"matmul needs "k""#),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );

    std::fs::write(&job, r#"{ "op": "matmul", "m": 2, "n": 2, "k": 2 }"#).unwrap();
    let nobody = client(&[
        "run",
        "--worker",
        "127.0.0.1:1",
        job_s,
        "--allow-insecure-dev",
    ]);
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("cannot connect"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bench_through_the_relay_binary_reports_overhead_and_throughput() {
    let guest = GuestProcess::start();
    let mut relay = Command::new(env!("CARGO_BIN_EXE_pupa-host"))
        .args([
            "run",
            "--guest-addr",
            &guest.addr().to_string(),
            "--listen",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(relay.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .trim()
        .strip_prefix("pupa-host: listening on ")
        .unwrap()
        .parse()
        .unwrap();
    let out = client(&[
        "bench",
        "--worker",
        &addr.to_string(),
        "--allow-insecure-dev",
        "--clients",
        "4",
        "--jobs",
        "40",
        "--samples",
        "20",
        "--json",
    ]);
    relay.kill().unwrap();
    let _ = relay.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["jobs"], 40);
    assert_eq!(v["clients"], 4);
    assert!(v["jobs_per_s"].as_f64().unwrap() > 0.0);
    assert!(
        v["total"]["median_us"].as_f64().unwrap() >= v["round_trip"]["median_us"].as_f64().unwrap()
    );
}

#[test]
fn evidence_policy_flags_expect_and_policy_file() {
    let guest = GuestProcess::start();
    let dir = temp_dir("cli-policy");
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        r#"{ "op": "matmul", "m": 2, "n": 2, "k": 2, "dtype": "f32", "seed": 1 }"#,
    )
    .unwrap();
    let worker = guest.addr().to_string();
    let (job_s, dir_s) = (job.to_str().unwrap(), dir.to_str().unwrap());
    let manifest = |name: &str, byte: u8| {
        let sha = format!("{byte:02x}").repeat(48);
        std::fs::write(
            dir.join(name),
            format!(r#"{{"image":{{"sha384":"{sha}"}},"measurements":{{"snp":[],"tdx":[]}}}}"#),
        )
        .unwrap();
        format!("{dir_s}/{name}")
    };
    let stderr = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // --expect names the image the dev evidence must come from (the fixture's is 5a..).
    let wrong = manifest("wrong.json", 0x11);
    let base = ["run", "--worker", &worker, job_s, "--allow-insecure-dev"];
    let out = client(&[&base[..], &["--expect", &wrong]].concat());
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("check \"measurement\" failed"),
        "{}",
        stderr(&out)
    );
    let right = manifest("right.json", 0x5a);
    let out = client(&[&base[..], &["--expect", &right, "--json"]].concat());
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["measurement"], "5a".repeat(48));
    // The same from a policy file, which can also allow dev evidence; --expect overrides it.
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "expect = \"wrong.json\"\nallow_insecure_dev = true\n",
    )
    .unwrap();
    let p = policy.to_str().unwrap();
    let out = client(&["run", "--worker", &worker, job_s, "--policy", p]);
    assert!(
        stderr(&out).contains("check \"measurement\" failed"),
        "{}",
        stderr(&out)
    );
    let out = client(&[
        "run", "--worker", &worker, job_s, "--policy", p, "--expect", &right,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Unusable policy inputs fail before connecting, each with its own message.
    std::fs::write(&policy, "allow_debugg = true\n").unwrap();
    let out = client(&["run", "--worker", "127.0.0.1:1", job_s, "--policy", p]);
    assert!(
        stderr(&out).contains("unknown field `allow_debugg`"),
        "{}",
        stderr(&out)
    );
    let out = client(&[
        "run",
        "--worker",
        "127.0.0.1:1",
        job_s,
        "--now",
        "yesterday",
    ]);
    assert!(stderr(&out).contains("RFC 3339"), "{}", stderr(&out));
    let out = client(&["run", "--worker", "127.0.0.1:1", job_s, "--vcek", p]);
    assert!(
        stderr(&out).contains("VCEK certificate"),
        "{}",
        stderr(&out)
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_broken_policy_file_is_reported_before_connecting() {
    // A "worker" that records whether anyone connected.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let worker = l.local_addr().unwrap().to_string();
    let dir = temp_dir("cli-policy");
    let job = dir.join("job.json");
    std::fs::write(
        &job,
        r#"{"op":"matmul","m":4,"n":4,"k":4,"dtype":"f32","seed":1}"#,
    )
    .unwrap();
    for (name, body, want) in [
        (
            "missing-manifest.toml",
            "expect = \"nowhere/manifest.json\"\n",
            "cannot read manifest",
        ),
        (
            "bad-tcb.toml",
            "any_measurement = true\nsnp_min_tcb = \"bl=banana\"\n",
            "bl",
        ),
    ] {
        let policy = dir.join(name);
        std::fs::write(&policy, body).unwrap();
        let out = client(&[
            "run",
            "--worker",
            &worker,
            job.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            l.accept().is_err(),
            "{name}: the client connected before checking its policy"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_job_with_a_voucher_reports_its_ton_receipt_in_hex_base64_and_ton() {
    use base64::Engine;
    use pupa_host::client::{self, report, Connection, EvidencePolicy, JobSpec};
    use pupa_protocol::ton;

    let guest = GuestProcess::start();
    let mut c = Connection::connect(
        &guest.addr().to_string(),
        None,
        std::time::Duration::from_secs(30),
    )
    .unwrap();
    let w = client::fetch_and_verify(&mut c, &EvidencePolicy::insecure_dev()).unwrap();
    let spec = r#"{ "op": "matmul", "m": 64, "n": 64, "k": 64, "dtype": "f32", "seed": 3 }"#;
    let mut job = JobSpec::from_json(spec).unwrap().build().unwrap().job;
    let client_key = ed25519_dalek::SigningKey::from_bytes(&[0xA7; 32]);
    let voucher = ton::Voucher {
        domain: ton::Domain {
            network_id: ton::TESTNET_ID,
            contract: ton::MsgAddressInt {
                workchain: 0,
                hash: [0xC0; 32],
            },
        },
        client_key: client_key.verifying_key().to_bytes(),
        guest_key: w.receipt_pk,
        cap: 1_000_000_000,
    };
    let signed = voucher.sign(&client_key).unwrap();
    job.voucher = serde_bytes::ByteBuf::from(ton::to_boc(&signed.to_cell().unwrap()));
    let out = client::run_job(&mut c, &w, job).unwrap();
    let boc = out
        .receipt
        .ton
        .clone()
        .expect("a TON receipt for a voucher job");
    let view = report::TonReceiptView::parse(&boc).unwrap();
    let r = view.signed.receipt;
    assert!(view.verified && r.price > 0, "{r:?}");

    let lines = report::receipt_lines(&out.receipt);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&boc);
    for want in [
        "TON receipt (payable, cumulative): signature verified".to_string(),
        format!("  BOC hex            {}", hex(&boc)),
        format!("  BOC base64         {b64}"),
        format!("  cell hash          {}", hex(&view.cell_hash)),
        format!("  client voucher key {}", hex(&voucher.client_key)),
        format!(
            "  cumulative         seq 1, units {}, price {} ({} nanotons)",
            r.units,
            report::ton_amount(r.price),
            r.price
        ),
    ] {
        assert!(lines.contains(&want), "{want:?} not in {lines:#?}");
    }
    let j = report::receipt_json(&out.receipt);
    assert_eq!(j["ton"]["boc_base64"], b64);
    assert_eq!(j["ton"]["price_nanotons"], u64::try_from(r.price).unwrap());
    assert_eq!(j["ton"]["seq"], 1);
    assert_eq!(
        ton::from_boc_single(
            &base64::engine::general_purpose::STANDARD
                .decode(j["ton"]["boc_base64"].as_str().unwrap())
                .unwrap()
        )
        .unwrap()
        .hash(),
        view.cell_hash
    );
}
