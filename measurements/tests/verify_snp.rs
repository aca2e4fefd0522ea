//! SEV-SNP report verification against a real Milan report, its VCEK and AMD's pinned roots
//! (testdata/evidence/SOURCE: virtee/sev tests/certs_data), and tampered copies of them.

use pupa_measurements::hexfmt;
use pupa_measurements::verify::snp::{self, PINNED_ROOTS, REPORT_LEN};
use pupa_measurements::verify::{MeasurementPolicy, Policy, SnpMinTcb, VerifyError};

mod verdict;
use verdict::{detail, failed};

const REPORT_HEX: &[u8] = include_bytes!("../testdata/evidence/report_milan.hex");
const VCEK: &[u8] = include_bytes!("../testdata/evidence/vcek_milan.der");
// Fields of the sample as printed by `openssl`/a hex dump of the report (offsets 0x90, 0x50).
const MEASUREMENT: &str = "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81841f";
const REPORT_DATA: &str = "d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfca0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd";

/// 2025-07-01T00:00:00Z: inside the sample VCEK's validity (notBefore 2023-04-03T19:23:43Z,
/// notAfter 2030-04-03T19:23:43Z, as printed by `openssl x509 -noout -dates`).
const NOW: u64 = 1_751_328_000;
const NOT_BEFORE: u64 = 1_680_549_823;
const NOT_AFTER: u64 = 1_901_474_623;

fn report() -> Vec<u8> {
    snp::load_report(REPORT_HEX).unwrap()
}

fn strict() -> Policy {
    Policy {
        measurement: MeasurementPolicy::OneOf(vec![hexfmt::decode_array(MEASUREMENT).unwrap()]),
        report_data: Some(hexfmt::decode_array(REPORT_DATA).unwrap()),
        ..Policy::default()
    }
}

#[test]
fn real_milan_report_verifies() {
    let v = snp::verify(&report(), Some(VCEK), NOW, &strict()).unwrap();
    assert!(v.ok(), "{v:#?}");
    assert!(detail(&v, "VCEK chain").contains("Milan"), "{v:#?}");
    // The same with the VCEK as PEM.
    let pem = include_bytes!("../testdata/evidence/vcek_milan.pem");
    assert!(snp::verify(&report(), Some(pem), NOW, &strict())
        .unwrap()
        .ok());
}

#[test]
fn flipped_bit_in_signed_body_is_rejected() {
    // HOST_DATA (0xC0), ID_KEY_DIGEST (0xE0), REPORT_ID (0x140): no policy looks at them,
    // only the signature does.
    for off in [0xC0, 0xE0, 0x140] {
        let mut r = report();
        r[off] ^= 0x01;
        let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
        assert_eq!(failed(&v), ["report signature"], "offset {off:#x}: {v:#?}");
    }
    // Reserved bytes (0x1F8.. in a v2 report) must be zero: refused before any check.
    let mut r = report();
    r[0x29F] ^= 0x01;
    assert!(matches!(
        snp::verify(&r, Some(VCEK), NOW, &strict()),
        Err(VerifyError::SnpReport(_))
    ));
}

#[test]
fn flipped_bit_in_signature_is_rejected() {
    for off in [0x2A0, 0x2A0 + 0x48 + 5] {
        let mut r = report();
        r[off] ^= 0x80;
        let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
        assert_eq!(failed(&v), ["report signature"], "{v:#?}");
    }
    // Non-zero high bytes of R (beyond 384 bits).
    let mut r = report();
    r[0x2A0 + 60] = 1;
    let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
    assert!(
        detail(&v, "report signature").contains("wider than 384"),
        "{v:#?}"
    );
}

#[test]
fn flipped_bit_in_vcek_is_rejected() {
    // The last byte is inside the ASK's RSA-PSS signature over the VCEK.
    let mut vcek = VCEK.to_vec();
    let n = vcek.len();
    vcek[n - 1] ^= 0x01;
    let v = snp::verify(&report(), Some(&vcek), NOW, &strict()).unwrap();
    assert_eq!(failed(&v), ["VCEK chain"], "{v:#?}");
    // A bit inside the public key: chain and report signature both fail.
    let key = {
        let c = snp::parse_vcek(VCEK).unwrap();
        c.public_key_sec1().to_vec()
    };
    let pos = VCEK
        .windows(key.len())
        .position(|w| w == key.as_slice())
        .unwrap();
    let mut vcek = VCEK.to_vec();
    vcek[pos + 20] ^= 0x01;
    let v = snp::verify(&report(), Some(&vcek), NOW, &strict()).unwrap();
    assert!(failed(&v).contains(&"VCEK chain"), "{v:#?}");
    assert!(failed(&v).contains(&"report signature"), "{v:#?}");
}

#[test]
fn chain_to_another_root_is_rejected() {
    let v =
        snp::verify_with_roots(&report(), Some(VCEK), NOW, &strict(), &PINNED_ROOTS[1..]).unwrap();
    assert_eq!(failed(&v), ["VCEK chain"], "{v:#?}");
    assert!(detail(&v, "VCEK chain").contains("Genoa, Turin"), "{v:#?}");
}

