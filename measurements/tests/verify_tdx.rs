//! TDX quote v4 verification against real quotes and their offline collateral
//! (testdata/evidence/SOURCE: Phala-Network/dcap-qvl sample/), and tampered copies.

use pupa_measurements::verify::tdx::{self, MAX_QUOTE_LEN};
use pupa_measurements::verify::{MeasurementPolicy, Policy, TdxTcbStatus, Verdict, VerifyError};

mod verdict;
use verdict::{detail, failed};

const QUOTE: &[u8] = include_bytes!("../testdata/evidence/tdx_quote");
const COLLATERAL: &[u8] = include_bytes!("../testdata/evidence/tdx_quote_collateral.json");
const OUTDATED: &[u8] = include_bytes!("../testdata/evidence/tdx_quote_outdated");
const OUTDATED_COLLATERAL: &[u8] =
    include_bytes!("../testdata/evidence/tdx_quote_outdated_collateral.json");
/// Inside both the TCB info (2025-06-19..07-19) and QE identity windows of the first sample.
const NOW: &str = "2025-07-01T00:00:00Z";
/// Inside the outdated sample's collateral window (2026-02-18..03-20).
const NOW_OUTDATED: &str = "2026-03-01T00:00:00Z";
/// Offset of the TD report body in the quote, and of fields in it (TDX quote v4 layout).
const BODY: usize = 48;
const TD_ATTRIBUTES: usize = BODY + 120;
const MRTD: usize = BODY + 136;
const REPORT_DATA: usize = BODY + 520;

fn any() -> Policy {
    Policy {
        measurement: MeasurementPolicy::Any,
        ..Policy::default()
    }
}

fn run(q: &[u8], policy: &Policy) -> Verdict {
    let c = tdx::parse_collateral(COLLATERAL).unwrap();
    tdx::verify(q, &c, tdx::parse_now(NOW).unwrap(), policy).unwrap()
}

#[test]
fn real_quote_verifies_inside_collateral_window() {
    let mrtd: [u8; 48] = QUOTE[MRTD..MRTD + 48].try_into().unwrap();
    let rd: [u8; 64] = QUOTE[REPORT_DATA..REPORT_DATA + 64].try_into().unwrap();
    let p = Policy {
        measurement: MeasurementPolicy::OneOf(vec![mrtd]),
        report_data: Some(rd),
        tdx_min_status: TdxTcbStatus::UpToDate,
        ..Policy::default()
    };
    let v = run(QUOTE, &p);
    assert!(v.ok(), "{v:#?}");
    assert!(detail(&v, "TCB status").starts_with("UpToDate"), "{v:#?}");
}

/// The "outdated" sample's collateral has no TCB level for its platform: its PCK certificate's
/// SGX TCB component 8 is 3 (`openssl asn1parse` of the PCK, OID 1.2.840.113741.1.13.1.2.8)
/// while all three TCB levels of the TCB info require 5 there (checked with Python's json on
/// the collateral). Intel's evaluation then has no status to give (TCB_NOT_SUPPORTED): the
/// signatures verify, the TCB check fails and says why.
#[test]
fn outdated_quote_gets_its_collaterals_status() {
    let c = tdx::parse_collateral(OUTDATED_COLLATERAL).unwrap();
    let now = tdx::parse_now(NOW_OUTDATED).unwrap();
    let v = tdx::verify(OUTDATED, &c, now, &any()).unwrap();
    assert_eq!(failed(&v), ["TCB status"], "{v:#?}");
    assert!(
        detail(&v, "TCB status").starts_with("TcbNotSupported"),
        "{v:#?}"
    );
    assert!(detail(&v, "quote format").starts_with("v5"), "{v:#?}");
    // Even the most permissive status policy does not accept an unsupported TCB.
    let relaxed = Policy {
        tdx_min_status: TdxTcbStatus::Revoked,
        ..any()
    };
    assert_eq!(
        failed(&tdx::verify(OUTDATED, &c, now, &relaxed).unwrap()),
        ["TCB status"]
    );
    // Outside its window the collateral itself fails.
    let late = tdx::parse_now("2026-04-01T00:00:00Z").unwrap();
    assert!(failed(&tdx::verify(OUTDATED, &c, late, &any()).unwrap())
        .contains(&"quote signature and chain"));
}

#[test]
fn now_outside_the_collateral_window_is_rejected() {
    let c = tdx::parse_collateral(COLLATERAL).unwrap();
    for now in ["2025-08-01T00:00:00Z", "2025-06-01T00:00:00Z"] {
        let v = tdx::verify(QUOTE, &c, tdx::parse_now(now).unwrap(), &any()).unwrap();
        assert!(
            failed(&v).contains(&"quote signature and chain"),
            "{now}: {v:#?}"
        );
    }
    assert!(tdx::parse_now("yesterday").is_err());
}

