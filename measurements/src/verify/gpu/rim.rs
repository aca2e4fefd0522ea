//! NVIDIA reference integrity manifests (RIMs): the golden measurements of a GPU's driver or
//! VBIOS, as a signed SWID tag (ISO/IEC 19770-2:2015 XML, TCG RIM information model), verified
//! offline against NVIDIA's pinned RIM root.
//!
//! [`verify_rim`] parses the XML with roxmltree — no DTD (refused before parsing and by the
//! parser), so no entity declarations and no expansion; bounded size and node count —, checks
//! the enveloped XML signature and its certificate chain ([`super::xmldsig`],
//! [`super::xmldsig_chain`]), and only then reads the measurements, from the same tree the
//! signature covered.
//!
//! The RIM's shape, as NVIDIA's local GPU verifier reads it (NVIDIA/nvtrust,
//! `guest_tools/gpu_verifiers/local_gpu_verifier/src/verifier/rim/__init__.py` and
//! `config.py`; facts, not code):
//! - the version is `Meta/@colloquialVersion`, compared lowercased (`545.00`,
//!   `96.00.5e.00.01`);
//! - each `Payload/Resource` is one measurement: `index` (numbered from 0: the report's SPDM
//!   measurement block `index + 1`, blocks being numbered from 1 — in the 2023 samples all 33
//!   active values, 21 of the driver RIM and 12 of the VBIOS RIM, equal blocks `index + 1`, and
//!   no index is active in both RIMs), `active` (`True`/`False`: whether the report's
//!   block at that index is compared), `alternatives` (how many golden values), and the values
//!   themselves as hex in the attributes `Hash0`, `Hash1`, … of the namespace
//!   `http://www.w3.org/2001/04/xmlenc#sha384`, each `size` bytes; the report's value must
//!   equal one of them. An index may appear only once.

use roxmltree::{Document, Node, ParsingOptions};
use thiserror::Error;
use time::OffsetDateTime;

use super::{xml_c14n, xmldsig};

/// The SWID tag namespace (ISO/IEC 19770-2:2015 schema).
pub const SWID_NS: &str = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd";
/// The namespace of the `HashN` attributes (nvtrust `HopperSettings.HashFunctionNamespace`).
pub const HASH_NS: &str = "http://www.w3.org/2001/04/xmlenc#sha384";
/// The largest RIM accepted (NVIDIA's are about 20 KiB).
pub const MAX_RIM_LEN: usize = 1 << 20;
/// At most this many XML nodes (the parser stops there).
const MAX_NODES: u32 = 20_000;
/// At most this many alternative values per measurement.
pub const MAX_ALTERNATIVES: usize = 16;

/// A verified RIM: its version and golden measurements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rim {
    /// `Meta/@colloquialVersion`, lowercased: the driver or VBIOS version.
    pub version: String,
    /// Every `Payload/Resource`, by index.
    pub measurements: Vec<RimMeasurement>,
}

/// One golden measurement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RimMeasurement {
    /// `Resource/@index`, from 0: the report's SPDM measurement block `index + 1`.
    pub index: u16,
    /// Whether the block at this index is to be compared.
    pub active: bool,
    /// The accepted values; the report's block must equal one of them.
    pub alternatives: Vec<Vec<u8>>,
}

