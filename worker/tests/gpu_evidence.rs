//! GPU evidence through the mock NVML (`--gpus mock:DIR`, src/gpu/mock.rs) serving NVIDIA's
//! real 2023 Hopper sample (measurements/testdata/gpu/SOURCE): the worker's evidence, fetched
//! over TCP with pupa-host's client, carries one GPU report; the mock saw, in NVIDIA's order,
//! the report requested with the nonce derived from that evidence's REPORT_DATA, the chain read,
//! and only then the GPUs set ready; the verifier fails exactly the `gpu0 nonce` line (the
//! sample was signed over NVIDIA's nonce, not ours). CC off / devtools on refuse startup; a
//! failing NVML call is a clear TeeFailure.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{temp_dir, workspace_bin, WorkerProc};
use pupa_host::client::Connection;
use pupa_measurements::verify::gpu::evidence::{check_evidence, GpuCollateral, GpuPolicy};
use pupa_measurements::verify::{TeeKind, Verdict};
use pupa_protocol::evidence::{gpu_nonce, report_data, Evidence};
use pupa_protocol::msg::{EvidenceRequest, Message};
use pupa_runtime::{DevTee, Tee, TeeFailure};
use pupa_worker::gpu::mock::{decode_hex, encode_hex, Call, MockNvml};
use pupa_worker::gpu::{self, GpuChoice, GpuStartError, GpuTee, Opened};

const GPU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../measurements/testdata/gpu/");
const NOW: &str = "2024-03-01T00:00:00Z";

fn gpu_file(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(GPU).join(name)).unwrap()
}

fn rims() -> [PathBuf; 2] {
    [
        Path::new(GPU).join("hopper-2023/1010_0200_882_96005E0001_test_no_gpu.swidtag"),
        Path::new(GPU).join("hopper-2023/Driver_RIM_test_no_gpu.swidtag"),
    ]
}

/// A mock directory serving the 2023 sample, with `conf` as its mock.conf.
fn mock_dir(name: &str, conf: &str) -> PathBuf {
    let dir = temp_dir(name);
    let m = dir.join("mock");
    std::fs::create_dir(&m).unwrap();
    for f in ["attestationReport.txt", "gpuAkCertChain.txt"] {
        std::fs::write(m.join(f), gpu_file(&format!("hopper-2023/{f}"))).unwrap();
    }
    std::fs::write(m.join("mock.conf"), conf).unwrap();
    dir
}

fn start(dir: &Path) -> Result<WorkerProc, (Option<i32>, String)> {
    let arg = format!("mock:{}", dir.join("mock").display());
    WorkerProc::try_start(&["--tee", "dev", "--compute", "cpu", "--gpus", &arg], dir)
}

