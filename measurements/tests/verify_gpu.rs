//! GPU evidence against NVIDIA's real Hopper samples (testdata/gpu/SOURCE): the 2023 set
//! verifies at 2024-03-01, the 2025 report's signature, chain, FWID and nonce verify; each
//! tampered region, a wrong nonce, a broken chain and a time outside validity fail their own
//! check with their own reason; no truncation or length mutation panics.

use pupa_measurements::verify::gpu::spdm::{self, SpdmError};
use pupa_measurements::verify::gpu::{check, gpu_nonce, verify_gpu_report, GpuVerdict};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const REPORT_2023: &[u8] = include_bytes!("../testdata/gpu/hopper-2023/attestationReport.txt");
const CHAIN_2023: &[u8] = include_bytes!("../testdata/gpu/hopper-2023/gpuAkCertChain.txt");
const REPORT_2025: &[u8] =
    include_bytes!("../testdata/gpu/hopper-2025/hopperAttestationReport.txt");
const CHAIN_2025: &[u8] = include_bytes!("../testdata/gpu/hopper-2025/hopperCertChain.txt");
const NONCE_2023: &str = "4cff7f5380ead8fad8ec2c531c110aca4302a88f603792801a8ca29ee151af2e";
const NONCE_2025: &str = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb";

fn at(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap()
}

fn nonce(h: &str) -> [u8; 32] {
    hex::decode(h).unwrap().try_into().unwrap()
}

fn bin(report_hex: &[u8]) -> Vec<u8> {
    spdm::decode(report_hex).unwrap()
}

fn failed(v: &GpuVerdict) -> Vec<&str> {
    v.failures().map(|c| c.name.as_str()).collect()
}

fn detail<'a>(v: &'a GpuVerdict, name: &str) -> &'a str {
    &v.get(name).unwrap().detail
}

fn verify_2023(report: &[u8]) -> GpuVerdict {
    verify_gpu_report(
        report,
        CHAIN_2023,
        &nonce(NONCE_2023),
        at("2024-03-01T00:00:00Z"),
    )
}

/// PEM blocks of a chain, to drop or reorder.
fn pem_blocks(chain: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(chain).unwrap();
    text.split_inclusive("-----END CERTIFICATE-----")
        .map(str::trim)
        .filter(|b| !b.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn sample_2023_verifies_at_its_time() {
    let v = verify_2023(REPORT_2023);
    assert!(v.ok(), "{v:#?}");
    let names: Vec<&str> = v.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            check::PARSE,
            check::CHAIN,
            check::VALIDITY,
            check::SIGNATURE,
            check::FWID,
            check::NONCE,
            check::MODE,
            check::VERSIONS
        ]
    );
    let r = v.report.as_ref().unwrap();
    assert_eq!(r.driver_version.as_deref(), Some("545.00"));
    assert_eq!(r.vbios_version.as_deref(), Some("96.00.5e.00.01"));
    assert_eq!(r.nonce, NONCE_2023);
    assert_eq!(r.measurements.len(), 64);
    assert!(r.measurements.iter().zip(1..).all(|(m, i)| m.index == i));
    assert!(r.measurements.iter().all(|m| m.value.len() == 48));
    assert_eq!(r.nvdec0_status, Some(0x55));
    assert_eq!(r.opaque_data_version, 0);
    // No feature flag in this report: CC/devtools mode unstated, said so as a warning.
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    assert!(detail(&v, check::CHAIN).contains("NVIDIA Device Identity CA"));
    // The binary form verifies the same.
    assert!(verify_2023(&bin(REPORT_2023)).ok());
}

#[test]
fn sample_2025_signature_chain_fwid_and_nonce_verify() {
    let v = verify_gpu_report(
        REPORT_2025,
        CHAIN_2025,
        &nonce(NONCE_2025),
        at("2026-12-03T00:00:00Z"),
    );
    assert!(v.ok(), "{v:#?}");
    assert!(detail(&v, check::FWID).contains("equals"), "{v:#?}");
    let r = v.report.as_ref().unwrap();
    assert_eq!(r.driver_version.as_deref(), Some("550.90.07"));
    assert_eq!(r.vbios_version.as_deref(), Some("96.00.9f.00.01"));
}

/// The report with `f` applied to its binary form, verified like the 2023 sample.
fn tampered(f: impl FnOnce(&mut Vec<u8>)) -> GpuVerdict {
    let mut raw = bin(REPORT_2023);
    f(&mut raw);
    verify_2023(&raw)
}

fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn each_signed_region_is_covered_by_the_signature() {
    const SIG_FAIL: &str = "does not verify with";
    // A byte of the request's nonce: the signature and the nonce fail.
    let v = tampered(|r| r[10] ^= 1);
    assert_eq!(failed(&v), [check::SIGNATURE, check::NONCE]);
    assert!(detail(&v, check::SIGNATURE).contains(SIG_FAIL));
    assert!(detail(&v, check::NONCE).contains("not the expected"));
    // The request's slot: signed, so only the signature fails.
    let v = tampered(|r| r[36] = 1);
    assert_eq!(failed(&v), [check::SIGNATURE]);
    // A byte of measurement block 2's value (request 37 + header 8 + block 1 (55) + 7).
    let v = tampered(|r| r[37 + 8 + 55 + 7] ^= 0x80);
    assert_eq!(failed(&v), [check::SIGNATURE]);
    assert!(detail(&v, check::SIGNATURE).contains(SIG_FAIL));
    // The responder's nonce.
    let v = tampered(|r| {
        let at = 37 + 8 + 3520;
        r[at] ^= 1;
    });
    assert_eq!(failed(&v), [check::SIGNATURE]);
    // Opaque data: the driver version 545.00 → 645.00.
    let v = tampered(|r| {
        let at = find(r, b"545.00\0");
        r[at] = b'6';
    });
    assert_eq!(failed(&v), [check::SIGNATURE]);
    assert_eq!(
        v.report.as_ref().unwrap().driver_version.as_deref(),
        Some("645.00")
    );
    // The signature's last byte (s).
    let v = tampered(|r| {
        let n = r.len();
        r[n - 1] ^= 1;
    });
    assert_eq!(failed(&v), [check::SIGNATURE]);
    assert!(detail(&v, check::SIGNATURE).contains(SIG_FAIL));
    // r = 0 is not a signature at all.
    let v = tampered(|r| {
        let n = r.len();
        r[n - 96..n - 48].fill(0);
    });
    assert_eq!(failed(&v), [check::SIGNATURE]);
    assert!(detail(&v, check::SIGNATURE).contains("zero"));
}

#[test]
fn wrong_nonce_fails_only_the_nonce() {
    let v = verify_gpu_report(
        REPORT_2023,
        CHAIN_2023,
        &nonce(NONCE_2025),
        at("2024-03-01T00:00:00Z"),
    );
    assert_eq!(failed(&v), [check::NONCE]);
    assert!(detail(&v, check::NONCE).contains(NONCE_2025));
    // pupa's derived nonce is not NVIDIA's sample nonce either.
    let v = verify_gpu_report(
        REPORT_2023,
        CHAIN_2023,
        &gpu_nonce(&[0; 64], 0),
        at("2024-03-01T00:00:00Z"),
    );
    assert_eq!(failed(&v), [check::NONCE]);
}

fn with_chain(blocks: &[String]) -> GpuVerdict {
    let pem = blocks.join("\n");
    verify_gpu_report(
        REPORT_2023,
        pem.as_bytes(),
        &nonce(NONCE_2023),
        at("2024-03-01T00:00:00Z"),
    )
}

#[test]
fn broken_chains_fail_the_chain_check() {
    let blocks = pem_blocks(CHAIN_2023);
    assert_eq!(blocks.len(), 5);
    // An intermediate dropped.
    let mut b = blocks.clone();
    b.remove(2);
    let v = with_chain(&b);
    assert_eq!(failed(&v), [check::CHAIN]);
    assert!(detail(&v, check::CHAIN).contains("4 certificates"));
    // Two intermediates swapped: the leaf's issuer is not the next certificate.
    let mut b = blocks.clone();
    b.swap(1, 2);
    let v = with_chain(&b);
    assert_eq!(failed(&v), [check::CHAIN]);
    assert!(detail(&v, check::CHAIN).contains("is not the next certificate"));
    // The root dropped and the first intermediate repeated: not the pinned root.
    let mut b = blocks.clone();
    b[4] = b[3].clone();
    let v = with_chain(&b);
    assert_eq!(failed(&v), [check::CHAIN]);
    assert!(detail(&v, check::CHAIN).contains("not the pinned NVIDIA device root"));
    // Another GPU's leaf: the chain holds together only up to the shared CAs, and the report's
    // signature does not verify with that leaf's key.
    let mut b = blocks.clone();
    b[0] = pem_blocks(CHAIN_2025)[0].clone();
    let v = with_chain(&b);
    assert_eq!(failed(&v), [check::CHAIN, check::SIGNATURE]);
    // Another GPU's whole, valid chain: only the signature fails.
    let v = verify_gpu_report(
        REPORT_2023,
        CHAIN_2025,
        &nonce(NONCE_2023),
        at("2024-03-01T00:00:00Z"),
    );
    assert_eq!(failed(&v), [check::SIGNATURE]);
    // The 2025 report (with an FWID) under the 2023 chain: FWID and signature fail.
    let v = verify_gpu_report(
        REPORT_2025,
        CHAIN_2023,
        &nonce(NONCE_2025),
        at("2026-12-03T00:00:00Z"),
    );
    assert_eq!(failed(&v), [check::SIGNATURE, check::FWID]);
    assert!(detail(&v, check::FWID).contains("differs"));
    // No chain at all.
    let v = with_chain(&[]);
    assert_eq!(
        failed(&v),
        [check::CHAIN, check::VALIDITY, check::SIGNATURE, check::FWID]
    );
}

