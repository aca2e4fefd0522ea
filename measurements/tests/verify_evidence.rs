//! Policy files (`--policy`, TOML) and one evidence file for any TEE (`--evidence`), against the
//! real SNP and TDX samples (testdata/evidence/SOURCE).

use std::path::{Path, PathBuf};

use pupa_measurements::hexfmt;
use pupa_measurements::verify::{
    evidence, snp, tdx, Endorsements, MeasurementPolicy, Pins, Policy, PolicyKnobs, VerifyError,
};
use pupa_protocol::evidence::{Evidence, TeeEvidence, TeeKind};

mod verdict;
use verdict::{cli, failed};

const TD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/evidence/");
const REPORT_HEX: &[u8] = include_bytes!("../testdata/evidence/report_milan.hex");
const VCEK: &[u8] = include_bytes!("../testdata/evidence/vcek_milan.der");
const QUOTE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("../testdata/evidence/tdx_quote_collateral.json");
/// The SNP sample's MEASUREMENT (0x90) and REPORT_DATA (0x50), as in verify_snp.rs.
const SNP_MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const SNP_REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";
/// Inside the TDX collateral window and the VCEK's validity.
const NOW: &str = "2025-07-01T00:00:00Z";
/// TD report body fields in the quote (TDX quote v4: body at 48; REPORTDATA at +520).
const TDX_REPORT_DATA: usize = 48 + 520;

fn tmpdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("verify_evidence")
        .join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The failed check names of a table printed by the CLI.
fn failed_lines(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim_start().strip_prefix("FAIL  "))
        .map(|l| l.split("  ").next().unwrap_or_default().trim().to_string())
        .collect()
}

