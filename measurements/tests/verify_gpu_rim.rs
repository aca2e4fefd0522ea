//! NVIDIA RIM verification (XML-DSig + chain to the pinned RIM root) against NVIDIA's real
//! Hopper RIMs (testdata/gpu-rim/SOURCE: nvtrust 3fe2a5c6e), and tampered copies of them.

use pupa_measurements::verify::gpu::rim::{verify_rim, Rim, RimError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

const DRIVER: &[u8] = include_bytes!("../testdata/gpu-rim/Driver_RIM_test_no_gpu.swidtag");
const VBIOS: &[u8] =
    include_bytes!("../testdata/gpu-rim/1010_0200_882_96005E0001_test_no_gpu.swidtag");
const RIM_ROOT: &[u8] = include_bytes!("../testdata/gpu-rim/verifier_RIM_root.pem");
const DEVICE_ROOT: &[u8] = include_bytes!("../testdata/gpu-rim/verifier_device_root.pem");

fn at(rfc3339: &str) -> OffsetDateTime {
    OffsetDateTime::parse(rfc3339, &Rfc3339).unwrap()
}

/// Inside every certificate's validity (SOURCE).
const THEN: &str = "2024-03-01T00:00:00Z";
/// Today: the signer certificate expired on 2025-06-26.
const TODAY: &str = "2026-12-03T00:00:00Z";

fn verify(xml: &[u8]) -> Result<Rim, RimError> {
    verify_rim(xml, RIM_ROOT, at(THEN))
}

/// `xml` with the first occurrence of `from` replaced by `to` (which must exist).
fn replace(xml: &[u8], from: &str, to: &str) -> Vec<u8> {
    let text = std::str::from_utf8(xml).unwrap();
    assert!(text.contains(from), "{from}");
    text.replacen(from, to, 1).into_bytes()
}

/// The text between `start` and the next `end`.
fn between<'a>(xml: &'a [u8], start: &str, end: &str) -> &'a str {
    let text = std::str::from_utf8(xml).unwrap();
    let from = text.find(start).unwrap() + start.len();
    &text[from..from + text[from..].find(end).unwrap()]
}

#[test]
fn driver_rim_verifies_at_its_time() {
    let rim = verify(DRIVER).unwrap();
    assert_eq!(rim.version, "545.00");
    assert_eq!(rim.measurements.len(), 64);
    assert_eq!(rim.measurements.iter().filter(|m| m.active).count(), 21);
    assert!(rim
        .measurements
        .iter()
        .enumerate()
        .all(|(i, m)| usize::from(m.index) == i));
    let m7 = &rim.measurements[7];
    assert!(m7.active);
    assert_eq!(
        m7.alternatives,
        vec![hex::decode(
            "0e0ee161b59bf124ce6b6dca6efa7616d28077862c0e57dca7d5efd63d00eeed4851922941e846a38c464cbedbc168d9"
        )
        .unwrap()]
    );
    assert_eq!(
        rim.measurements
            .iter()
            .filter(|m| m.alternatives.len() == 2)
            .count(),
        3
    );
    assert!(rim
        .measurements
        .iter()
        .flat_map(|m| &m.alternatives)
        .all(|v| v.len() == 48));
}

#[test]
fn vbios_rim_verifies_at_its_time() {
    let rim = verify(VBIOS).unwrap();
    assert_eq!(rim.version, "96.00.5e.00.01");
    assert_eq!(rim.measurements.len(), 64);
    assert_eq!(rim.measurements.iter().filter(|m| m.active).count(), 12);
    assert_eq!(
        rim.measurements
            .iter()
            .filter(|m| m.alternatives.len() == 4)
            .count(),
        1
    );
}

