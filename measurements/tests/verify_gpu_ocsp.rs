//! GPU revocation from OCSP responses (`--gpu-ocsp`, verify/gpu/ocsp.rs).
//!
//! No recorded NVIDIA OCSP response exists offline, so these tests build a test PKI (root ←
//! intermediate ← leaf, P-384, with RustCrypto's certificate builder) and OCSP responses over it
//! (x509-ocsp's builder), and call [`check_chain_revocation`] with that chain directly. The CLI
//! test runs the real NVIDIA 2023 sample with a garbage response file.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use p384::ecdsa::{DerSignature, SigningKey};
use pupa_measurements::verify::gpu::certs::ChainCert;
use pupa_measurements::verify::gpu::ocsp::{check_chain_revocation, parse_response};
use pupa_measurements::verify::policy_file::PolicyKnobs;
use sha2::Sha384;
use time::OffsetDateTime;
use x509_cert::builder::{Builder, CertificateBuilder, Profile};
use x509_cert::der::asn1::{OctetString, UtcTime};
use x509_cert::der::{DateTime, Encode};
use x509_cert::ext::pkix::{CrlReason, ExtendedKeyUsage};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{ObjectIdentifier, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;
use x509_ocsp::builder::OcspResponseBuilder;
use x509_ocsp::{
    CertId, CertStatus, OcspGeneralizedTime, OcspResponse, ResponderId, RevokedInfo, SingleResponse,
};

/// 2025-01-01T00:00:00Z.
const NOW: u64 = 1_735_689_600;
const DAY: u64 = 86_400;
const OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
const SERVER_AUTH: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1");

fn key(b: u8) -> SigningKey {
    SigningKey::from_slice(&[b; 48]).unwrap()
}

fn utc(s: u64) -> Time {
    Time::UtcTime(UtcTime::from_unix_duration(Duration::from_secs(s)).unwrap())
}

fn gt(s: u64) -> OcspGeneralizedTime {
    OcspGeneralizedTime::from(DateTime::from_unix_duration(Duration::from_secs(s)).unwrap())
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW as i64).unwrap()
}

/// A certificate for `subject_key`, signed by `signer`, valid a year either side of [`NOW`].
fn cert(
    profile: Profile,
    serial: u32,
    subject: &str,
    subject_key: &SigningKey,
    signer: &SigningKey,
    eku: Option<Vec<ObjectIdentifier>>,
) -> Certificate {
    let spki = SubjectPublicKeyInfoOwned::from_key(*subject_key.verifying_key()).unwrap();
    let validity = Validity {
        not_before: utc(NOW - 365 * DAY),
        not_after: utc(NOW + 365 * DAY),
    };
    let mut b = CertificateBuilder::new(
        profile,
        SerialNumber::from(serial),
        validity,
        name(subject),
        spki,
        signer,
    )
    .unwrap();
    if let Some(e) = eku {
        b.add_extension(&ExtendedKeyUsage(e)).unwrap();
    }
    b.build::<DerSignature>().unwrap()
}

fn leaf_profile(issuer: &str) -> Profile {
    Profile::Leaf {
        issuer: name(issuer),
        enable_key_agreement: false,
        enable_key_encipherment: false,
    }
}

const ROOT: &str = "CN=Test Root,O=pupa";
const ICA: &str = "CN=Test ICA,O=pupa";
const LEAF: &str = "CN=Test Leaf,O=pupa";
const RESPONDER: &str = "CN=Test OCSP Responder,O=pupa";

/// The test PKI: root (key 1) ← ICA (key 2) ← leaf (key 3); a delegated responder of the ICA
/// (key 4, id-kp-OCSPSigning), one without that EKU (key 5), and one with it but issued by the
/// root (key 6).
struct Pki {
    root: Certificate,
    ica: Certificate,
    leaf: Certificate,
    responder: Certificate,
    no_eku: Certificate,
    root_issued: Certificate,
}