fn fetch(w: &WorkerProc, nonce: [u8; 32]) -> Evidence {
    let mut c = Connection::connect(&w.addr.to_string(), None, Duration::from_secs(30)).unwrap();
    c.send(&Message::EvidenceRequest(EvidenceRequest { nonce }))
        .unwrap();
    match c.recv().unwrap() {
        Message::Evidence(ev) => ev,
        m => panic!("no evidence: {m:?}; log:\n{}", w.log()),
    }
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn the_sample_through_the_worker_fails_only_the_gpu_nonce() {
    let dir = mock_dir("gpu-sample", "cc=on\ndevtools=off\n");
    let w = start(&dir).unwrap_or_else(|e| panic!("{e:?}"));
    let nonce = [0x42; 32];
    let ev = fetch(&w, nonce);
    assert_eq!(ev.gpus.len(), 1, "{}", w.log());
    let report = decode_hex(&gpu_file("hopper-2023/attestationReport.txt")).unwrap();
    assert_eq!(ev.gpus[0].report, report);
    assert_eq!(
        ev.gpus[0].cert_chain,
        gpu_file("hopper-2023/gpuAkCertChain.txt")
    );
    // NVIDIA's order at boot: report with the bound nonce, chain, then ready; then this request.
    let boot = report_data(&ev.hpke_pk, &ev.receipt_pk, &[0; 32]);
    let this = report_data(&ev.hpke_pk, &ev.receipt_pk, &nonce);
    assert_eq!(this, ev.expected_report_data());
    let calls = std::fs::read_to_string(dir.join("mock/calls.log")).unwrap();
    let want = format!(
        "report 0 {}\nchain 0\nready 1\nreport 0 {}\nchain 0\n",
        encode_hex(&gpu_nonce(&boot, 0)),
        encode_hex(&gpu_nonce(&this, 0)),
    );
    assert_eq!(calls, want);
    assert_eq!(gpu_nonce(&this, 0), ev.expected_gpu_nonce(0));
    // The GPUs were set ready before the compute backend opened and the worker came up.
    let log = w.log();
    let ready = log.find("GPUs attested, set ready for work").expect(&log);
    let up = log.find("keys made").expect(&log);
    assert!(ready < up, "{log}");
    assert!(
        log[up..].lines().next().unwrap().contains("\"cpu\""),
        "{log}"
    );

    // The library verifier: exactly the nonce line fails.
    let mut v = Verdict::new(TeeKind::Dev);
    let coll = GpuCollateral {
        rims: rims().iter().map(|p| std::fs::read(p).unwrap()).collect(),
        skip_revocation: true,
        ..GpuCollateral::NONE
    };
    let policy = GpuPolicy {
        require_gpus: 1,
        ..GpuPolicy::NONE
    };
    let now =
        time::OffsetDateTime::parse(NOW, &time::format_description::well_known::Rfc3339).unwrap();
    check_evidence(&mut v, &ev, &policy, &coll, now);
    assert_eq!(failed(&v), ["gpu0 nonce"], "{v:#?}");
    assert!(v.checks.len() > 5, "{v:#?}");
    measure_cli(&ev, &dir);
}

/// `pupa-measure verify --evidence` with the GPU options: only `gpu0 nonce` fails.
fn measure_cli(ev: &Evidence, dir: &Path) {
    let file = dir.join("evidence.bin");
    std::fs::write(&file, postcard::to_allocvec(ev).unwrap()).unwrap();
    let [r1, r2] = rims();
    let out = std::process::Command::new(workspace_bin("pupa-measurements", "pupa-measure"))
        .arg("verify")
        .arg("--evidence")
        .arg(&file)
        .args([
            "--any-measurement",
            "--allow-insecure-dev",
            "--require-gpus",
            "1",
        ])
        .arg("--gpu-rim")
        .arg(&r1)
        .arg("--gpu-rim")
        .arg(&r2)
        .args(["--now", NOW, "--gpu-skip-revocation"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let failed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("FAIL  "))
        .map(|l| l.split("  ").next().unwrap_or_default().trim())
        .collect();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(failed, ["gpu0 nonce"], "{text}");
}

#[test]
fn cc_off_or_devtools_on_refuse_to_start() {
    for (name, conf, want) in [
        (
            "gpu-cc-off",
            "cc=off\n",
            "confidential-computing mode is off",
        ),
        ("gpu-devtools", "devtools=on\n", "devtools mode is on"),
    ] {
        let dir = mock_dir(name, conf);
        let Err((code, err)) = start(&dir) else {
            panic!("{name}: started")
        };
        assert_eq!(code, Some(2), "{err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("pupa-worker: "))
            .unwrap_or_else(|| panic!("{err}"));
        assert!(line.contains(want), "{err}");
        // Nothing was attested or set ready.
        assert!(!dir.join("mock/calls.log").exists());
    }
}

#[test]
fn cuda_without_gpu_evidence_refuses_unless_dev() {
    let dir = temp_dir("gpu-cuda-none");
    let Err((code, err)) = WorkerProc::try_start(
        &["--tee", "snp", "--compute", "cuda", "--gpus", "none"],
        &dir,
    ) else {
        panic!("started")
    };
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--compute cuda needs GPU evidence"), "{err}");
}

fn sample_mock() -> MockNvml {
    MockNvml::new(
        decode_hex(&gpu_file("hopper-2023/attestationReport.txt")).unwrap(),
        gpu_file("hopper-2023/gpuAkCertChain.txt"),
    )
}

fn dev() -> Box<dyn Tee> {
    Box::new(DevTee {
        image_sha384: [7; 48],
    })
}

#[test]
fn every_gpu_is_attested_before_the_set_is_ready() {
    let mut m = sample_mock();
    m.gpus = 3;
    let calls = m.calls.clone();
    assert_eq!(gpu::check_startup(&m).unwrap(), 3);
    let mut t = GpuTee::new(dev(), Box::new(m));
    let rd = [9; 64];
    let ev = t.gpu_evidence(&rd).unwrap();
    assert_eq!(ev.len(), 3);
    let mut want = Vec::new();
    for i in 0..3 {
        want.push(Call::Report(i, gpu_nonce(&rd, i)));
        want.push(Call::Chain(i));
    }
    want.push(Call::Ready(true));
    assert_eq!(*calls.lock().unwrap(), want);
    // Later evidence: reports and chains again, ready only once.
    t.gpu_evidence(&[1; 64]).unwrap();
    let c = calls.lock().unwrap();
    assert_eq!(c.len(), 13);
    assert_eq!(c.iter().filter(|c| matches!(c, Call::Ready(_))).count(), 1);
}

#[test]
fn a_failing_call_is_a_clear_tee_failure_and_nothing_is_ready() {
    for (fail, want) in [
        ("report", "GPU: attestation report failed"),
        ("chain", "GPU: certificate chain failed"),
        ("ready", "GPU: setting the GPUs ready failed"),
    ] {
        let mut m = sample_mock();
        m.fail = Some(fail.into());
        let calls = m.calls.clone();
        let mut t = GpuTee::new(dev(), Box::new(m));
        assert_eq!(t.gpu_evidence(&[0; 64]).unwrap_err(), TeeFailure(want));
        if fail != "ready" {
            assert!(!calls.lock().unwrap().contains(&Call::Ready(true)));
        }
    }
    // Through the worker: it does not start, and says why in one line.
    let dir = mock_dir("gpu-fail", "fail=report\n");
    let Err((code, err)) = start(&dir) else {
        panic!("started")
    };
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("GPU: attestation report failed"), "{err}");
}

#[test]
fn the_gpus_option() {
    assert_eq!("none".parse::<GpuChoice>(), Ok(GpuChoice::None));
    assert_eq!("auto".parse::<GpuChoice>(), Ok(GpuChoice::Auto));
    assert_eq!(
        "mock:/x".parse::<GpuChoice>(),
        Ok(GpuChoice::Mock("/x".into()))
    );
    assert!("mock:".parse::<GpuChoice>().is_err());
    assert!("cuda".parse::<GpuChoice>().is_err());
    assert!(matches!(gpu::open(&GpuChoice::None), Ok(Opened::NoGpus(_))));
    // Without the nvml feature (or without a driver) auto means no GPUs.
    #[cfg(not(feature = "nvml"))]
    {
        assert!(matches!(
            gpu::open(&GpuChoice::Auto),
            Ok(Opened::NoGpus(m)) if m.contains("no NVML")
        ));
        assert!(matches!(
            gpu::open(&GpuChoice::Nvml),
            Err(GpuStartError::Nvml(_))
        ));
    }
    let mut m = sample_mock();
    m.gpus = 9;
    assert!(matches!(
        gpu::check_startup(&m),
        Err(GpuStartError::TooMany(9))
    ));
}
