//! XML Signature (W3C xmldsig-core1, 11 April 2013) verification of an *enveloped* signature
//! over a whole document, the one form NVIDIA's RIMs use — written by hand (see
//! [`super::xml_c14n`] for why) and refusing every other form with a specific error:
//!
//! - exactly one `ds:Signature`, a child of the document element (§4.1);
//! - `SignedInfo` (§4.4) = `CanonicalizationMethod` (inclusive C14N 1.1 or 1.0 without
//!   comments, §6.5.1/§6.5.2) + `SignatureMethod` ECDSA-SHA384 (§6.4.3, RFC 4051 §3.3.4) +
//!   exactly one `Reference` (§4.4.3) with `URI=""` (the whole document without comments,
//!   §4.4.3.3), transforms enveloped-signature (§6.6.4) then optionally the same C14N (without
//!   one, §4.4.3.2's default C14N 1.0 applies: the same octets here), `DigestMethod` SHA-256
//!   (§6.2.2) or SHA-384 (RFC 4051 §2.1.3);
//! - `SignatureValue` (§4.3): ECDSA r ‖ s, 2 × 48 bytes for P-384 (§6.4.3);
//! - `KeyInfo` (§4.5) = one `X509Data` (§4.5.4) of `X509Certificate`s only, signer first,
//!   checked by [`super::xmldsig_chain`] up to the pinned root.
//!
//! No `Object`, `Manifest`, XPath, external or fragment URIs, `RetrievalMethod`, HMAC or
//! other algorithms. Order of the checks: the chain, then the `SignatureValue` over the
//! canonical `SignedInfo`, then the `Reference` digest (core validation, §3.2). Both
//! cryptographic checks always run, so that a failure says which signed part was altered:
//! the document ([`RimError::DigestMismatch`]), the signature or `SignedInfo` other than its
//! digest ([`RimError::SignatureInvalid`]), or the `DigestValue` ([`RimError::SignatureAndDigestInvalid`]).

use base64::Engine as _;
use p384::ecdsa::signature::Verifier;
use p384::ecdsa::Signature;
use roxmltree::{Document, Node};
use sha2::{Digest, Sha256, Sha384};
use time::OffsetDateTime;

use super::rim::RimError;
use super::xml_c14n::canonicalize;
use super::xmldsig_chain::verify_chain;

/// The XML-DSig namespace (xmldsig-core1 §1.3).
pub const DSIG_NS: &str = "http://www.w3.org/2000/09/xmldsig#";
/// Canonical XML 1.1, omits comments (xmldsig-core1 §6.5.2).
pub const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
/// Canonical XML 1.0, omits comments (xmldsig-core1 §6.5.1).
pub const C14N10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
/// The enveloped-signature transform (xmldsig-core1 §6.6.4).
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
/// ECDSA with SHA-384 (RFC 4051 §3.3.4; xmldsig-core1 §6.4.3).
pub const ECDSA_SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384";
/// SHA-256 (xmldsig-core1 §6.2.2).
pub const SHA256: &str = "http://www.w3.org/2001/04/xmlenc#sha256";
/// SHA-384 (RFC 4051 §2.1.3; xmldsig-core1 §6.2.3).
pub const SHA384: &str = "http://www.w3.org/2001/04/xmldsig-more#sha384";

/// A P-384 ECDSA `SignatureValue`: r ‖ s, 48 bytes each.
const P384_SIGNATURE_LEN: usize = 96;

/// The reference's digest algorithm.
#[derive(Debug, Clone, Copy)]
enum DigestAlg {
    Sha256,
    Sha384,
}

impl DigestAlg {
    fn from_uri(uri: &str) -> Result<Self, RimError> {
        match uri {
            SHA256 => Ok(Self::Sha256),
            SHA384 => Ok(Self::Sha384),
            _ => Err(RimError::UnsupportedAlgorithm {
                what: "DigestMethod",
                uri: uri.into(),
            }),
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => Sha256::digest(data).to_vec(),
            Self::Sha384 => Sha384::digest(data).to_vec(),
        }
    }
}

/// What the `Signature` element says, read strictly.
struct SignatureParts<'a, 'i> {
    signature: Node<'a, 'i>,
    signed_info: Node<'a, 'i>,
    digest: DigestAlg,
    digest_value: Vec<u8>,
    signature_value: Vec<u8>,
    certs: Vec<Vec<u8>>,
}