fn pki() -> Pki {
    let root = cert(Profile::Root, 1, ROOT, &key(1), &key(1), None);
    let sub = Profile::SubCA {
        issuer: name(ROOT),
        path_len_constraint: None,
    };
    let ica = cert(sub, 2, ICA, &key(2), &key(1), None);
    let leaf = cert(leaf_profile(ICA), 3, LEAF, &key(3), &key(2), None);
    let responder = cert(
        leaf_profile(ICA),
        4,
        RESPONDER,
        &key(4),
        &key(2),
        Some(vec![OCSP_SIGNING]),
    );
    let no_eku = cert(
        leaf_profile(ICA),
        5,
        RESPONDER,
        &key(5),
        &key(2),
        Some(vec![SERVER_AUTH]),
    );
    let root_issued = cert(
        leaf_profile(ROOT),
        6,
        RESPONDER,
        &key(6),
        &key(1),
        Some(vec![OCSP_SIGNING]),
    );
    Pki {
        root,
        ica,
        leaf,
        responder,
        no_eku,
        root_issued,
    }
}

impl Pki {
    /// Leaf first, root last, as NVML returns a GPU chain.
    fn chain(&self) -> Vec<ChainCert> {
        [&self.leaf, &self.ica, &self.root]
            .iter()
            .map(|c| ChainCert::from_der(c.to_der().unwrap()).unwrap())
            .collect()
    }
}

/// A single response for `cert` issued by `issuer` (CertID over SHA-384), current at [`NOW`]
/// when `next` is a day ahead.
fn single(
    cert: &Certificate,
    issuer: &Certificate,
    status: CertStatus,
    next: Option<u64>,
) -> SingleResponse {
    let id = CertId::from_cert::<Sha384>(issuer, cert).unwrap();
    let s = SingleResponse::new(id, status, gt(NOW - DAY));
    match next {
        Some(n) => s.with_next_update(gt(n)),
        None => s,
    }
}

fn good(cert: &Certificate, issuer: &Certificate) -> SingleResponse {
    single(cert, issuer, CertStatus::good(), Some(NOW + DAY))
}

/// A DER OCSPResponse with `singles`, naming `responder`, signed by `key`, carrying `certs`.
fn response(
    singles: Vec<SingleResponse>,
    responder: impl Into<ResponderId>,
    key: &SigningKey,
    certs: Option<Vec<Certificate>>,
) -> Vec<u8> {
    let mut b = OcspResponseBuilder::new(responder);
    for s in singles {
        b = b.with_single_response(s);
    }
    b.sign::<_, DerSignature>(&mut key.clone(), certs, gt(NOW - DAY))
        .unwrap()
        .to_der()
        .unwrap()
}

/// The ICA's own response for itself, signed by the root: always valid, so that each test
/// varies only the leaf's.
fn ica_ok(p: &Pki) -> Vec<u8> {
    response(vec![good(&p.ica, &p.root)], name(ROOT), &key(1), None)
}

fn check(p: &Pki, responses: &[Vec<u8>]) -> Result<String, String> {
    check_chain_revocation(&p.chain(), 0, responses, now())
}

#[test]
fn good_responses_by_the_issuers_pass() {
    let p = pki();
    let leaf = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(2), None);
    let r = check(&p, &[leaf, ica_ok(&p)]).unwrap();
    assert!(r.contains("2 certificate(s)"), "{r}");
    assert!(r.contains("Test Leaf") && r.contains("Test ICA"), "{r}");
}

/// From index 1 (what the GPU chain uses: its leaf is issued by the device, without OCSP
/// status), the leaf needs no response.
#[test]
fn from_index_one_the_leaf_needs_no_response() {
    let p = pki();
    let r = check_chain_revocation(&p.chain(), 1, &[ica_ok(&p)], now()).unwrap();
    assert!(
        r.contains("1 certificate(s): Test ICA (not the first 1"),
        "{r}"
    );
    let e = check_chain_revocation(&p.chain(), 2, &[ica_ok(&p)], now()).unwrap_err();
    assert!(e.contains("none to check"), "{e}");
}