#[test]
fn missing_vcek_fails_with_kds_hint() {
    let v = snp::verify(&report(), None, NOW, &strict()).unwrap();
    assert!(!v.ok());
    assert!(
        detail(&v, "VCEK chain").contains("blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115"),
        "{v:#?}"
    );
}

#[test]
fn debug_bit_is_rejected_unless_allowed() {
    let mut r = report();
    r[snp::POLICY_OFFSET + 2] |= 0x08; // bit 19
    let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
    assert!(failed(&v).contains(&"debug"), "{v:#?}");
    assert!(detail(&v, "debug").contains("bit 19"), "{v:#?}");
    let allow = Policy {
        allow_debug: true,
        ..strict()
    };
    let v = snp::verify(&r, Some(VCEK), NOW, &allow).unwrap();
    assert!(!failed(&v).contains(&"debug"), "{v:#?}");
    // Bit 18, migration agent.
    let mut r = report();
    r[snp::POLICY_OFFSET + 2] |= 0x04;
    let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
    assert!(failed(&v).contains(&"migration agent"), "{v:#?}");
}

#[test]
fn chip_id_or_tcb_not_matching_the_vcek_is_rejected() {
    let mut r = report();
    r[0x1A0] ^= 0x01; // CHIP_ID
    let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
    assert!(
        detail(&v, "VCEK matches chip and TCB").contains("hwID"),
        "{v:#?}"
    );
    let mut r = report();
    r[0x180 + 7] = 0x74; // REPORTED_TCB microcode 115 -> 116
    let v = snp::verify(&r, Some(VCEK), NOW, &strict()).unwrap();
    assert!(
        detail(&v, "VCEK matches chip and TCB").contains("ucodeSPL"),
        "{v:#?}"
    );
}

#[test]
fn wrong_measurement_report_data_vmpl_tcb_are_rejected() {
    let mut p = strict();
    p.measurement = MeasurementPolicy::OneOf(vec![[0x11; 48]]);
    let v = snp::verify(&report(), Some(VCEK), NOW, &p).unwrap();
    assert_eq!(failed(&v), ["measurement"], "{v:#?}");

    let mut p = strict();
    p.report_data = Some([0; 64]);
    let v = snp::verify(&report(), Some(VCEK), NOW, &p).unwrap();
    assert_eq!(failed(&v), ["REPORT_DATA"], "{v:#?}");

    let p = Policy {
        snp_vmpl: 1,
        ..strict()
    };
    assert_eq!(
        failed(&snp::verify(&report(), Some(VCEK), NOW, &p).unwrap()),
        ["VMPL"]
    );

    let min: SnpMinTcb = "bl=3,tee=0,snp=8,ucode=115".parse().unwrap();
    let p = Policy {
        snp_min_tcb: Some(min),
        ..strict()
    };
    assert!(snp::verify(&report(), Some(VCEK), NOW, &p).unwrap().ok());
    let min: SnpMinTcb = "snp=9".parse().unwrap();
    let p = Policy {
        snp_min_tcb: Some(min),
        ..strict()
    };
    assert_eq!(
        failed(&snp::verify(&report(), Some(VCEK), NOW, &p).unwrap()),
        ["minimum TCB"]
    );
    assert!("bl=x".parse::<SnpMinTcb>().is_err());
    assert!("fmc=1".parse::<SnpMinTcb>().is_err());
}

#[test]
fn truncated_oversized_and_garbage_inputs_are_errors() {
    let r = report();
    for bad in [
        &r[..REPORT_LEN - 1],
        &[r.as_slice(), &[0]].concat()[..],
        &[][..],
    ] {
        assert!(matches!(
            snp::verify(bad, Some(VCEK), NOW, &strict()),
            Err(VerifyError::SnpReport(_))
        ));
    }
    let mut v1 = r.clone();
    v1[0] = 1;
    assert!(matches!(
        snp::verify(&v1, Some(VCEK), NOW, &strict()),
        Err(VerifyError::SnpReport(_))
    ));
    assert!(matches!(
        snp::verify(&r, Some(&VCEK[..100]), NOW, &strict()),
        Err(VerifyError::Vcek(_))
    ));
    assert!(matches!(
        snp::load_report(b"abc"),
        Err(VerifyError::SnpReport(_))
    ));
}

#[test]
fn vcek_validity_window_is_checked_at_now() {
    // Both bounds are inclusive (RFC 5280 §4.1.2.5).
    for now in [NOT_BEFORE, NOW, NOT_AFTER] {
        let v = snp::verify(&report(), Some(VCEK), now, &strict()).unwrap();
        assert!(v.ok(), "{now}: {v:#?}");
        assert!(detail(&v, "VCEK validity").contains("2030-04-03"), "{v:#?}");
    }
    let v = snp::verify(&report(), Some(VCEK), NOT_BEFORE - 1, &strict()).unwrap();
    assert_eq!(failed(&v), ["VCEK validity"], "{v:#?}");
    assert!(
        detail(&v, "VCEK validity").contains("not yet valid"),
        "{v:#?}"
    );
    let v = snp::verify(&report(), Some(VCEK), NOT_AFTER + 1, &strict()).unwrap();
    assert_eq!(failed(&v), ["VCEK validity"], "{v:#?}");
    assert!(
        detail(&v, "VCEK validity").contains("expired at 2030-04-03T19:23:44Z"),
        "{v:#?}"
    );
}