#[test]
fn time_outside_validity_fails_only_validity() {
    let v = verify_gpu_report(
        REPORT_2023,
        CHAIN_2023,
        &nonce(NONCE_2023),
        at("2020-01-01T00:00:00Z"),
    );
    assert_eq!(failed(&v), [check::VALIDITY]);
    assert!(detail(&v, check::VALIDITY).contains("not valid before"));
}

#[test]
fn reasons_are_distinct() {
    let reasons = [
        detail(&tampered(|r| r[200] ^= 1), check::SIGNATURE).to_string(),
        detail(&with_chain(&pem_blocks(CHAIN_2023)[1..]), check::CHAIN).to_string(),
        detail(
            &verify_gpu_report(
                REPORT_2023,
                CHAIN_2023,
                &[0; 32],
                at("2024-03-01T00:00:00Z"),
            ),
            check::NONCE,
        )
        .to_string(),
        detail(
            &verify_gpu_report(
                REPORT_2023,
                CHAIN_2023,
                &[0; 32],
                at("2019-03-01T00:00:00Z"),
            ),
            check::VALIDITY,
        )
        .to_string(),
    ];
    for (i, a) in reasons.iter().enumerate() {
        for b in &reasons[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn truncations_never_panic_and_are_refused() {
    let raw = bin(REPORT_2023);
    for n in 0..raw.len() {
        assert!(spdm::parse(raw[..n].to_vec()).is_err(), "prefix {n} parsed");
    }
    let text = REPORT_2023.trim_ascii();
    for n in 0..text.len() {
        assert!(
            spdm::parse_report(&text[..n]).is_err(),
            "hex prefix {n} parsed"
        );
    }
    for n in 0..CHAIN_2023.len() {
        let _ = pupa_measurements::verify::gpu::certs::parse_pem_chain(&CHAIN_2023[..n]);
    }
    // A few through the whole verifier.
    for n in [0, 1, 36, 37, 45, 3565, raw.len() - 97, raw.len() - 1] {
        let v = verify_2023(&raw[..n]);
        assert_eq!(v.failures().next().unwrap().name, check::PARSE);
        assert!(!v.ok());
    }
    // One byte more is refused too.
    let mut longer = raw.clone();
    longer.push(0);
    assert_eq!(spdm::parse(longer), Err(SpdmError::SignatureLength(97)));
}

#[test]
fn length_and_count_fields_are_checked() {
    let raw = bin(REPORT_2023);
    let parse_with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut r = raw.clone();
        f(&mut r);
        spdm::parse(r)
    };
    // NumberOfBlocks one short: the record has bytes left; one more: the record runs out.
    assert!(matches!(
        parse_with(&|r| r[37 + 4] = 63),
        Err(SpdmError::RecordTrailing(55, 63))
    ));
    assert!(matches!(
        parse_with(&|r| r[37 + 4] = 65),
        Err(SpdmError::Truncated { .. })
    ));
    assert_eq!(parse_with(&|r| r[37 + 4] = 0), Err(SpdmError::NoBlocks));
    // MeasurementRecordLength off by one.
    assert!(parse_with(&|r| r[37 + 5] -= 1).is_err());
    assert!(parse_with(&|r| r[37 + 5] += 1).is_err());
    // A block's MeasurementSize disagreeing with its DMTF value size.
    assert!(matches!(
        parse_with(&|r| r[37 + 8 + 2] = 52),
        Err(SpdmError::BlockSize { index: 1, .. })
    ));
    // Block 2 renamed to 1: duplicate index.
    assert_eq!(
        parse_with(&|r| r[37 + 8 + 55] = 1),
        Err(SpdmError::BlockIndex(1, "appears twice"))
    );
    // A non-DMTF measurement specification.
    assert!(matches!(
        parse_with(&|r| r[37 + 8 + 1] = 2),
        Err(SpdmError::Unexpected { .. })
    ));
    // OpaqueLength one more / less than the data.
    let ol = 37 + 8 + 3520 + 32;
    assert!(parse_with(&|r| r[ol] += 1).is_err());
    assert!(parse_with(&|r| r[ol] -= 1).is_err());
    assert!(matches!(
        parse_with(&|r| r[ol + 1] = 0x04),
        Err(SpdmError::OpaqueTooLong(_)) | Err(SpdmError::Truncated { .. })
    ));
    // Request fields: version, code, no signature requested, one block only, reserved slot bits.
    for (at, val) in [(0, 0x12), (1, 0xE1), (2, 0), (3, 1), (36, 0x10)] {
        assert!(
            matches!(
                parse_with(&|r| r[at] = val),
                Err(SpdmError::Unexpected { .. })
            ),
            "request byte {at}"
        );
    }
    // Response version differing from the request's, response code.
    assert!(matches!(
        parse_with(&|r| r[37] = 0x12),
        Err(SpdmError::VersionMismatch { .. })
    ));
    assert!(parse_with(&|r| r[38] = 0x61).is_err());
}

#[test]
fn bounded_input() {
    let big = vec![b'0'; 2 * spdm::MAX_REPORT_LEN + 2];
    assert!(matches!(
        spdm::parse_report(&big),
        Err(SpdmError::TooLarge(_))
    ));
    let mut big_bin = vec![0u8; spdm::MAX_REPORT_LEN + 1];
    big_bin[0] = 0x11;
    assert!(matches!(
        spdm::parse_report(&big_bin),
        Err(SpdmError::TooLarge(_))
    ));
    let pem = vec![b'A'; 70_000];
    assert!(pupa_measurements::verify::gpu::certs::parse_pem_chain(&pem).is_err());
}

#[test]
fn hex_text_and_binary_decode() {
    assert_eq!(spdm::decode(b" 11e0\n").unwrap(), [0x11, 0xe0]);
    assert_eq!(spdm::decode(&[0x11, 0xe0]).unwrap(), [0x11, 0xe0]);
    assert_eq!(spdm::decode(b"11e"), Err(SpdmError::OddHex));
    assert_eq!(spdm::decode(b"11g0"), Err(SpdmError::BadHex(2)));
    assert_eq!(spdm::decode(b"11E0").unwrap(), [0x11, 0xe0]);
}

#[test]
fn every_byte_of_the_report_is_signed() {
    use pupa_measurements::verify::gpu::certs;
    let chain = certs::parse_pem_chain(CHAIN_2023).unwrap();
    let raw = bin(REPORT_2023);
    let mut parsed = 0;
    for i in 0..raw.len() {
        let mut r = raw.clone();
        r[i] ^= 0x01;
        // Either the flip breaks the structure, or the signature no longer verifies.
        if let Ok(report) = spdm::parse(r) {
            parsed += 1;
            let sig = certs::check_report_signature(
                &chain[0],
                report.signed_bytes(),
                &report.response.signature,
            );
            assert!(sig.is_err(), "flipping byte {i} kept the signature valid");
        }
    }
    // Most flips (values, nonces, signature) keep the structure: 3622 of 4049.
    assert!(parsed > 3500, "only {parsed} flips parsed");
}

#[test]
fn gpu_nonce_known_answers() {
    // Computed independently: Python hashlib.sha256(b"pupa/gpu-nonce/v1\0" + rd + idx LE32).
    let rd: [u8; 64] = core::array::from_fn(|i| i as u8);
    assert_eq!(
        hex::encode(gpu_nonce(&rd, 1)),
        "58a62e1de040ae54246d4177d09439e6b282faf6760d214b0aa4932c63a2851d"
    );
    assert_eq!(
        hex::encode(gpu_nonce(&[0; 64], 0)),
        "93c3d4883ddc84eef91a701df70ef45a11c05908190d23b212de5db701a81ad3"
    );
}