#[test]
fn today_the_signer_certificate_has_expired() {
    // The signers' notAfter, as `openssl x509 -noout -enddate` prints them.
    for (xml, expiry) in [
        (DRIVER, "2025-06-26T06:10:12Z"),
        (VBIOS, "2025-06-22T09:38:54Z"),
    ] {
        match verify_rim(xml, RIM_ROOT, at(TODAY)) {
            Err(RimError::CertificateExpired {
                subject, not_after, ..
            }) => {
                assert!(subject.contains("HCC RIM L4 Signer"), "{subject}");
                assert_eq!(not_after, at(expiry));
            }
            other => panic!("{other:?}"),
        }
    }
    // Before the signer certificate existed.
    let early = at("2023-06-01T00:00:00Z");
    assert!(matches!(
        verify_rim(DRIVER, RIM_ROOT, early),
        Err(RimError::CertificateNotYetValid { .. })
    ));
}

#[test]
fn a_tampered_golden_value_breaks_the_digest() {
    let xml = replace(DRIVER, "Hash0=\"0e0ee161", "Hash0=\"1e0ee161");
    assert_eq!(verify(&xml), Err(RimError::DigestMismatch));
    // An inactive measurement, too, is signed.
    let xml = replace(VBIOS, "active=\"False\"", "active=\"True\"");
    assert_eq!(verify(&xml), Err(RimError::DigestMismatch));
}

#[test]
fn a_tampered_version_breaks_the_digest() {
    let xml = replace(
        DRIVER,
        "colloquialVersion=\"545.00\"",
        "colloquialVersion=\"550.00\"",
    );
    assert_eq!(verify(&xml), Err(RimError::DigestMismatch));
}

#[test]
fn a_tampered_digest_value_breaks_the_signature() {
    let digest = between(DRIVER, "<ds:DigestValue>", "</ds:DigestValue>");
    let tampered = format!("A{}", &digest[1..]);
    let xml = replace(DRIVER, digest, &tampered);
    assert_eq!(verify(&xml), Err(RimError::SignatureAndDigestInvalid));
}

#[test]
fn a_tampered_signature_value_is_refused() {
    let sig = between(DRIVER, "<ds:SignatureValue>", "</ds:SignatureValue>");
    let tampered = format!("{}A{}", &sig[..10], &sig[11..]);
    assert_ne!(sig, tampered);
    let xml = replace(DRIVER, sig, &tampered);
    assert_eq!(verify(&xml), Err(RimError::SignatureInvalid));
    // r and s swapped: still 96 bytes, still wrong.
    let xml = replace(DRIVER, sig, &format!("{}{}", &sig[64..], &sig[..64]));
    assert_eq!(verify(&xml), Err(RimError::SignatureInvalid));
    // Truncated: the length is checked first.
    let xml = replace(DRIVER, sig, &sig[..64]);
    assert!(matches!(
        verify(&xml),
        Err(RimError::BadLength {
            what: "SignatureValue",
            len: 48,
            ..
        })
    ));
}

/// The `X509Certificate` elements of `xml`, in order.
fn certs(xml: &[u8]) -> Vec<String> {
    let text = std::str::from_utf8(xml).unwrap();
    text.split("<ds:X509Certificate>")
        .skip(1)
        .map(|c| {
            format!(
                "<ds:X509Certificate>{}</ds:X509Certificate>",
                c.split("</ds:X509Certificate>").next().unwrap()
            )
        })
        .collect()
}

#[test]
fn removing_an_intermediate_breaks_the_chain() {
    let all = certs(DRIVER);
    assert_eq!(all.len(), 4);
    let xml = replace(DRIVER, &all[1], "");
    match verify(&xml) {
        Err(RimError::ChainBroken {
            index: 0,
            issuer,
            next,
        }) => {
            assert!(issuer.contains("L3 GH100"), "{issuer}");
            assert!(next.contains("GH100 CA"), "{next}");
        }
        other => panic!("{other:?}"),
    }
    // Without the signer, the first certificate is a CA that may not sign documents.
    let xml = replace(DRIVER, &all[0], "");
    assert!(matches!(
        verify(&xml),
        Err(RimError::BadCertificate { index: 0, .. })
    ));
    // The file's copy of the root may go: the pinned root stands in for it.
    assert!(verify(&replace(DRIVER, &all[3], "")).is_ok());
    // No certificate at all.
    let xml = replace(DRIVER, &all.concat(), "");
    assert_eq!(verify(&xml), Err(RimError::Missing("X509Certificate")));
}

