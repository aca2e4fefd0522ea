//! GPU evidence end to end against NVIDIA's real samples (testdata/gpu/SOURCE): the 2023 report
//! with both 2023 RIMs passes every line at 2024-03-01 (all active golden measurements equal),
//! fails exactly the RIM lines today (the RIM signer has expired) and the version lines against
//! the 2025 report; revocation fails unless explicitly skipped (then it warns); inside an
//! `Evidence` message the NVIDIA sample's nonce is not pupa's derived nonce, so exactly the
//! nonce line fails; a policy that requires a GPU refuses evidence without one.

use pupa_measurements::verify::gpu::evidence::{
    check_evidence, check_one, load_rims, GpuCollateral, GpuPolicy,
};
use pupa_measurements::verify::gpu::spdm;
use pupa_measurements::verify::{TeeKind, Verdict};
use pupa_protocol::evidence::{sign_dev, Evidence, GpuEvidence, TeeEvidence};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const REPORT_2023: &[u8] = include_bytes!("../testdata/gpu/hopper-2023/attestationReport.txt");
const CHAIN_2023: &[u8] = include_bytes!("../testdata/gpu/hopper-2023/gpuAkCertChain.txt");
const REPORT_2025: &[u8] =
    include_bytes!("../testdata/gpu/hopper-2025/hopperAttestationReport.txt");
const CHAIN_2025: &[u8] = include_bytes!("../testdata/gpu/hopper-2025/hopperCertChain.txt");
const DRIVER_RIM: &[u8] =
    include_bytes!("../testdata/gpu/hopper-2023/Driver_RIM_test_no_gpu.swidtag");
const VBIOS_RIM: &[u8] =
    include_bytes!("../testdata/gpu/hopper-2023/1010_0200_882_96005E0001_test_no_gpu.swidtag");