/// Verifies the document's enveloped signature: its chain up to the pinned root at `now`, the
/// `SignatureValue` over the canonical `SignedInfo`, and the `Reference` digest over the
/// canonical document minus the `Signature` element.
///
/// `input` is the text `doc` was parsed from.
pub(crate) fn verify_enveloped(
    input: &str,
    doc: &Document<'_>,
    root_pem: &[u8],
    now: OffsetDateTime,
) -> Result<(), RimError> {
    let parts = read_signature(doc)?;
    let key = verify_chain(&parts.certs, root_pem, now)?;

    let signed_info = canonicalize(input, parts.signed_info, None)?;
    let signature_ok = Signature::from_slice(&parts.signature_value)
        .is_ok_and(|sig| key.verify(&signed_info, &sig).is_ok());

    // The enveloped-signature transform, then the canonicalization (§6.6.4, §4.4.3.2).
    let document = canonicalize(input, doc.root_element(), Some(parts.signature.id()))?;
    let digest_ok = parts.digest.hash(&document) == parts.digest_value;

    match (signature_ok, digest_ok) {
        (true, true) => Ok(()),
        (true, false) => Err(RimError::DigestMismatch),
        (false, true) => Err(RimError::SignatureInvalid),
        (false, false) => Err(RimError::SignatureAndDigestInvalid),
    }
}

/// Finds the one `Signature` (a child of the document element) and reads it (§4.1).
fn read_signature<'a, 'i: 'a>(doc: &'a Document<'i>) -> Result<SignatureParts<'a, 'i>, RimError> {
    let mut found = doc.descendants().filter(|n| is_ds(*n, "Signature"));
    let signature = found.next().ok_or(RimError::Missing("Signature"))?;
    if found.next().is_some() {
        return Err(RimError::Duplicate("Signature"));
    }
    if signature.parent() != Some(doc.root_element()) {
        return Err(RimError::SignaturePlacement);
    }
    only_attributes(signature, "Signature", &["Id"])?;
    let mut children = elements(signature, "Signature")?.into_iter();
    let signed_info = take(&mut children, "SignedInfo", "Signature")?;
    let signature_value_node = take(&mut children, "SignatureValue", "Signature")?;
    let key_info = take(&mut children, "KeyInfo", "Signature")?;
    no_more(&mut children, "Signature")?;

    let (digest, digest_value) = read_signed_info(signed_info)?;
    only_attributes(signature_value_node, "SignatureValue", &["Id"])?;
    let signature_value = base64_of(signature_value_node, "SignatureValue")?;
    if signature_value.len() != P384_SIGNATURE_LEN {
        return Err(RimError::BadLength {
            what: "SignatureValue",
            len: signature_value.len(),
            expected: P384_SIGNATURE_LEN,
        });
    }
    let certs = read_key_info(key_info)?;
    Ok(SignatureParts {
        signature,
        signed_info,
        digest,
        digest_value,
        signature_value,
        certs,
    })
}

/// `SignedInfo` (§4.4): the algorithms and the one reference's digest.
fn read_signed_info(signed_info: Node<'_, '_>) -> Result<(DigestAlg, Vec<u8>), RimError> {
    only_attributes(signed_info, "SignedInfo", &["Id"])?;
    let mut children = elements(signed_info, "SignedInfo")?.into_iter();
    let c14n = take(&mut children, "CanonicalizationMethod", "SignedInfo")?;
    let c14n_uri = algorithm(c14n, "CanonicalizationMethod")?;
    if c14n_uri != C14N11 && c14n_uri != C14N10 {
        return Err(RimError::UnsupportedAlgorithm {
            what: "CanonicalizationMethod",
            uri: c14n_uri.into(),
        });
    }
    let method = take(&mut children, "SignatureMethod", "SignedInfo")?;
    let method_uri = algorithm(method, "SignatureMethod")?;
    if method_uri != ECDSA_SHA384 {
        return Err(RimError::UnsupportedAlgorithm {
            what: "SignatureMethod",
            uri: method_uri.into(),
        });
    }
    let reference = take(&mut children, "Reference", "SignedInfo")?;
    let extra = children.len();
    if extra > 0 {
        return Err(RimError::MultipleReferences(extra + 1));
    }
    read_reference(reference)
}

/// The one `Reference` (§4.4.3): `URI=""`, enveloped-signature (+ C14N), digest.
fn read_reference(reference: Node<'_, '_>) -> Result<(DigestAlg, Vec<u8>), RimError> {
    only_attributes(reference, "Reference", &["URI", "Id"])?;
    match reference.attribute("URI") {
        Some("") => {}
        Some(uri) => return Err(RimError::UnsupportedReferenceUri(uri.into())),
        None => {
            return Err(RimError::UnsupportedReferenceUri(
                "(no URI attribute)".into(),
            ))
        }
    }
    let mut children = elements(reference, "Reference")?.into_iter().peekable();
    let mut transforms = Vec::new();
    if children.peek().is_some_and(|n| is_ds(*n, "Transforms")) {
        let node = take(&mut children, "Transforms", "Reference")?;
        for transform in elements(node, "Transforms")? {
            if !is_ds(transform, "Transform") {
                return Err(unexpected("Transforms", transform));
            }
            transforms.push(algorithm(transform, "Transform")?);
        }
    }
    match transforms.as_slice() {
        [ENVELOPED] | [ENVELOPED, C14N11] | [ENVELOPED, C14N10] => {}
        _ => return Err(RimError::UnsupportedTransforms(transforms.join(" "))),
    }
    let digest = DigestAlg::from_uri(algorithm(
        take(&mut children, "DigestMethod", "Reference")?,
        "DigestMethod",
    )?)?;
    let value_node = take(&mut children, "DigestValue", "Reference")?;
    no_more(&mut children, "Reference")?;
    let value = base64_of(value_node, "DigestValue")?;
    if value.len() != digest.len() {
        return Err(RimError::BadLength {
            what: "DigestValue",
            len: value.len(),
            expected: digest.len(),
        });
    }
    Ok((digest, value))
}