/// Why a RIM was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RimError {
    #[error("RIM larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("RIM is not UTF-8")]
    NotUtf8,
    #[error("RIM has a document type declaration (DTD): refused, no DTDs or entity declarations")]
    Dtd,
    #[error("RIM is not well-formed XML (or exceeds the parser's limits): {0}")]
    Xml(String),
    #[error("RIM XML contains {0}, which the canonicalization here does not support")]
    UnsupportedXml(&'static str),
    #[error("RIM has no {0} element")]
    Missing(&'static str),
    #[error("RIM has more than one {0} element")]
    Duplicate(&'static str),
    #[error("unexpected element {found} in {parent}")]
    UnexpectedElement { parent: &'static str, found: String },
    #[error("unexpected text in {0}")]
    UnexpectedText(&'static str),
    #[error("unsupported attribute {name} on {element}")]
    UnsupportedAttribute { element: &'static str, name: String },
    #[error("unsupported {what} algorithm {uri}")]
    UnsupportedAlgorithm { what: &'static str, uri: String },
    #[error("the signature has {0} references; exactly one is supported")]
    MultipleReferences(usize),
    #[error("Reference URI {0:?}: only the whole document (URI=\"\") is supported")]
    UnsupportedReferenceUri(String),
    #[error("unsupported Reference transforms [{0}]: expected enveloped-signature, then C14N")]
    UnsupportedTransforms(String),
    #[error("the Signature is not a child of the document element")]
    SignaturePlacement,
    #[error("invalid base64 in {0}")]
    Base64(&'static str),
    #[error("{what} is {len} bytes, expected {expected}")]
    BadLength {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("the pinned RIM root certificate is unreadable: {0}")]
    BadRoot(String),
    #[error("RIM certificate {index}: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error("{count} certificates in KeyInfo, at most {max} accepted")]
    ChainTooLong { count: usize, max: usize },
    #[error("RIM certificate {index} is issued by {issuer}, but the next certificate is {next}")]
    ChainBroken {
        index: usize,
        issuer: String,
        next: String,
    },
    #[error("the RIM chain ends at issuer {issuer}, not at the pinned RIM root {root}")]
    UntrustedRoot { issuer: String, root: String },
    #[error("RIM certificate {index} ({subject}): its issuer's signature does not verify")]
    CertSignatureInvalid { index: usize, subject: String },
    #[error("RIM chain issuer {index} ({subject}) is not a CA: {why}")]
    NotACa {
        index: usize,
        subject: String,
        why: String,
    },
    #[error("RIM certificate {subject} expired at {not_after} (now {now})")]
    CertificateExpired {
        subject: String,
        not_after: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error("RIM certificate {subject} is not valid before {not_before} (now {now})")]
    CertificateNotYetValid {
        subject: String,
        not_before: OffsetDateTime,
        now: OffsetDateTime,
    },
    #[error("the SignatureValue does not verify over SignedInfo (the document matches the signed digest: the signature or SignedInfo was altered)")]
    SignatureInvalid,
    #[error("neither the SignatureValue nor the signed DigestValue verifies (the DigestValue was altered, or the document and the signature both)")]
    SignatureAndDigestInvalid,
    #[error("the signature verifies but the document does not hash to its DigestValue: the signed content was altered")]
    DigestMismatch,
    #[error("the RIM's root element is not a SWID SoftwareIdentity")]
    NotSwidTag,
    #[error("Meta has no colloquialVersion")]
    NoVersion,
    #[error("measurement {name}: {reason}")]
    BadMeasurement { name: String, reason: String },
    #[error("measurement index {0} appears more than once")]
    DuplicateIndex(u16),
    #[error("the RIM has no measurements")]
    NoMeasurements,
}

/// Verifies a RIM (signature, chain to the pinned RIM root `rim_root_pem` at `now`) and
/// returns its version and golden measurements.
pub fn verify_rim(xml: &[u8], rim_root_pem: &[u8], now: OffsetDateTime) -> Result<Rim, RimError> {
    let doc_text = parse_text(xml)?;
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..ParsingOptions::default()
    };
    let doc = Document::parse_with_options(doc_text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => RimError::Dtd,
        e => RimError::Xml(e.to_string()),
    })?;
    xml_c14n::check_supported(&doc)?;
    xmldsig::verify_enveloped(doc_text, &doc, rim_root_pem, now)?;
    read_rim(&doc)
}

/// Size, UTF-8, and no DTD at all: roxmltree accepts an *empty* `<!DOCTYPE x>` even with
/// DTDs disallowed, so any `<!DOCTYPE` is refused here first.
fn parse_text(xml: &[u8]) -> Result<&str, RimError> {
    if xml.len() > MAX_RIM_LEN {
        return Err(RimError::TooLarge { max: MAX_RIM_LEN });
    }
    let text = std::str::from_utf8(xml).map_err(|_| RimError::NotUtf8)?;
    if text.contains("<!DOCTYPE") || text.contains("<!ENTITY") {
        return Err(RimError::Dtd);
    }
    Ok(text)
}

/// Reads the SWID tag's version and measurements (after its signature has been verified).
fn read_rim(doc: &Document<'_>) -> Result<Rim, RimError> {
    let root = doc.root_element();
    if root.tag_name().namespace() != Some(SWID_NS) || root.tag_name().name() != "SoftwareIdentity"
    {
        return Err(RimError::NotSwidTag);
    }
    let meta = only_child(root, "Meta")?;
    let version = match meta.attribute("colloquialVersion") {
        Some(v) if !v.trim().is_empty() => v.to_lowercase(),
        _ => return Err(RimError::NoVersion),
    };
    let payload = only_child(root, "Payload")?;
    let mut measurements = Vec::new();
    for child in payload.children() {
        if child.is_element() {
            let m = read_measurement(child)?;
            if measurements
                .iter()
                .any(|o: &RimMeasurement| o.index == m.index)
            {
                return Err(RimError::DuplicateIndex(m.index));
            }
            measurements.push(m);
        } else if child.text().is_some_and(|t| !t.trim().is_empty()) {
            return Err(RimError::UnexpectedText("Payload"));
        }
    }
    if measurements.is_empty() {
        return Err(RimError::NoMeasurements);
    }
    measurements.sort_by_key(|m| m.index);
    Ok(Rim {
        version,
        measurements,
    })
}

/// The one SWID child element named `local` of the document element.
fn only_child<'a, 'i>(root: Node<'a, 'i>, local: &'static str) -> Result<Node<'a, 'i>, RimError> {
    let mut found = root
        .children()
        .filter(|n| n.tag_name().namespace() == Some(SWID_NS) && n.tag_name().name() == local);
    let node = found.next().ok_or(RimError::Missing(local))?;
    if found.next().is_some() {
        return Err(RimError::Duplicate(local));
    }
    Ok(node)
}

/// One `Payload/Resource` of type `Measurement`.
fn read_measurement(node: Node<'_, '_>) -> Result<RimMeasurement, RimError> {
    let name = node
        .attribute("name")
        .unwrap_or(node.tag_name().name())
        .to_string();
    let bad = |reason: String| RimError::BadMeasurement {
        name: name.clone(),
        reason,
    };
    if node.tag_name().namespace() != Some(SWID_NS) || node.tag_name().name() != "Resource" {
        return Err(bad(format!(
            "element {} is not a SWID Resource",
            node.tag_name().name()
        )));
    }
    if node.attribute("type") != Some("Measurement") {
        return Err(bad("type is not Measurement".into()));
    }
    let number = |attr: &str| -> Result<usize, RimError> {
        let text = node
            .attribute(attr)
            .ok_or_else(|| bad(format!("no {attr}")))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("{attr} {text:?} is not a decimal number")));
        }
        text.parse()
            .map_err(|_| bad(format!("{attr} {text:?} is out of range")))
    };
    let index = u16::try_from(number("index")?).map_err(|_| bad("index above 65535".into()))?;
    let active = match node.attribute("active") {
        Some("True") => true,
        Some("False") => false,
        other => return Err(bad(format!("active {other:?} is neither True nor False"))),
    };
    let size = number("size")?;
    let count = number("alternatives")?;
    if count == 0 || count > MAX_ALTERNATIVES {
        return Err(bad(format!(
            "{count} alternatives, expected 1..={MAX_ALTERNATIVES}"
        )));
    }
    let mut alternatives = Vec::with_capacity(count);
    for i in 0..count {
        let attr = format!("Hash{i}");
        let text = node
            .attribute((HASH_NS, attr.as_str()))
            .ok_or_else(|| bad(format!("no {attr}")))?;
        let value = hex::decode(text).map_err(|_| bad(format!("{attr} is not hex")))?;
        if value.len() != size {
            return Err(bad(format!(
                "{attr} is {} bytes, size says {size}",
                value.len()
            )));
        }
        alternatives.push(value);
    }
    if node
        .attribute((HASH_NS, format!("Hash{count}").as_str()))
        .is_some()
    {
        return Err(bad(format!("more Hash values than alternatives={count}")));
    }
    Ok(RimMeasurement {
        index,
        active,
        alternatives,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "<SoftwareIdentity xmlns=\"http://standards.iso.org/iso/19770/-2/2015/schema.xsd\" \
        xmlns:h=\"http://www.w3.org/2001/04/xmlenc#sha384\"><Meta colloquialVersion=\"96.00.5E.00.01\"/><Payload>";

    fn read(resources: &str) -> Result<Rim, RimError> {
        let xml = format!("{HEAD}{resources}</Payload></SoftwareIdentity>");
        read_rim(&Document::parse(&xml).unwrap())
    }

    fn resource(index: &str, active: &str, alts: &str, hashes: &str) -> String {
        format!("<Resource type=\"Measurement\" name=\"M{index}\" index=\"{index}\" active=\"{active}\" size=\"2\" alternatives=\"{alts}\" {hashes}/>")
    }

    #[test]
    fn reads_measurements_and_lowercases_the_version() {
        let rim = read(
            &(resource("3", "True", "2", "h:Hash0=\"abcd\" h:Hash1=\"0102\"")
                + &resource("1", "False", "1", "h:Hash0=\"0000\"")),
        )
        .unwrap();
        assert_eq!(rim.version, "96.00.5e.00.01");
        assert_eq!(rim.measurements.len(), 2);
        assert_eq!(
            rim.measurements[0],
            RimMeasurement {
                index: 1,
                active: false,
                alternatives: vec![vec![0, 0]]
            }
        );
        assert_eq!(
            rim.measurements[1].alternatives,
            vec![vec![0xab, 0xcd], vec![1, 2]]
        );
    }

    #[test]
    fn refuses_malformed_measurements() {
        let ok = "h:Hash0=\"abcd\"";
        assert_eq!(
            read(&(resource("1", "True", "1", ok) + &resource("1", "True", "1", ok))),
            Err(RimError::DuplicateIndex(1))
        );
        assert_eq!(read(""), Err(RimError::NoMeasurements));
        for bad in [
            resource("70000", "True", "1", ok),
            resource("-1", "True", "1", ok),
            resource("1", "yes", "1", ok),
            resource("1", "True", "0", ok),
            resource("1", "True", "2", ok),
            resource("1", "True", "1", "h:Hash0=\"abc\""),
            resource("1", "True", "1", "h:Hash0=\"abcdef\""),
            resource("1", "True", "1", "Hash0=\"abcd\""),
            resource("1", "True", "1", "h:Hash0=\"abcd\" h:Hash1=\"abcd\""),
        ] {
            assert!(
                matches!(read(&bad), Err(RimError::BadMeasurement { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_a_dtd_even_an_empty_one() {
        assert_eq!(parse_text(b"<!DOCTYPE r><r/>"), Err(RimError::Dtd));
    }
}