const NONCE_2023: &str = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e";
const NONCE_2025: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn nonce(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn coll(skip_revocation: bool) -> GpuCollateral {
    GpuCollateral {
        rims: vec![VBIOS_RIM.to_vec(), DRIVER_RIM.to_vec()],
        ocsp: Vec::new(),
        skip_revocation,
    }
}

fn one(report: &[u8], chain: &[u8], n: &str, now: &str, c: &GpuCollateral) -> Verdict {
    let mut v = Verdict::new(TeeKind::Dev);
    let rims = load_rims(&c.rims, at(now));
    check_one(
        &mut v,
        "gpu0",
        report,
        chain,
        &nonce(n),
        &rims,
        &GpuPolicy::NONE,
        c,
        at(now),
    );
    v
}

fn failed(v: &Verdict) -> Vec<&str> {
    v.checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

#[test]
fn the_2023_set_verifies_completely_at_its_time() {
    let v = one(
        REPORT_2023,
        CHAIN_2023,
        NONCE_2023,
        "2024-03-01T00:00:00Z",
        &coll(true),
    );
    for c in &v.checks {
        println!(
            "{:24} {} {}",
            c.name,
            if c.passed { "ok  " } else { "FAIL" },
            c.detail
        );
    }
    assert!(v.ok(), "{:?}", failed(&v));
    let m = v.get("gpu0 measurements").unwrap();
    assert!(
        m.detail.contains("driver 545.00, VBIOS 96.00.5e.00.01"),
        "{}",
        m.detail
    );
    assert!(v.warnings.iter().any(|w| w.contains("revocation")));
}

#[test]
fn revocation_is_never_skipped_silently() {
    let v = one(
        REPORT_2023,
        CHAIN_2023,
        NONCE_2023,
        "2024-03-01T00:00:00Z",
        &coll(false),
    );
    assert_eq!(failed(&v), ["gpu0 revocation"]);
    assert!(!v.warnings.iter().any(|w| w.contains("revocation")));
}

#[test]
fn today_the_2023_rims_fail_their_chain_and_nothing_else_changes() {
    let v = one(
        REPORT_2023,
        CHAIN_2023,
        NONCE_2023,
        "2026-12-03T00:00:00Z",
        &coll(true),
    );
    let f = failed(&v);
    assert!(
        f.contains(&"gpu0 driver rim") && f.contains(&"gpu0 vbios rim"),
        "{f:?}"
    );
    assert!(f.contains(&"gpu0 measurements"), "{f:?}");
    let d = &v.get("gpu0 driver rim").unwrap().detail;
    assert!(d.contains("RIM #"), "{d}");
    // The report itself, its chain and nonce still verify today.
    for name in ["gpu0 report signature", "gpu0 cert chain", "gpu0 nonce"] {
        assert!(v.get(name).unwrap().passed, "{name}");
    }
}

#[test]
fn the_2025_report_fails_the_rim_versions() {
    let v = one(
        REPORT_2025,
        CHAIN_2025,
        NONCE_2025,
        "2024-03-01T00:00:00Z",
        &coll(true),
    );
    let f = failed(&v);
    assert_eq!(
        f,
        ["gpu0 driver rim", "gpu0 vbios rim", "gpu0 measurements"],
        "{:#?}",
        v.checks
    );
    let d = &v.get("gpu0 driver rim").unwrap().detail;
    assert!(
        d.contains("550.90.07") && d.contains("verified RIM 545.00"),
        "{d}"
    );
}

#[test]
fn a_measurement_differing_from_the_rims_fails_the_comparison() {
    // Flip a byte inside the value of one measurement block: the signature line fails (the
    // response is signed) and the comparison names the index.
    let mut bin = spdm::decode(REPORT_2023).unwrap();
    let r = spdm::parse_report(&bin).unwrap();
    let b = &r.response.blocks[4];
    let pos = bin
        .windows(b.value.len())
        .position(|w| w == b.value.as_slice())
        .unwrap();
    bin[pos] ^= 1;
    let v = one(
        &bin,
        CHAIN_2023,
        NONCE_2023,
        "2024-03-01T00:00:00Z",
        &coll(true),
    );
    let f = failed(&v);
    assert!(f.contains(&"gpu0 report signature"), "{f:?}");
    let m = &v.get("gpu0 measurements").unwrap().detail;
    assert!(
        m.contains(&format!("(block {}): value differs", b.index)),
        "{m}"
    );
}

#[test]
fn version_policy_is_applied() {
    let c = coll(true);
    let now = at("2024-03-01T00:00:00Z");
    let rims = load_rims(&c.rims, now);
    let mut v = Verdict::new(TeeKind::Dev);
    let p = GpuPolicy {
        require_gpus: 1,
        driver_versions: vec!["550.90.07".into()],
        vbios_versions: Vec::new(),
    };
    let n = nonce(NONCE_2023);
    check_one(
        &mut v,
        "gpu0",
        REPORT_2023,
        CHAIN_2023,
        &n,
        &rims,
        &p,
        &c,
        now,
    );
    assert_eq!(failed(&v), ["gpu0 version policy"]);
    assert!(v
        .get("gpu0 version policy")
        .unwrap()
        .detail
        .contains("545.00 not in 550.90.07"));
}

fn evidence(gpus: Vec<GpuEvidence>) -> Evidence {
    let (hpke_pk, receipt_pk, nonce) = ([1; 32], [2; 32], [3; 32]);
    let rd = pupa_protocol::evidence::report_data(&hpke_pk, &receipt_pk, &nonce);
    Evidence {
        hpke_pk,
        receipt_pk,
        nonce,
        tee: TeeEvidence::Dev(sign_dev(&[9; 48], &rd)),
        gpus,
    }
}

#[test]
fn inside_evidence_a_report_not_over_the_derived_nonce_fails_exactly_the_nonce() {
    let ev = evidence(vec![GpuEvidence {
        report: spdm::decode(REPORT_2023).unwrap(),
        cert_chain: CHAIN_2023.to_vec(),
    }]);
    let mut v = Verdict::new(TeeKind::Dev);
    let p = GpuPolicy {
        require_gpus: 1,
        ..GpuPolicy::NONE
    };
    check_evidence(&mut v, &ev, &p, &coll(true), at("2024-03-01T00:00:00Z"));
    assert_eq!(failed(&v), ["gpu0 nonce"]);
    assert!(v.get("gpu count").unwrap().passed);
}

#[test]
fn a_policy_requiring_a_gpu_refuses_evidence_without_one() {
    let mut v = Verdict::new(TeeKind::Dev);
    let p = GpuPolicy {
        require_gpus: 1,
        ..GpuPolicy::NONE
    };
    check_evidence(
        &mut v,
        &evidence(Vec::new()),
        &p,
        &coll(true),
        at("2024-03-01T00:00:00Z"),
    );
    assert_eq!(failed(&v), ["gpu count"]);
    // Without a requirement and without GPUs there is no GPU line at all.
    let mut v = Verdict::new(TeeKind::Dev);
    check_evidence(
        &mut v,
        &evidence(Vec::new()),
        &GpuPolicy::NONE,
        &coll(false),
        at("2024-03-01T00:00:00Z"),
    );
    assert!(v.checks.is_empty());
}

/// `pupa-measure verify --gpu-report`: the same lines on the command line; the exit status says
/// the verdict, and revocation is never skipped without the flag.
#[test]
fn the_cli_verifies_one_report_with_its_rims() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/gpu/hopper-2023/");
    let run = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
            .arg("verify")
            .args(["--gpu-report", &format!("{dir}attestationReport.txt")])
            .args(["--gpu-chain", &format!("{dir}gpuAkCertChain.txt")])
            .args(["--gpu-nonce", NONCE_2023])
            .args(["--gpu-rim", &format!("{dir}Driver_RIM_test_no_gpu.swidtag")])
            .args([
                "--gpu-rim",
                &format!("{dir}1010_0200_882_96005E0001_test_no_gpu.swidtag"),
            ])
            .args(["--now", "2024-03-01T00:00:00Z"])
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, text) = run(&["--gpu-skip-revocation"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("verdict: ACCEPTED (13 checks passed)"),
        "{text}"
    );
    let (ok, text) = run(&[]);
    assert!(!ok);
    assert!(text.contains("FAIL  gpu revocation"), "{text}");
    assert!(text.contains("REJECTED (1 of 13 checks failed)"), "{text}");
    let (ok, text) = run(&["--gpu-skip-revocation", "--gpu-driver-version", "550.90.07"]);
    assert!(!ok);
    assert!(text.contains("FAIL  gpu version policy"), "{text}");
}