fn snp_evidence(with_vcek: bool) -> Evidence {
    Evidence {
        hpke_pk: [1; 32],
        receipt_pk: [2; 32],
        nonce: [3; 32],
        tee: TeeEvidence::Snp {
            report: snp::load_report(REPORT_HEX).unwrap(),
            vcek: with_vcek.then(|| serde_bytes::ByteBuf::from(VCEK.to_vec())),
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
        ..snp_evidence(false)
    }
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let f = dir.join(name);
    std::fs::write(&f, bytes).unwrap();
    f.to_str().unwrap().to_string()
}

fn snp_args(policy: &str) -> Vec<String> {
    [
        "--tee",
        "snp",
        "--report",
        &format!("{TD}report_milan.hex"),
        "--vcek",
        &format!("{TD}vcek_milan.der"),
        "--now",
        NOW,
        "--policy",
        policy,
    ]
    .map(String::from)
    .to_vec()
}

fn run_snp(policy: &str, extra: &[&str]) -> (i32, String, String) {
    let mut a = snp_args(policy);
    a.extend(extra.iter().map(|s| s.to_string()));
    cli(&a.iter().map(String::as_str).collect::<Vec<_>>())
}

#[test]
fn policy_file_alone_accepts_the_real_snp_sample() {
    let d = tmpdir("file_accepts");
    // A manifest next to the policy file, referenced by a relative path.
    let manifest = format!(
        r#"{{"measurements":{{"snp":[{{"vcpus":1,"digest":"{SNP_MEASUREMENT}"}}],"tdx":[]}}}}"#
    );
    write(&d, "manifest.json", manifest.as_bytes());
    let policy = write(
        &d,
        "policy.toml",
        format!(
            "# strict policy for the Milan sample\nexpect = \"manifest.json\"\n\
             report_data = \"{SNP_REPORT_DATA}\"\nallow_debug = false\nvmpl = 0\n\
             snp_min_tcb = \"bl=3,tee=0,snp=8,ucode=115\"\nallow_migration_agent = false\n"
        )
        .as_bytes(),
    );
    let (code, out, err) = run_snp(&policy, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ACCEPTED") && out.contains("PASS  VCEK validity"),
        "{out}"
    );
    assert!(out.contains("bl=3,tee=0,snp=8,ucode=115"), "{out}");
}

#[test]
fn policy_file_forbidding_what_the_sample_has_rejects_it() {
    let d = tmpdir("file_rejects");
    let wrong = "11".repeat(48);
    let policy = write(
        &d,
        "p.toml",
        format!("measurements = [\"{wrong}\"]\nreport_data = \"{SNP_REPORT_DATA}\"\n").as_bytes(),
    );
    let (code, out, _) = run_snp(&policy, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(failed_lines(&out), ["measurement"], "{out}");
    // A minimum TCB above the sample's (snp=8).
    let policy = write(
        &d,
        "tcb.toml",
        b"any_measurement = true\nsnp_min_tcb = \"snp=9\"\n",
    );
    let (code, out, _) = run_snp(&policy, &[]);
    assert_eq!(code, 1, "{out}");
    assert_eq!(failed_lines(&out), ["minimum TCB"], "{out}");
    // VMPL 1 required; the sample was made at VMPL 0.
    let policy = write(&d, "vmpl.toml", b"any_measurement = true\nvmpl = 1\n");
    let (code, out, _) = run_snp(&policy, &[]);
    assert_eq!(
        (code, failed_lines(&out)),
        (1, vec!["VMPL".to_string()]),
        "{out}"
    );
}

#[test]
fn flags_override_the_policy_file() {
    let d = tmpdir("override");
    let wrong = "11".repeat(48);
    let policy = write(
        &d,
        "p.toml",
        format!("measurements = [\"{wrong}\"]\nvmpl = 1\nsnp_min_tcb = \"snp=9\"\n").as_bytes(),
    );
    let (code, out, _) = run_snp(&policy, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        failed_lines(&out),
        ["measurement", "VMPL", "minimum TCB"],
        "{out}"
    );
    let (code, out, err) = run_snp(
        &policy,
        &[
            "--measurement",
            SNP_MEASUREMENT,
            "--vmpl",
            "0",
            "--min-tcb",
            "snp=8",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    // A boolean flag can also turn a file's permission off.
    let policy = write(
        &d,
        "dev.toml",
        b"any_measurement = true\nallow_insecure_dev = true\n",
    );
    let k = PolicyKnobs::load(Path::new(&policy)).unwrap();
    let flags = PolicyKnobs {
        allow_insecure_dev: Some(false),
        ..PolicyKnobs::default()
    };
    assert!(k.policy(TeeKind::Dev).unwrap().allow_insecure_dev);
    assert!(
        !k.overridden_by(&flags)
            .policy(TeeKind::Dev)
            .unwrap()
            .allow_insecure_dev
    );
}

#[test]
fn malformed_policy_file_is_one_clear_error() {
    let d = tmpdir("malformed");
    for (name, text, want) in [
        (
            "unknown.toml",
            "any_measurement = true\nallow_debugg = true\n",
            "unknown.toml: line 2, column 1: unknown field `allow_debugg`",
        ),
        ("syntax.toml", "any_measurement = \n", "line 1"),
        (
            "type.toml",
            "vmpl = \"zero\"\n",
            "line 1, column 8, key `vmpl`: invalid type",
        ),
        (
            "both.toml",
            "any_measurement = true\nexpect = \"m.json\"\n",
            "only one of",
        ),
        (
            "hex.toml",
            "measurements = [\"abc\"]\n",
            "measurement \"abc\"",
        ),
    ] {
        let policy = write(&d, name, text.as_bytes());
        let (code, out, err) = run_snp(&policy, &[]);
        assert_eq!(code, 1, "{name}: {out}{err}");
        assert!(out.is_empty(), "{name}: no verdict for a bad policy: {out}");
        assert_eq!(err.lines().count(), 1, "{name}: one line: {err}");
        assert!(
            err.starts_with("error: policy: ") && err.contains(want),
            "{name}: {err}"
        );
    }
    let (code, _, err) = run_snp("/nonexistent/policy.toml", &[]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot read policy file"), "{err}");
}

#[test]
fn policy_knobs_merge_and_binding_rules() {
    let base = Path::new("/etc/pupa");
    let k = PolicyKnobs::from_toml("expect = \"m.json\"\nnonce = \"00\"\n", base).unwrap();
    assert_eq!(k.expect.as_deref(), Some(Path::new("/etc/pupa/m.json")));
    // Partial key binding is refused; report_data together with keys too.
    assert!(matches!(
        k.expected_report_data(),
        Err(VerifyError::Policy(_))
    ));
    let keys = PolicyKnobs {
        hpke_pk: Some("01".repeat(32)),
        receipt_pk: Some("02".repeat(32)),
        nonce: Some("03".repeat(32)),
        ..PolicyKnobs::default()
    };
    assert_eq!(
        keys.expected_report_data().unwrap(),
        Some(pupa_protocol::evidence::report_data(
            &[1; 32], &[2; 32], &[3; 32]
        ))
    );
    // A flag's report_data replaces the file's keys, and flag keys replace a file's report_data.
    let rd = PolicyKnobs {
        report_data: Some("aa".repeat(64)),
        ..PolicyKnobs::default()
    };
    assert_eq!(
        keys.clone()
            .overridden_by(&rd)
            .expected_report_data()
            .unwrap(),
        Some([0xaa; 64])
    );
    assert_eq!(
        rd.overridden_by(&keys).pins().unwrap(),
        Pins {
            hpke_pk: Some([1; 32]),
            receipt_pk: Some([2; 32]),
            nonce: Some([3; 32])
        }
    );
    // The measurement choice is replaced as a whole.
    let any = PolicyKnobs {
        any_measurement: Some(true),
        ..PolicyKnobs::default()
    };
    let merged = k.overridden_by(&any);
    assert_eq!(merged.expect, None);
    assert_eq!(
        merged.measurement(TeeKind::Snp).unwrap(),
        MeasurementPolicy::Any
    );
    // No measurement choice at all is an error, not "any".
    assert!(PolicyKnobs::default().measurement(TeeKind::Snp).is_err());
}

fn any() -> Policy {
    Policy {
        measurement: MeasurementPolicy::Any,
        ..Policy::default()
    }
}

fn endorsements(vcek: bool, collateral: bool) -> Endorsements {
    Endorsements {
        vcek: vcek.then(|| VCEK.to_vec()),
        tdx_collateral: collateral.then(|| tdx::parse_collateral(COLLATERAL).unwrap()),
        now: Some(tdx::parse_now(NOW).unwrap()),
        ..Endorsements::NONE
    }
}

#[test]
fn snp_evidence_checks_everything_and_the_binding() {
    // The sample's REPORT_DATA is not the binding of our keys: only that check fails.
    for (ev_vcek, end_vcek) in [(true, false), (false, true), (true, true)] {
        let ev = snp_evidence(ev_vcek);
        let v = evidence::verify(
            &ev,
            &ev.expected_report_data(),
            &any(),
            &endorsements(end_vcek, false),
        )
        .unwrap();
        assert_eq!(failed(&v), ["REPORT_DATA"], "{v:#?}");
        assert!(v.get("REPORT_DATA").unwrap().detail.contains("binding"));
    }
    // Required REPORT_DATA = the sample's: everything passes.
    let ev = snp_evidence(true);
    let rd = hexfmt::decode_array::<64>(SNP_REPORT_DATA).unwrap();
    let v = evidence::verify(&ev, &rd, &any(), &endorsements(false, false)).unwrap();
    assert!(v.ok(), "{v:#?}");
    // No VCEK anywhere: the chain and signature checks fail.
    let ev = snp_evidence(false);
    let v = evidence::verify(&ev, &rd, &any(), &endorsements(false, false)).unwrap();
    assert!(failed(&v).contains(&"VCEK chain"), "{v:#?}");
}

#[test]
fn tdx_evidence_needs_collateral_and_checks_the_binding() {
    let ev = tdx_evidence();
    let v = evidence::verify(
        &ev,
        &ev.expected_report_data(),
        &any(),
        &endorsements(false, true),
    )
    .unwrap();
    assert_eq!(failed(&v), ["REPORT_DATA"], "{v:#?}");
    let rd: [u8; 64] = QUOTE[TDX_REPORT_DATA..TDX_REPORT_DATA + 64]
        .try_into()
        .unwrap();
    let v = evidence::verify(&ev, &rd, &any(), &endorsements(false, true)).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert!(matches!(
        evidence::verify(&ev, &rd, &any(), &endorsements(false, false)),
        Err(VerifyError::Collateral(_))
    ));
    // With an event log that does not explain the sample's RTMRs (an empty TCG log replays to
    // all zeros), only that check fails.
    let mut with_log = tdx_evidence();
    if let TeeEvidence::Tdx { event_log, .. } = &mut with_log.tee {
        *event_log = Some(serde_bytes::ByteBuf::from(empty_tcg_log()));
    }
    let v = evidence::verify(&with_log, &rd, &any(), &endorsements(false, true)).unwrap();
    assert_eq!(failed(&v), ["RTMR event log"], "{v:#?}");
}

/// A TCG2 log with only the Spec ID event (SHA-384), as TCG PC Client PFP §10.4.5.1 lays it out.
fn empty_tcg_log() -> Vec<u8> {
    let mut spec = Vec::new();
    spec.extend_from_slice(b"Spec ID Event03\0");
    spec.extend_from_slice(&0u32.to_le_bytes()); // platformClass
    spec.extend_from_slice(&[0, 2, 0, 2]); // versionMinor, versionMajor, errata, uintnSize
    spec.extend_from_slice(&1u32.to_le_bytes()); // numberOfAlgorithms
    spec.extend_from_slice(&0x000Cu16.to_le_bytes()); // SHA-384
    spec.extend_from_slice(&48u16.to_le_bytes());
    spec.push(0); // vendorInfoSize
    let mut log = Vec::new();
    log.extend_from_slice(&0u32.to_le_bytes()); // PCR 0
    log.extend_from_slice(&3u32.to_le_bytes()); // EV_NO_ACTION
    log.extend_from_slice(&[0; 20]); // SHA-1 digest field of the legacy header
    log.extend_from_slice(&(spec.len() as u32).to_le_bytes());
    log.extend_from_slice(&spec);
    log
}

#[test]
fn cli_evidence_file_for_snp_and_tdx() {
    let d = tmpdir("cli_evidence");
    let snp_file = write(
        &d,
        "snp.bin",
        &postcard::to_allocvec(&snp_evidence(true)).unwrap(),
    );
    let (code, out, err) = cli(&["--evidence", &snp_file, "--any-measurement", "--now", NOW]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("evidence: SNP"), "{out}");
    assert_eq!(failed_lines(&out), ["REPORT_DATA"], "{out}");
    // The VCEK is past its notAfter in 2031.
    let (_, out, _) = cli(&[
        "--evidence",
        &snp_file,
        "--any-measurement",
        "--now",
        "2031-01-01T00:00:00Z",
    ]);
    assert_eq!(
        failed_lines(&out),
        ["VCEK validity", "REPORT_DATA"],
        "{out}"
    );
    // Freshness: the evidence answers nonce 03..; another required nonce fails its own check.
    let (_, out, _) = cli(&[
        "--evidence",
        &snp_file,
        "--any-measurement",
        "--now",
        NOW,
        "--nonce",
        &"04".repeat(32),
    ]);
    assert_eq!(failed_lines(&out), ["REPORT_DATA", "nonce"], "{out}");
    let (_, out, _) = cli(&[
        "--evidence",
        &snp_file,
        "--any-measurement",
        "--now",
        NOW,
        "--nonce",
        &"03".repeat(32),
        "--hpke-pk",
        &"01".repeat(32),
    ]);
    assert!(
        out.contains("PASS  nonce") && out.contains("PASS  keys"),
        "{out}"
    );
    // --tee must agree with the evidence; --report-data makes no sense with --evidence.
    let (code, _, err) = cli(&["--evidence", &snp_file, "--tee", "tdx", "--any-measurement"]);
    assert_eq!(code, 1);
    assert!(err.contains("holds snp evidence"), "{err}");
    let (code, _, err) = cli(&[
        "--evidence",
        &snp_file,
        "--any-measurement",
        "--report-data",
        &"00".repeat(64),
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("binding of the evidence's own keys"), "{err}");

    let tdx_file = write(
        &d,
        "tdx.bin",
        &postcard::to_allocvec(&tdx_evidence()).unwrap(),
    );
    let coll = format!("{TD}tdx_quote_collateral.json");
    let (code, out, err) = cli(&[
        "--evidence",
        &tdx_file,
        "--collateral",
        &coll,
        "--now",
        NOW,
        "--any-measurement",
    ]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.starts_with("evidence: TDX"), "{out}");
    assert_eq!(failed_lines(&out), ["REPORT_DATA"], "{out}");
    let (code, _, err) = cli(&["--evidence", &tdx_file, "--now", NOW, "--any-measurement"]);
    assert_eq!(code, 1);
    assert!(err.contains("--collateral FILE"), "{err}");
    // Garbage is an error, not a verdict.
    let junk = write(&d, "junk.bin", &[0xff; 40]);
    let (code, out, err) = cli(&["--evidence", &junk, "--any-measurement"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert!(
        err.contains("evidence: not a postcard Evidence message"),
        "{err}"
    );
}