#[test]
fn one_response_may_cover_several_certificates() {
    let p = pki();
    // The root signs both; for the leaf the root is not the issuer, so that one must not count.
    let both = response(
        vec![good(&p.ica, &p.root), good(&p.leaf, &p.ica)],
        name(ROOT),
        &key(1),
        None,
    );
    let e = check(&p, std::slice::from_ref(&both)).unwrap_err();
    assert!(e.contains("certificate 0 (Test Leaf)"), "{e}");
    assert!(e.contains("not authorized"), "{e}");
    let leaf = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(2), None);
    check(&p, &[both, leaf]).unwrap();
}

#[test]
fn a_delegated_responder_of_the_issuer_passes_by_name_and_by_key() {
    let p = pki();
    let certs = Some(vec![p.responder.clone()]);
    let by_name = response(
        vec![good(&p.leaf, &p.ica)],
        name(RESPONDER),
        &key(4),
        certs.clone(),
    );
    check(&p, &[by_name, ica_ok(&p)]).unwrap();
    let spk = p
        .responder
        .tbs_certificate
        .subject_public_key_info
        .subject_public_key
        .raw_bytes();
    use sha1::Digest as _;
    let hash = OctetString::new(sha1::Sha1::digest(spk).to_vec()).unwrap();
    let by_key = response(
        vec![good(&p.leaf, &p.ica)],
        ResponderId::ByKey(hash),
        &key(4),
        certs,
    );
    check(&p, &[by_key, ica_ok(&p)]).unwrap();
}

#[test]
fn a_sha1_cert_id_matches_too() {
    let p = pki();
    let id = CertId::from_cert::<sha1::Sha1>(&p.ica, &p.leaf).unwrap();
    let s =
        SingleResponse::new(id, CertStatus::good(), gt(NOW - DAY)).with_next_update(gt(NOW + DAY));
    let leaf = response(vec![s], name(ICA), &key(2), None);
    check(&p, &[leaf, ica_ok(&p)]).unwrap();
}

#[test]
fn revoked_fails_naming_the_certificate_time_and_reason() {
    let p = pki();
    let info = RevokedInfo {
        revocation_time: gt(NOW - 10 * DAY),
        revocation_reason: Some(CrlReason::KeyCompromise),
    };
    let revoked = single(&p.leaf, &p.ica, CertStatus::revoked(info), Some(NOW + DAY));
    let leaf = response(vec![revoked], name(ICA), &key(2), None);
    // Revoked wins over another, good, response for the same certificate.
    let also_good = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(2), None);
    let e = check(&p, &[also_good, leaf, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("certificate 0 (Test Leaf)"), "{e}");
    assert!(e.contains("REVOKED at 2024-12-22T00:00:00Z"), "{e}");
    assert!(e.contains("KeyCompromise"), "{e}");
}