#[test]
fn flipped_bit_in_signed_body_is_rejected() {
    for off in [10, BODY + 300] {
        let mut q = QUOTE.to_vec();
        q[off] ^= 1;
        let v = run(&q, &any());
        assert!(
            failed(&v).contains(&"quote signature and chain"),
            "{off}: {v:#?}"
        );
        assert!(
            detail(&v, "quote signature and chain")
                .to_lowercase()
                .contains("signature"),
            "{v:#?}"
        );
    }
}

#[test]
fn flipped_bit_in_signature_is_rejected() {
    let mut q = QUOTE.to_vec();
    q[636 + 3] ^= 1; // inside the ECDSA signature of the quote
    let v = run(&q, &any());
    assert!(failed(&v).contains(&"quote signature and chain"), "{v:#?}");
}

/// Flips one base64 character inside the first certificate (the PCK leaf) of the quote's
/// certification data.
fn tamper_pck(q: &mut [u8], at: usize) {
    let begin = b"-----BEGIN CERTIFICATE-----\n";
    let pos = q
        .windows(begin.len())
        .position(|w| w == begin)
        .expect("PEM in quote")
        + begin.len();
    let c = &mut q[pos + at];
    *c = if *c == b'A' { b'B' } else { b'A' };
}

#[test]
fn flipped_bit_in_pck_is_rejected() {
    let mut q = QUOTE.to_vec();
    tamper_pck(&mut q, 400);
    let v = run(&q, &any());
    assert!(failed(&v).contains(&"quote signature and chain"), "{v:#?}");
}

#[test]
fn chain_to_another_root_is_rejected() {
    // An unrelated root certificate: AMD's Milan ARK (DER, converted with `openssl x509`).
    let other_root = include_bytes!("../testdata/evidence/milan_ark.der");
    let c = tdx::parse_collateral(COLLATERAL).unwrap();
    let v =
        tdx::verify_with_root(QUOTE, &c, tdx::parse_now(NOW).unwrap(), &any(), other_root).unwrap();
    assert!(failed(&v).contains(&"quote signature and chain"), "{v:#?}");
}

#[test]
fn debug_bit_is_rejected_unless_allowed() {
    let mut q = QUOTE.to_vec();
    q[TD_ATTRIBUTES] |= 1;
    let v = run(&q, &any());
    assert!(failed(&v).contains(&"debug"), "{v:#?}");
    assert!(detail(&v, "debug").contains("bit 0"), "{v:#?}");
    let v = run(
        &q,
        &Policy {
            allow_debug: true,
            ..any()
        },
    );
    assert!(!failed(&v).contains(&"debug"), "{v:#?}");
}

#[test]
fn wrong_measurement_and_report_data_are_rejected() {
    let v = run(
        QUOTE,
        &Policy {
            measurement: MeasurementPolicy::OneOf(vec![[7; 48]]),
            ..any()
        },
    );
    assert_eq!(failed(&v), ["measurement"], "{v:#?}");
    let v = run(
        QUOTE,
        &Policy {
            report_data: Some([7; 64]),
            ..any()
        },
    );
    assert_eq!(failed(&v), ["REPORT_DATA"], "{v:#?}");
}

#[test]
fn truncated_oversized_and_malformed_inputs_are_errors() {
    let c = tdx::parse_collateral(COLLATERAL).unwrap();
    let now = tdx::parse_now(NOW).unwrap();
    let cases: Vec<Vec<u8>> = vec![
        // The sample is 4936 bytes of quote and 70 bytes of zero padding.
        QUOTE[..4935].to_vec(),
        OUTDATED[..OUTDATED.len() - 1].to_vec(),
        [QUOTE, &[1u8][..]].concat(),
        [OUTDATED, &[0u8, 0, 9][..]].concat(),
        QUOTE[..600].to_vec(),
        vec![0; MAX_QUOTE_LEN + 1],
        Vec::new(),
        {
            let mut q = QUOTE.to_vec();
            q[0] = 3;
            q
        },
        {
            let mut q = QUOTE.to_vec();
            q[4] = 0;
            q
        },
        {
            let mut q = OUTDATED.to_vec();
            q[48] = 7;
            q
        }, // v5 body type
    ];
    for q in cases {
        assert!(
            matches!(
                tdx::verify(&q, &c, now, &any()),
                Err(VerifyError::TdxQuote(_))
            ),
            "{} bytes",
            q.len()
        );
    }
    assert!(matches!(
        tdx::parse_collateral(b"{}"),
        Err(VerifyError::Collateral(_))
    ));
}
