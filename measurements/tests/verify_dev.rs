//! Dev evidence (insecure by design) and the `pupa-measure verify` command line.

use pupa_measurements::verify::{dev, MeasurementPolicy, Policy, VerifyError};
use pupa_protocol::evidence::{report_data, sign_dev, Evidence, TeeEvidence};

mod verdict;
use verdict::cli;

const IMAGE_SHA384: [u8; 48] = [0x42; 48];

fn evidence() -> Evidence {
    let (hpke_pk, receipt_pk, nonce) = ([1u8; 32], [2u8; 32], [3u8; 32]);
    Evidence {
        hpke_pk,
        receipt_pk,
        nonce,
        tee: TeeEvidence::Dev(sign_dev(
            &IMAGE_SHA384,
            &report_data(&hpke_pk, &receipt_pk, &nonce),
        )),
        gpus: Vec::new(),
    }
}

fn allow() -> Policy {
    Policy {
        measurement: MeasurementPolicy::OneOf(vec![IMAGE_SHA384]),
        allow_insecure_dev: true,
        ..Policy::default()
    }
}

#[test]
fn dev_evidence_refused_by_default_accepted_with_flag() {
    let ev = dev::decode_evidence(&postcard::to_allocvec(&evidence()).unwrap()).unwrap();
    let strict = Policy {
        allow_insecure_dev: false,
        ..allow()
    };
    let v = dev::verify(&ev, &strict).unwrap();
    assert!(!v.ok());
    assert_eq!(v.first_failure().unwrap().name, "insecure dev evidence");
    let v = dev::verify(&ev, &allow()).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert_eq!(v.warnings, [dev::DEV_WARNING]);
}

#[test]
fn forged_or_mismatched_dev_evidence_is_rejected() {
    let mut ev = evidence();
    if let TeeEvidence::Dev(r) = &mut ev.tee {
        r.signature[0] ^= 1;
    }
    let v = dev::verify(&ev, &allow()).unwrap();
    assert_eq!(
        v.first_failure().unwrap().name,
        "dev signature and key binding"
    );
    let mut ev = evidence();
    ev.nonce[0] ^= 1; // REPORT_DATA no longer binds the keys and nonce
    assert!(!dev::verify(&ev, &allow()).unwrap().ok());
    let p = Policy {
        measurement: MeasurementPolicy::OneOf(vec![[0; 48]]),
        ..allow()
    };
    assert_eq!(
        dev::verify(&evidence(), &p)
            .unwrap()
            .first_failure()
            .unwrap()
            .name,
        "measurement"
    );
}

#[test]
fn malformed_dev_evidence_is_an_error() {
    let bytes = postcard::to_allocvec(&evidence()).unwrap();
    assert!(matches!(
        dev::decode_evidence(&bytes[..bytes.len() - 3]),
        Err(VerifyError::DevEvidence(_))
    ));
    assert!(matches!(
        dev::decode_evidence(&[bytes.clone(), vec![0]].concat()),
        Err(VerifyError::DevEvidence(_))
    ));
    let snp = Evidence {
        tee: TeeEvidence::Tdx {
            quote: vec![1, 2],
            event_log: None,
        },
        ..evidence()
    };
    assert!(matches!(
        dev::verify(&snp, &allow()),
        Err(VerifyError::DevEvidence(_))
    ));
}

#[test]
fn cli_dev_refuses_then_accepts_with_warning() {
    let dir = std::env::temp_dir().join(format!("pupa-verify-dev-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("evidence.bin");
    std::fs::write(&f, postcard::to_allocvec(&evidence()).unwrap()).unwrap();
    let f = f.to_str().unwrap();
    let (code, out, _) = cli(&["--dev-evidence", f, "--any-measurement"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL  insecure dev evidence") && out.contains("REJECTED"),
        "{out}"
    );
    let (code, out, err) = cli(&[
        "--dev-evidence",
        f,
        "--any-measurement",
        "--allow-insecure-dev",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("WARNING: INSECURE"), "{err}");
    // Keys and nonce given on the command line must be the evidence's.
    let k = |b: u8| hex::encode([b; 32]);
    let (code, out, _) = cli(&[
        "--dev-evidence",
        f,
        "--any-measurement",
        "--allow-insecure-dev",
        "--hpke-pk",
        &k(1),
        "--receipt-pk",
        &k(2),
        "--nonce",
        &k(9),
    ]);
    // The evidence binds its own keys and nonce (REPORT_DATA passes); it answers nonce 3, not
    // the required 9.
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("PASS  REPORT_DATA") && out.contains("FAIL  nonce"),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn cli_snp_and_tdx_samples() {
    let td = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/evidence/");
    let (code, out, err) = cli(&[
        "--tee",
        "snp",
        "--report",
        &format!("{td}report_milan.hex"),
        "--vcek",
        &format!("{td}vcek_milan.der"),
        "--any-measurement",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ACCEPTED"), "{out}");
    let (code, out, _) = cli(&[
        "--tee",
        "snp",
        "--report",
        &format!("{td}report_milan.hex"),
        "--any-measurement",
        "--json",
    ]);
    assert_eq!(code, 1);
    let j: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(j["ok"], false);
    let (code, out, err) = cli(&[
        "--tee",
        "tdx",
        "--quote",
        &format!("{td}tdx_quote"),
        "--collateral",
        &format!("{td}tdx_quote_collateral.json"),
        "--now",
        "2025-07-01T00:00:00Z",
        "--any-measurement",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    // No measurement policy chosen: a usage error, not a verdict.
    let (code, _, err) = cli(&[
        "--tee",
        "tdx",
        "--quote",
        &format!("{td}tdx_quote"),
        "--collateral",
        &format!("{td}tdx_quote_collateral.json"),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("measurement policy"), "{err}");
}
