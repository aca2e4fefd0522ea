//! The client's evidence verification against the real SEV-SNP and TDX samples of
//! pupa-measurements (measurements/testdata/evidence/SOURCE: virtee/sev, Phala dcap-qvl),
//! wrapped in `Evidence` messages with our own keys and nonce.

use std::path::PathBuf;

use pupa_measurements::verify::{tdx, Endorsements, PolicyKnobs, VerifyError};
use pupa_protocol::evidence::{report_data, sign_dev, Evidence, TeeEvidence};

use super::{verify_evidence, verify_tee, EvidencePolicy};
use crate::client::ClientError;

macro_rules! sample {
    ($f:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../measurements/testdata/evidence/",
            $f
        ))
    };
}
const SNP_REPORT_HEX: &[u8] = sample!("report_milan.hex");
const VCEK: &[u8] = sample!("vcek_milan.der");
const QUOTE: &[u8] = sample!("tdx_quote");
const COLLATERAL: &[u8] = sample!("tdx_quote_collateral.json");
/// Offsets in the SNP report (SEV-SNP ABI 56860 Table 23) and the TDX quote v4 (header 48 +
/// TD report body: MRTD at +136, REPORTDATA at +520).
const SNP_REPORT_DATA: usize = 0x50;
const SNP_MEASUREMENT: usize = 0x90;
const TDX_MRTD: usize = 48 + 136;
const TDX_REPORT_DATA: usize = 48 + 520;
/// Inside the TDX collateral window and the VCEK's validity (2023-04-03..2030-04-03).
const NOW: &str = "2025-07-01T00:00:00Z";
const NONCE: [u8; 32] = [7; 32];