/// `KeyInfo` (§4.5) with one `X509Data` (§4.5.4) of `X509Certificate`s: their DER.
fn read_key_info(key_info: Node<'_, '_>) -> Result<Vec<Vec<u8>>, RimError> {
    only_attributes(key_info, "KeyInfo", &[])?;
    let mut children = elements(key_info, "KeyInfo")?.into_iter();
    let data = take(&mut children, "X509Data", "KeyInfo")?;
    no_more(&mut children, "KeyInfo")?;
    only_attributes(data, "X509Data", &[])?;
    let mut certs = Vec::new();
    for cert in elements(data, "X509Data")? {
        if !is_ds(cert, "X509Certificate") {
            return Err(unexpected("X509Data", cert));
        }
        only_attributes(cert, "X509Certificate", &[])?;
        certs.push(base64_of(cert, "X509Certificate")?);
    }
    Ok(certs)
}

fn is_ds(node: Node<'_, '_>, local: &str) -> bool {
    node.is_element()
        && node.tag_name().namespace() == Some(DSIG_NS)
        && node.tag_name().name() == local
}

/// The element children of `node`; text between them must be whitespace.
fn elements<'a, 'i: 'a>(
    node: Node<'a, 'i>,
    name: &'static str,
) -> Result<Vec<Node<'a, 'i>>, RimError> {
    let mut out = Vec::new();
    for child in node.children() {
        if child.is_element() {
            out.push(child);
        } else if !child.text().unwrap_or("").chars().all(is_xml_space) {
            return Err(RimError::UnexpectedText(name));
        }
    }
    Ok(out)
}

/// The next child must be `ds:local`.
fn take<'a, 'i: 'a>(
    children: &mut impl Iterator<Item = Node<'a, 'i>>,
    local: &'static str,
    parent: &'static str,
) -> Result<Node<'a, 'i>, RimError> {
    match children.next() {
        Some(node) if is_ds(node, local) => Ok(node),
        Some(node) => Err(unexpected(parent, node)),
        None => Err(RimError::Missing(local)),
    }
}

fn no_more<'a, 'i: 'a>(
    children: &mut impl Iterator<Item = Node<'a, 'i>>,
    parent: &'static str,
) -> Result<(), RimError> {
    match children.next() {
        Some(node) => Err(unexpected(parent, node)),
        None => Ok(()),
    }
}

fn unexpected(parent: &'static str, node: Node<'_, '_>) -> RimError {
    let name = node.tag_name();
    RimError::UnexpectedElement {
        parent,
        found: match name.namespace() {
            Some(ns) => format!("{{{ns}}}{}", name.name()),
            None => name.name().into(),
        },
    }
}

/// Refuses attributes other than `allowed` (unqualified names).
fn only_attributes(
    node: Node<'_, '_>,
    element: &'static str,
    allowed: &[&str],
) -> Result<(), RimError> {
    match node
        .attributes()
        .find(|a| a.namespace().is_some() || !allowed.contains(&a.name()))
    {
        Some(a) => Err(RimError::UnsupportedAttribute {
            element,
            name: a.name().into(),
        }),
        None => Ok(()),
    }
}

/// The `Algorithm` of a method or transform element, which must have no content (no
/// parameters such as `HMACOutputLength` or XPath).
fn algorithm<'a>(node: Node<'a, '_>, element: &'static str) -> Result<&'a str, RimError> {
    only_attributes(node, element, &["Algorithm"])?;
    if let Some(child) = elements(node, element)?.first() {
        return Err(unexpected(element, *child));
    }
    node.attribute("Algorithm")
        .ok_or(RimError::UnsupportedAttribute {
            element,
            name: "(no Algorithm)".into(),
        })
}

/// The base64Binary content of a leaf element (whitespace allowed, xmldsig-core1 §4.0.1).
fn base64_of(node: Node<'_, '_>, element: &'static str) -> Result<Vec<u8>, RimError> {
    let mut text = String::new();
    for child in node.children() {
        if child.is_element() {
            return Err(unexpected(element, child));
        }
        text.extend(
            child
                .text()
                .unwrap_or("")
                .chars()
                .filter(|c| !is_xml_space(*c)),
        );
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.as_bytes())
        .map_err(|_| RimError::Base64(element))
}

/// XML's white space (XML 1.0 §2.3 production S).
fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}