#[test]
fn stale_or_undated_responses_fail() {
    let p = pki();
    let expired = response(
        vec![single(&p.leaf, &p.ica, CertStatus::good(), Some(NOW))],
        name(ICA),
        &key(2),
        None,
    );
    let e = check(&p, &[expired, ica_ok(&p)]).unwrap_err();
    assert!(
        e.contains("expired: nextUpdate 2025-01-01T00:00:00Z"),
        "{e}"
    );
    let undated = response(
        vec![single(&p.leaf, &p.ica, CertStatus::good(), None)],
        name(ICA),
        &key(2),
        None,
    );
    let e = check(&p, &[undated, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("no nextUpdate"), "{e}");
    let id = CertId::from_cert::<Sha384>(&p.ica, &p.leaf).unwrap();
    let future =
        SingleResponse::new(id, CertStatus::good(), gt(NOW + 1)).with_next_update(gt(NOW + DAY));
    let future = response(vec![future], name(ICA), &key(2), None);
    let e = check(&p, &[future, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("thisUpdate") && e.contains("after now"), "{e}");
    let unknown = response(
        vec![single(
            &p.leaf,
            &p.ica,
            CertStatus::unknown(),
            Some(NOW + DAY),
        )],
        name(ICA),
        &key(2),
        None,
    );
    let e = check(&p, &[unknown, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("certStatus unknown"), "{e}");
}

#[test]
fn a_signature_not_by_the_issuer_fails() {
    let p = pki();
    // Names the ICA, signed with the leaf's key.
    let forged = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(3), None);
    let e = check(&p, &[forged, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("certificate 0 (Test Leaf)"), "{e}");
    assert!(
        e.contains("signature does not verify with Test ICA's key"),
        "{e}"
    );
    // A delegated responder's certificate, signed with another key.
    let forged = response(
        vec![good(&p.leaf, &p.ica)],
        name(RESPONDER),
        &key(5),
        Some(vec![p.responder.clone()]),
    );
    let e = check(&p, &[forged, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("signature does not verify"), "{e}");
}

#[test]
fn a_cert_id_of_another_serial_is_no_response() {
    let p = pki();
    let id = CertId::from_issuer::<Sha384>(&p.ica, SerialNumber::from(999u32)).unwrap();
    let s =
        SingleResponse::new(id, CertStatus::good(), gt(NOW - DAY)).with_next_update(gt(NOW + DAY));
    let other = response(vec![s], name(ICA), &key(2), None);
    let e = check(&p, &[other, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("certificate 0 (Test Leaf)"), "{e}");
    assert!(e.contains("no OCSP response for it (serial 03)"), "{e}");
    // The right serial under another issuer (the root) is not the leaf's CertID either.
    let id = CertId::from_cert::<Sha384>(&p.root, &p.leaf).unwrap();
    let s =
        SingleResponse::new(id, CertStatus::good(), gt(NOW - DAY)).with_next_update(gt(NOW + DAY));
    let other = response(vec![s], name(ROOT), &key(1), None);
    let e = check(&p, &[other, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("no OCSP response for it"), "{e}");
}

#[test]
fn a_missing_certificate_is_named() {
    let p = pki();
    let e = check(&p, &[ica_ok(&p)]).unwrap_err();
    assert!(
        e.starts_with("certificate 0 (Test Leaf): no OCSP response"),
        "{e}"
    );
    let leaf = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(2), None);
    let e = check(&p, &[leaf]).unwrap_err();
    assert!(
        e.starts_with("certificate 1 (Test ICA): no OCSP response"),
        "{e}"
    );
    let e = check(&p, &[]).unwrap_err();
    assert_eq!(e, "no OCSP response given");
}

#[test]
fn unauthorized_responders_fail() {
    let p = pki();
    let cases = [
        (&p.no_eku, 5, "extendedKeyUsage without id-kp-OCSPSigning"),
        (&p.root_issued, 6, "is not the next certificate"),
    ];
    for (c, k, why) in cases {
        let r = response(
            vec![good(&p.leaf, &p.ica)],
            name(RESPONDER),
            &key(k),
            Some(vec![c.clone()]),
        );
        let e = check(&p, &[r, ica_ok(&p)]).unwrap_err();
        assert!(e.contains("not authorized"), "{e}");
        assert!(e.contains(why), "{e}");
    }
    // Named responder, certificate not included.
    let r = response(vec![good(&p.leaf, &p.ica)], name(RESPONDER), &key(4), None);
    let e = check(&p, &[r, ica_ok(&p)]).unwrap_err();
    assert!(e.contains("responder not authorized"), "{e}");
}

#[test]
fn malformed_responses_get_a_parse_error_not_a_panic() {
    let p = pki();
    let good_leaf = response(vec![good(&p.leaf, &p.ica)], name(ICA), &key(2), None);
    let mut inputs: Vec<Vec<u8>> = vec![
        Vec::new(),
        b"garbage".to_vec(),
        vec![0x30, 0x80, 0x00, 0x00],
        vec![0x30; 100],
    ];
    for n in [1, 10, good_leaf.len() / 2, good_leaf.len() - 1] {
        inputs.push(good_leaf[..n].to_vec());
    }
    let mut trailing = good_leaf.clone();
    trailing.push(0);
    inputs.push(trailing);
    for bad in &inputs {
        let e = check(&p, &[bad.clone(), ica_ok(&p)]).unwrap_err();
        assert!(e.starts_with("OCSP response #1: not a DER "), "{e}");
    }
    // Every single-byte flip: an error or a refusal, never a panic, never a pass except
    // where the flip leaves the signed content and the certificate's CertID intact.
    for i in 0..good_leaf.len() {
        let mut f = good_leaf.clone();
        f[i] ^= 0x01;
        let _ = check(&p, &[f, ica_ok(&p)]);
    }
    let unauthorized = OcspResponse::unauthorized().to_der().unwrap();
    let e = parse_response(&unauthorized).unwrap_err();
    assert!(e.contains("not successful"), "{e}");
    let e = check(&p, &[ica_ok(&p), vec![0u8; 70_000]]).unwrap_err();
    assert!(
        e.starts_with("OCSP response #2: 70000 bytes exceeds"),
        "{e}"
    );
}

#[test]
fn the_policy_file_takes_gpu_ocsp_relative_to_itself() {
    let k = PolicyKnobs::from_toml(
        "gpu_ocsp = [\"a.der\", \"/abs/b.der\"]\n",
        Path::new("/etc/pupa"),
    )
    .unwrap();
    let got = k.gpu_ocsp.unwrap();
    assert_eq!(got[0], Path::new("/etc/pupa/a.der"));
    assert_eq!(got[1], Path::new("/abs/b.der"));
}

/// `--gpu-ocsp garbage.der` on NVIDIA's 2023 sample: the revocation line fails with the parse
/// reason (it is neither skipped nor passed), and everything else still passes.
#[test]
fn the_cli_fails_revocation_on_a_garbage_response() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/gpu/hopper-2023/");
    let garbage = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify_gpu_ocsp_garbage.der");
    std::fs::write(&garbage, b"this is not DER").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
        .arg("verify")
        .args(["--gpu-report", &format!("{dir}attestationReport.txt")])
        .args(["--gpu-chain", &format!("{dir}gpuAkCertChain.txt")])
        .args([
            "--gpu-nonce",
            "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e",
        ])
        .args(["--gpu-rim", &format!("{dir}Driver_RIM_test_no_gpu.swidtag")])
        .args([
            "--gpu-rim",
            &format!("{dir}1010_0200_882_96005E0001_test_no_gpu.swidtag"),
        ])
        .args(["--now", "2024-03-01T00:00:00Z"])
        .arg("--gpu-ocsp")
        .arg(&garbage)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("gpu revocation"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(
        line.contains("OCSP response #1: not a DER OCSPResponse"),
        "{line}"
    );
    assert!(text.contains("REJECTED (1 of 13 checks failed)"), "{text}");

    // A well-formed, properly signed response about another chain: the revocation line names
    // the first NVIDIA certificate without a response, index 1 (the device-issued leaf, index
    // 0, needs none).
    let p = pki();
    let other = Path::new(env!("CARGO_TARGET_TMPDIR")).join("verify_gpu_ocsp_other.der");
    std::fs::write(&other, ica_ok(&p)).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pupa-measure"))
        .arg("verify")
        .args(["--gpu-report", &format!("{dir}attestationReport.txt")])
        .args(["--gpu-chain", &format!("{dir}gpuAkCertChain.txt")])
        .args([
            "--gpu-nonce",
            "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e",
        ])
        .args(["--now", "2024-03-01T00:00:00Z"])
        .arg("--gpu-ocsp")
        .arg(&other)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    let line = text
        .lines()
        .find(|l| l.contains("gpu revocation"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(line.contains("FAIL"), "{line}");
    assert!(line.contains("certificate 1 ("), "{line}");
    assert!(line.contains("no OCSP response for it"), "{line}");
}