fn snp_report() -> Vec<u8> {
    let text: String = std::str::from_utf8(SNP_REPORT_HEX)
        .unwrap()
        .split_whitespace()
        .collect();
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn snp_evidence() -> Evidence {
    Evidence {
        hpke_pk: [1; 32],
        receipt_pk: [2; 32],
        nonce: NONCE,
        tee: TeeEvidence::Snp {
            report: snp_report(),
            vcek: Some(serde_bytes::ByteBuf::from(VCEK.to_vec())),
        },
        gpus: Vec::new(),
    }
}

fn tdx_evidence() -> Evidence {
    Evidence {
        tee: TeeEvidence::Tdx {
            quote: QUOTE.to_vec(),
            event_log: None,
        },
        ..snp_evidence()
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A fresh directory holding a manifest.json that expects `snp` and `tdx` measurements.
fn manifest_dir(tag: &str, snp: &[u8], tdx: &[u8]) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pupa-attest-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let m = format!(
        r#"{{"measurements":{{"snp":[{{"vcpus":1,"digest":"{}"}}],"tdx":[{{"mrtd":"{}"}}]}}}}"#,
        hex(snp),
        hex(tdx)
    );
    std::fs::write(d.join("manifest.json"), m).unwrap();
    d
}

/// The policy `pupa-client --expect DIR/manifest.json --collateral ... --now NOW` builds.
fn policy(dir: &std::path::Path) -> EvidencePolicy {
    let coll = dir.join("collateral.json");
    std::fs::write(&coll, COLLATERAL).unwrap();
    EvidencePolicy::load(
        false,
        None,
        Some(&dir.join("manifest.json")),
        None,
        Some(&coll),
        Some(NOW),
    )
    .unwrap()
}

fn sample_measurements() -> (Vec<u8>, Vec<u8>) {
    (
        snp_report()[SNP_MEASUREMENT..SNP_MEASUREMENT + 48].to_vec(),
        QUOTE[TDX_MRTD..TDX_MRTD + 48].to_vec(),
    )
}

/// Every check passes except the binding: the samples' REPORT_DATA is not
/// SHA-512(domain ‖ our keys ‖ our nonce).
#[test]
fn real_samples_fail_only_the_report_data_binding() {
    let (snp, tdx) = sample_measurements();
    let p = policy(&manifest_dir("binding", &snp, &tdx));
    for (ev, name) in [(snp_evidence(), "SEV-SNP"), (tdx_evidence(), "TDX")] {
        let e = verify_evidence(&ev, &p, &NONCE).unwrap_err();
        let ClientError::EvidenceRejected {
            tee,
            check,
            reason,
            verdict,
        } = &e
        else {
            panic!("{name}: {e}");
        };
        assert_eq!((*tee, check.as_str()), (name, "REPORT_DATA"), "{e}");
        let want = hex(&report_data(&ev.hpke_pk, &ev.receipt_pk, &NONCE));
        assert!(reason.contains(&format!("!= expected {want}")), "{e}");
        let v = verdict.as_ref().unwrap();
        let failed: Vec<_> = v.checks.iter().filter(|c| !c.passed).collect();
        assert_eq!(failed.len(), 1, "{v:#?}");
        assert!(v.checks.len() >= 5, "{v:#?}");
        assert!(
            e.to_string().contains("check \"REPORT_DATA\" failed"),
            "{e}"
        );
    }
}

/// With the binding computed to the samples' own REPORT_DATA they verify.
#[test]
fn real_samples_verify_with_their_report_data() {
    let (snp, tdx) = sample_measurements();
    let p = policy(&manifest_dir("pass", &snp, &tdx));
    let ev = snp_evidence();
    let rd: [u8; 64] = snp_report()[SNP_REPORT_DATA..SNP_REPORT_DATA + 64]
        .try_into()
        .unwrap();
    let w = verify_tee(&ev, &rd, &p).unwrap();
    assert_eq!(w.tee, "SEV-SNP");
    assert_eq!(w.measurement.unwrap().to_vec(), snp);
    assert_eq!((w.hpke_pk, w.receipt_pk), ([1; 32], [2; 32]));
    let ev = tdx_evidence();
    let rd: [u8; 64] = QUOTE[TDX_REPORT_DATA..TDX_REPORT_DATA + 64]
        .try_into()
        .unwrap();
    let w = verify_tee(&ev, &rd, &p).unwrap();
    assert_eq!(w.tee, "TDX");
    assert_eq!(w.measurement.unwrap().to_vec(), tdx);
}

#[test]
fn policy_failures_name_their_check() {
    let (snp, tdx) = sample_measurements();
    let rd: [u8; 64] = snp_report()[SNP_REPORT_DATA..SNP_REPORT_DATA + 64]
        .try_into()
        .unwrap();
    let check_of = |e: ClientError| match e {
        ClientError::EvidenceRejected { check, .. } => check,
        e => panic!("{e}"),
    };
    // Another measurement expected.
    let p = policy(&manifest_dir("wrong", &[0x11; 48], &tdx));
    assert_eq!(
        check_of(verify_tee(&snp_evidence(), &rd, &p).unwrap_err()),
        "measurement"
    );
    // The VCEK has expired by 2031.
    let mut p = policy(&manifest_dir("late", &snp, &tdx));
    p.endorsements.now = Some(tdx::parse_now("2031-01-01T00:00:00Z").unwrap());
    assert_eq!(
        check_of(verify_tee(&snp_evidence(), &rd, &p).unwrap_err()),
        "VCEK validity"
    );
    // A pinned receipt key the worker does not have.
    let mut p = policy(&manifest_dir("pin", &snp, &tdx));
    p.knobs.receipt_pk = Some(hex(&[9; 32]));
    assert_eq!(
        check_of(verify_tee(&snp_evidence(), &rd, &p).unwrap_err()),
        "keys"
    );
    // Debug forbidden: set SNP policy bit 19 (the signature then fails too; debug is named).
    let mut ev = snp_evidence();
    if let TeeEvidence::Snp { report, .. } = &mut ev.tee {
        report[0x08 + 2] |= 0x08;
    }
    let p = policy(&manifest_dir("debug", &snp, &tdx));
    let e = verify_tee(&ev, &rd, &p).unwrap_err();
    let v = super::rejected_verdict(&e).unwrap();
    assert!(
        v.checks.iter().any(|c| c.name == "debug" && !c.passed),
        "{v:#?}"
    );
}

#[test]
fn unusable_policy_or_evidence_is_a_specific_error() {
    let ev = snp_evidence();
    // Strict default: no measurements configured.
    let e = verify_evidence(&ev, &EvidencePolicy::STRICT, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::Policy(m) if m.contains("--expect manifest.json")),
        "{e}"
    );
    // Another nonce: stale or replayed.
    let p = EvidencePolicy {
        knobs: PolicyKnobs {
            any_measurement: Some(true),
            ..PolicyKnobs::NONE
        },
        ..EvidencePolicy::STRICT
    };
    assert!(matches!(
        verify_evidence(&ev, &p, &[8; 32]),
        Err(ClientError::NonceMismatch)
    ));
    // TDX without collateral.
    assert!(matches!(
        verify_evidence(&tdx_evidence(), &p, &NONCE),
        Err(ClientError::Unverifiable(VerifyError::Collateral(_)))
    ));
    // A truncated report.
    let mut short = snp_evidence();
    if let TeeEvidence::Snp { report, .. } = &mut short.tee {
        report.truncate(1000);
    }
    assert!(matches!(
        verify_evidence(&short, &p, &NONCE),
        Err(ClientError::Unverifiable(VerifyError::SnpReport(_)))
    ));
    // report_data in the policy would unbind the keys: refused.
    let mut bad = p.clone();
    bad.knobs.report_data = Some("00".repeat(64));
    assert!(matches!(
        verify_evidence(&ev, &bad, &NONCE),
        Err(ClientError::Policy(_))
    ));
    // No VCEK in the evidence nor the policy: the chain check fails.
    let mut no_vcek = snp_evidence();
    if let TeeEvidence::Snp { vcek, .. } = &mut no_vcek.tee {
        *vcek = None;
    }
    let e = verify_evidence(&no_vcek, &p, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, .. } if check == "VCEK chain"),
        "{e}"
    );
    let with_vcek = EvidencePolicy {
        endorsements: Endorsements {
            vcek: Some(VCEK.to_vec()),
            ..Endorsements::NONE
        },
        ..p.clone()
    };
    let e = verify_evidence(&no_vcek, &with_vcek, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, .. } if check == "REPORT_DATA"),
        "{e}"
    );
}