#[test]
fn a_wrong_root_is_refused() {
    match verify_rim(DRIVER, DEVICE_ROOT, at(THEN)) {
        Err(RimError::UntrustedRoot { issuer, root }) => {
            assert!(issuer.contains("CoRIM signing Root"), "{issuer}");
            assert!(!root.contains("CoRIM"), "{root}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        verify_rim(DRIVER, b"not a PEM", at(THEN)),
        Err(RimError::BadRoot(_))
    ));
}

/// A replacement in the RIM and the error it must cause.
type Case = (&'static str, &'static str, fn(&RimError) -> bool);

#[test]
fn unsupported_signature_forms_are_refused() {
    let cases: [Case; 6] = [
        ("Reference URI=\"\"", "Reference URI=\"#x\"", |e| {
            matches!(e, RimError::UnsupportedReferenceUri(_))
        }),
        (
            "xmldsig-more#ecdsa-sha384",
            "xmldsig-more#ecdsa-sha256",
            |e| {
                matches!(
                    e,
                    RimError::UnsupportedAlgorithm {
                        what: "SignatureMethod",
                        ..
                    }
                )
            },
        ),
        (
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2006/12/xml-c14n11\"/>",
            "<ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>",
            |e| {
                matches!(
                    e,
                    RimError::UnsupportedAlgorithm {
                        what: "CanonicalizationMethod",
                        ..
                    }
                )
            },
        ),
        (
            "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>",
            "",
            |e| matches!(e, RimError::UnsupportedTransforms(_)),
        ),
        ("xmldsig-more#sha384\"/>", "xmldsig-more#sha512\"/>", |e| {
            matches!(
                e,
                RimError::UnsupportedAlgorithm {
                    what: "DigestMethod",
                    ..
                }
            )
        }),
        ("</ds:KeyInfo>", "</ds:KeyInfo><ds:Object/>", |e| {
            matches!(e, RimError::UnexpectedElement { .. })
        }),
    ];
    for (from, to, want) in cases {
        let got = verify(&replace(DRIVER, from, to)).unwrap_err();
        assert!(want(&got), "{to}: {got:?}");
    }
    // Two references.
    let reference = between(
        DRIVER,
        "<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384\"/>",
        "</ds:SignedInfo>",
    );
    let xml = replace(
        DRIVER,
        "</ds:SignedInfo>",
        &format!("{reference}</ds:SignedInfo>"),
    );
    assert_eq!(verify(&xml), Err(RimError::MultipleReferences(2)));
    // A second Signature, and a Signature not under the document element.
    let signature = format!(
        "<ds:Signature{}</ds:Signature>",
        between(DRIVER, "<ds:Signature", "</ds:Signature>")
    );
    let xml = replace(
        DRIVER,
        "</SoftwareIdentity>",
        &format!("{signature}</SoftwareIdentity>"),
    );
    assert_eq!(verify(&xml), Err(RimError::Duplicate("Signature")));
    let moved = replace(DRIVER, &signature, "");
    let xml = replace(
        &moved,
        "</ns0:Payload>",
        &format!("{signature}</ns0:Payload>"),
    );
    assert_eq!(verify(&xml), Err(RimError::SignaturePlacement));
    assert_eq!(verify(&moved), Err(RimError::Missing("Signature")));
}

#[test]
fn dtds_and_entities_are_refused() {
    let bomb = "<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">\
                <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\
                <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">]>\
                <lolz>&lol3;</lolz>";
    assert_eq!(verify(bomb.as_bytes()), Err(RimError::Dtd));
    // An external entity.
    let xxe = "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><r>&x;</r>";
    assert_eq!(verify(xxe.as_bytes()), Err(RimError::Dtd));
    // The real RIM behind an (empty) DTD.
    let mut xml = b"<!DOCTYPE SoftwareIdentity>\n".to_vec();
    xml.extend_from_slice(DRIVER);
    assert_eq!(verify(&xml), Err(RimError::Dtd));
    // An undeclared entity reference is not well-formed.
    let xml = replace(DRIVER, "name=\"GH100\"", "name=\"&x;\"");
    assert!(matches!(verify(&xml), Err(RimError::Xml(_))));
}

#[test]
fn comments_are_refused() {
    let xml = replace(DRIVER, "</ns0:Payload>", "<!-- hi --></ns0:Payload>");
    assert_eq!(verify(&xml), Err(RimError::UnsupportedXml("a comment")));
}

#[test]
fn truncation_and_bit_flips_never_panic() {
    for xml in [DRIVER, VBIOS] {
        for len in (0..xml.len() - 1)
            .step_by(37)
            .chain(xml.len() - 40..xml.len() - 1)
        {
            assert!(verify(&xml[..len]).is_err(), "{len}");
        }
        // Only the final newline lies outside the document element.
        assert!(verify(&xml[..xml.len() - 1]).is_ok());
        for i in (0..xml.len()).step_by(211) {
            let mut bad = xml.to_vec();
            bad[i] ^= 0x01;
            // Some flips are harmless (whitespace inside base64); none may panic.
            let _ = verify(&bad);
        }
    }
}

#[test]
fn chain_order_and_length_are_enforced() {
    let all = certs(DRIVER);
    // The intermediates swapped.
    let swapped = format!("{}{}{}{}", all[0], all[2], all[1], all[3]);
    let xml = replace(DRIVER, &all.concat(), &swapped);
    assert!(matches!(
        verify(&xml),
        Err(RimError::ChainBroken { index: 0, .. })
    ));
    // More certificates than nvtrust's MAX_CERT_CHAIN_LENGTH (5).
    let long = format!("{}{}", all.concat(), all[3].repeat(2));
    let xml = replace(DRIVER, &all.concat(), &long);
    assert_eq!(
        verify(&xml),
        Err(RimError::ChainTooLong { count: 6, max: 5 })
    );
    // A certificate that is not DER.
    let xml = replace(
        DRIVER,
        &all[1],
        "<ds:X509Certificate>AAAA</ds:X509Certificate>",
    );
    assert!(matches!(
        verify(&xml),
        Err(RimError::BadCertificate { index: 1, .. })
    ));
    let xml = replace(
        DRIVER,
        &all[1],
        "<ds:X509Certificate>!!</ds:X509Certificate>",
    );
    assert_eq!(verify(&xml), Err(RimError::Base64("X509Certificate")));
}

#[test]
fn size_encoding_and_depth_limits() {
    assert!(matches!(
        verify(&vec![b' '; (1 << 20) + 1]),
        Err(RimError::TooLarge { .. })
    ));
    assert_eq!(verify(b"<r>\xff</r>"), Err(RimError::NotUtf8));
    // Deep nesting: refused by the node limit, or parsed and refused, without recursion.
    for depth in [10_000, 100_000] {
        let xml = format!("{}{}", "<a>".repeat(depth), "</a>".repeat(depth));
        assert!(verify(xml.as_bytes()).is_err());
    }
    assert!(matches!(verify(b""), Err(RimError::Xml(_))));
}

/// The 2023 report that goes with these RIMs (../testdata/gpu/SOURCE, the same nvtrust commit).
const REPORT_2023: &[u8] = include_bytes!("../testdata/gpu/hopper-2023/attestationReport.txt");

#[test]
fn the_2023_report_matches_every_active_value_at_index_plus_one() {
    use pupa_measurements::verify::gpu::spdm;
    let report = spdm::parse_report(REPORT_2023).unwrap();
    let (driver, vbios) = (verify(DRIVER).unwrap(), verify(VBIOS).unwrap());
    let mut matched = 0;
    for m in driver
        .measurements
        .iter()
        .chain(&vbios.measurements)
        .filter(|m| m.active)
    {
        let block = report
            .response
            .blocks
            .iter()
            .find(|b| u16::from(b.index) == m.index + 1)
            .unwrap_or_else(|| panic!("no block {}", m.index + 1));
        assert!(m.alternatives.contains(&block.value), "index {}", m.index);
        matched += 1;
    }
    assert_eq!(matched, 33);
    // No index is active in both RIMs.
    assert!(driver
        .measurements
        .iter()
        .zip(&vbios.measurements)
        .all(|(d, v)| !(d.active && v.active)));
}