#[test]
fn policy_file_and_expect_flag() {
    let (snp, tdx) = sample_measurements();
    let d = manifest_dir("file", &snp, &tdx);
    let f = d.join("policy.toml");
    std::fs::write(
        &f,
        "measurements = [\"".to_string() + &"11".repeat(48) + "\"]\nvmpl = 0\n",
    )
    .unwrap();
    let rd: [u8; 64] = snp_report()[SNP_REPORT_DATA..SNP_REPORT_DATA + 64]
        .try_into()
        .unwrap();
    let load = |expect: Option<&std::path::Path>| {
        EvidencePolicy::load(false, Some(&f), expect, Some(&d.join("none")), None, None)
    };
    // A VCEK file that does not exist is an error at load.
    assert!(matches!(
        load(None),
        Err(ClientError::Unverifiable(VerifyError::Vcek(_)))
    ));
    let load = |expect: Option<&std::path::Path>| {
        EvidencePolicy::load(false, Some(&f), expect, None, None, Some(NOW))
    };
    let p = load(None).unwrap();
    let e = verify_tee(&snp_evidence(), &rd, &p).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, .. } if check == "measurement"),
        "{e}"
    );
    // --expect overrides the file's measurements.
    let p = load(Some(&d.join("manifest.json"))).unwrap();
    assert!(verify_tee(&snp_evidence(), &rd, &p).is_ok());
    // nonce in the file is refused; an unknown key is a policy error.
    std::fs::write(&f, format!("nonce = \"{}\"\n", "00".repeat(32))).unwrap();
    assert!(matches!(load(None), Err(ClientError::Policy(_))));
    std::fs::write(&f, "expected = \"m.json\"\n").unwrap();
    assert!(
        matches!(load(None), Err(ClientError::Policy(m)) if m.contains("unknown field `expected`"))
    );
}

#[test]
fn dev_evidence_measurement_is_checked_when_configured() {
    let image = [0x42; 48];
    let mut ev = Evidence {
        tee: TeeEvidence::Snp {
            report: vec![],
            vcek: None,
        },
        ..snp_evidence()
    };
    ev.tee = TeeEvidence::Dev(sign_dev(
        &image,
        &report_data(&ev.hpke_pk, &ev.receipt_pk, &NONCE),
    ));
    let dev = EvidencePolicy::insecure_dev();
    assert!(matches!(
        verify_evidence(&ev, &EvidencePolicy::STRICT, &NONCE),
        Err(ClientError::InsecureDevRefused)
    ));
    assert_eq!(
        verify_evidence(&ev, &dev, &NONCE).unwrap().measurement,
        Some(image)
    );
    let mut p = dev.clone();
    p.knobs.measurements = Some(vec![hex(&[0x43; 48])]);
    let e = verify_evidence(&ev, &p, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, .. } if check == "measurement"),
        "{e}"
    );
    p.knobs.measurements = Some(vec![hex(&image)]);
    assert!(verify_evidence(&ev, &p, &NONCE).is_ok());
}

#[test]
fn a_policy_requiring_a_gpu_refuses_a_worker_without_one() {
    let mut ev = snp_evidence();
    ev.tee = TeeEvidence::Dev(sign_dev(
        &[0x42; 48],
        &report_data(&ev.hpke_pk, &ev.receipt_pk, &NONCE),
    ));
    let mut p = EvidencePolicy::insecure_dev();
    assert!(verify_evidence(&ev, &p, &NONCE).is_ok());
    p.knobs.require_gpus = Some(1);
    let e = verify_evidence(&ev, &p, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, reason, .. }
            if check == "gpu count" && reason.contains("requires 1")),
        "{e}"
    );
    // A GPU report that is not over the nonce derived from this session's REPORT_DATA (NVIDIA's
    // own sample) is refused on exactly that line.
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../measurements/testdata/gpu/hopper-2023/"
    );
    let report = std::fs::read(format!("{dir}attestationReport.txt")).unwrap();
    ev.gpus = vec![pupa_protocol::evidence::GpuEvidence {
        report,
        cert_chain: std::fs::read(format!("{dir}gpuAkCertChain.txt")).unwrap(),
    }];
    p.endorsements.now = Some(1_709_251_200); // 2024-03-01, inside the sample chain's validity
    p.endorsements.gpu.skip_revocation = true;
    let e = verify_evidence(&ev, &p, &NONCE).unwrap_err();
    assert!(
        matches!(&e, ClientError::EvidenceRejected { check, .. } if check == "gpu0 nonce"),
        "{e}"
    );
}
