//! The GPU's certificate chain and the report signature.
//!
//! NVML returns the chain as PEM, the attestation-key (AK) certificate first and NVIDIA's device
//! identity root last. On Hopper it has exactly five certificates (nvtrust `HopperSettings.
//! MAX_CERT_CHAIN_LENGTH = 5`): GSP FMC leaf (AK) ← GSP BROM (per device) ← GH100 Provisioner
//! ICA ← GH100 Identity ← NVIDIA Device Identity CA. Every one of them, in both samples, is
//! signed with ECDSA P-384 / SHA-384 and carries a P-384 key; nothing else is accepted here.
//!
//! Checked here with RustCrypto (`x509-cert`, `p384`), no OpenSSL:
//! - each certificate's signature by the next one's key, over its *raw* TBS bytes (not a
//!   re-encoding), and the issuer name equal to the next one's subject (RFC 5280 §6.1.3);
//! - every issuer a CA (basicConstraints cA, RFC 5280 §4.2.1.9);
//! - the last certificate byte-equal to the pinned root [`DEVICE_ROOT_PEM`], itself self-signed;
//! - validity of each at `now`, both bounds inclusive (RFC 5280 §4.1.2.5);
//! - the report signature: ECDSA P-384 over SHA-384 of request || response-without-signature
//!   with the AK certificate's key (DSP0274 1.1 §10.11; nvtrust `AttestationReport.
//!   verify_signature` hashes exactly those bytes with SHA-384 and takes the 96-byte `r || s`).

use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::{Signature, VerifyingKey};
use x509_cert::der::asn1::{ObjectIdentifier, OctetStringRef};
use x509_cert::der::{Decode, Header, Reader, SliceReader};
use x509_cert::Certificate;

/// NVIDIA Device Identity CA (self-signed, P-384), the trust anchor of every NVIDIA GPU's chain:
/// `verifier/certs/verifier_device_root.pem` of NVIDIA/nvtrust (see `roots/SOURCE`).
/// SHA-256 of its DER: `102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48`.
pub const DEVICE_ROOT_PEM: &[u8] = include_bytes!("../roots/nvidia_device_root.pem");
/// Certificates in a Hopper chain.
pub const HOPPER_CHAIN_LEN: usize = 5;
/// Largest PEM chain accepted.
pub const MAX_CHAIN_PEM: usize = 64 * 1024;
/// Most certificates read from a PEM chain.
pub const MAX_CHAIN_CERTS: usize = 8;

const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_BASIC_CONSTRAINTS: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.19");
/// TCG DICE TcbInfo (`tcg-dice-TcbInfo`), where NVIDIA's AK certificate carries the FWID.
const OID_TCG_DICE_TCB_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.133.5.4.1");

/// One certificate: parsed, with its DER.
#[derive(Debug, Clone)]
pub struct ChainCert {
    /// The parsed certificate.
    pub cert: Certificate,
    /// Its DER encoding, as received.
    pub der: Vec<u8>,
}

impl ChainCert {
    /// Parses one DER certificate.
    pub fn from_der(der: Vec<u8>) -> Result<Self, String> {
        let cert = Certificate::from_der(&der).map_err(|e| format!("not a certificate: {e}"))?;
        Ok(Self { cert, der })
    }

    /// The subject name, as RFC 4514 text.
    pub fn subject(&self) -> String {
        self.cert.tbs_certificate.subject.to_string()
    }
}

/// The pinned device root.
pub fn device_root() -> Result<ChainCert, String> {
    let mut v = parse_pem_chain(DEVICE_ROOT_PEM)?;
    match (v.pop(), v.is_empty()) {
        (Some(root), true) => Ok(root),
        _ => Err("pinned device root: not exactly one certificate".into()),
    }
}

/// Splits a PEM chain into certificates. Only whitespace may stand between the blocks; at most
/// [`MAX_CHAIN_CERTS`] certificates in [`MAX_CHAIN_PEM`] bytes.
pub fn parse_pem_chain(pem: &[u8]) -> Result<Vec<ChainCert>, String> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    if pem.len() > MAX_CHAIN_PEM {
        return Err(format!(
            "PEM chain of {} bytes exceeds {MAX_CHAIN_PEM}",
            pem.len()
        ));
    }
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    let mut rest = pem.trim_ascii();
    let mut certs = Vec::new();
    while !rest.is_empty() {
        if !rest.starts_with(BEGIN) {
            return Err(format!(
                "PEM chain: text outside a certificate after {} certificates",
                certs.len()
            ));
        }
        let end = find(rest, END)
            .ok_or_else(|| format!("PEM chain: certificate {} has no END line", certs.len()))?
            + END.len();
        if certs.len() == MAX_CHAIN_CERTS {
            return Err(format!(
                "PEM chain: more than {MAX_CHAIN_CERTS} certificates"
            ));
        }
        let (label, der) = x509_cert::der::pem::decode_vec(&rest[..end])
            .map_err(|e| format!("PEM chain: certificate {}: {e}", certs.len()))?;
        if label != "CERTIFICATE" {
            return Err(format!("PEM chain: label {label}"));
        }
        let c =
            ChainCert::from_der(der).map_err(|e| format!("certificate {}: {e}", certs.len()))?;
        certs.push(c);
        rest = rest[end..].trim_ascii_start();
    }
    if certs.is_empty() {
        return Err("PEM chain: no certificate".into());
    }
    Ok(certs)
}

/// The certificate's P-384 public key (id-ecPublicKey on secp384r1, RFC 5480 §2.1.1).
pub fn p384_key(c: &ChainCert) -> Result<VerifyingKey, String> {
    let spki = &c.cert.tbs_certificate.subject_public_key_info;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if spki.algorithm.oid != OID_EC_PUBLIC_KEY || curve != Some(OID_SECP384R1) {
        return Err(format!("{}: key is not EC P-384", c.subject()));
    }
    let bytes = spki
        .subject_public_key
        .as_bytes()
        .ok_or_else(|| format!("{}: key bit string has unused bits", c.subject()))?;
    VerifyingKey::from_sec1_bytes(bytes)
        .map_err(|_| format!("{}: key is not a P-384 point", c.subject()))
}

/// The raw TBSCertificate bytes: the first element of the certificate's outer SEQUENCE.
fn raw_tbs(der: &[u8]) -> Result<&[u8], String> {
    let mut r = SliceReader::new(der).map_err(|e| e.to_string())?;
    Header::decode(&mut r).map_err(|e| e.to_string())?;
    r.tlv_bytes().map_err(|e| e.to_string())
}

/// `child` signed by `issuer`: issuer name, ecdsa-with-SHA384 (RFC 5758 §3.2: parameters
/// absent), DER ECDSA-Sig-Value over the raw TBS, verified with the issuer's P-384 key.
pub fn check_signed_by(child: &ChainCert, issuer: &ChainCert) -> Result<(), String> {
    let tbs = &child.cert.tbs_certificate;
    if tbs.issuer != issuer.cert.tbs_certificate.subject {
        return Err(format!(
            "{}: issuer {} is not the next certificate ({})",
            child.subject(),
            tbs.issuer,
            issuer.subject()
        ));
    }
    let alg = &child.cert.signature_algorithm;
    if alg.oid != OID_ECDSA_SHA384 || alg.parameters.is_some() || tbs.signature != *alg {
        return Err(format!(
            "{}: signature algorithm {} is not ecdsa-with-SHA384",
            child.subject(),
            alg.oid
        ));
    }
    let key = p384_key(issuer)?;
    let sig_der = child
        .cert
        .signature
        .as_bytes()
        .ok_or_else(|| format!("{}: signature bit string has unused bits", child.subject()))?;
    let sig = Signature::from_der(sig_der).map_err(|_| {
        format!(
            "{}: signature is not a DER ECDSA-Sig-Value",
            child.subject()
        )
    })?;
    let tbs_raw = raw_tbs(&child.der).map_err(|e| format!("{}: TBS: {e}", child.subject()))?;
    key.verify(tbs_raw, &sig).map_err(|_| {
        format!(
            "{}: signature does not verify with {}'s key",
            child.subject(),
            issuer.subject()
        )
    })
}

/// basicConstraints with cA TRUE (RFC 5280 §4.2.1.9).
fn check_is_ca(c: &ChainCert) -> Result<(), String> {
    let ext = c
        .cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_BASIC_CONSTRAINTS)
        .ok_or_else(|| format!("{}: issuer without basicConstraints", c.subject()))?;
    let bc = x509_cert::ext::pkix::BasicConstraints::from_der(ext.extn_value.as_bytes())
        .map_err(|e| format!("{}: basicConstraints: {e}", c.subject()))?;
    if bc.ca {
        Ok(())
    } else {
        Err(format!("{}: issuer is not a CA", c.subject()))
    }
}

/// The chain, leaf first, signed link by link up to the pinned `root` (byte-equal to the last
/// certificate, and self-signed). Validity is [`check_validity`]'s job.
pub fn check_chain(chain: &[ChainCert], root: &ChainCert) -> Result<String, String> {
    if chain.len() != HOPPER_CHAIN_LEN {
        return Err(format!(
            "{} certificates, a Hopper chain has {HOPPER_CHAIN_LEN}",
            chain.len()
        ));
    }
    let last = &chain[chain.len() - 1];
    if last.der != root.der {
        return Err(format!(
            "chain ends at {}, not the pinned NVIDIA device root",
            last.subject()
        ));
    }
    check_signed_by(root, root).map_err(|e| format!("pinned root: {e}"))?;
    for pair in chain.windows(2) {
        check_is_ca(&pair[1])?;
        check_signed_by(&pair[0], &pair[1])?;
    }
    let names: Vec<String> = chain.iter().map(common_name).collect();
    Ok(format!(
        "{} (pinned), ECDSA P-384/SHA-384",
        names.join(" ← ")
    ))
}

/// The certificate's CN, or its whole subject.
pub fn common_name(c: &ChainCert) -> String {
    let subject = c.subject();
    subject
        .split(',')
        .find_map(|rdn| rdn.strip_prefix("CN="))
        .map_or(subject.clone(), str::to_string)
}

/// notBefore ≤ now ≤ notAfter for every certificate (RFC 5280 §4.1.2.5).
pub fn check_validity(chain: &[ChainCert], now: time::OffsetDateTime) -> Result<String, String> {
    let now_s = now.unix_timestamp();
    let secs = |t: x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let mut earliest: Option<x509_cert::time::Time> = None;
    for c in chain {
        let v = &c.cert.tbs_certificate.validity;
        if now_s < secs(v.not_before) {
            let when = v.not_before;
            return Err(format!(
                "{}: not valid before {when} (now {now})",
                c.subject()
            ));
        }
        if now_s > secs(v.not_after) {
            let when = v.not_after;
            return Err(format!("{}: expired at {when} (now {now})", c.subject()));
        }
        if earliest.is_none_or(|e| secs(v.not_after) < secs(e)) {
            earliest = Some(v.not_after);
        }
    }
    let end = earliest.ok_or("no certificate")?;
    Ok(format!(
        "{} certificates valid at {now}; the first to expire does at {end}",
        chain.len()
    ))
}

/// ECDSA P-384 / SHA-384 over `signed` (request || response without its signature) with the
/// AK certificate's key; `signature` is `r || s`, 48 bytes each, big-endian (DSP0274 1.1
/// §10.11; nvtrust `AttestationReport.verify_signature`).
pub fn check_report_signature(
    leaf: &ChainCert,
    signed: &[u8],
    signature: &[u8; 96],
) -> Result<String, String> {
    let key = p384_key(leaf)?;
    let sig = Signature::from_slice(signature)
        .map_err(|_| "signature r or s is zero or not below the P-384 order".to_string())?;
    key.verify(signed, &sig).map_err(|_| {
        format!(
            "ECDSA P-384/SHA-384 over the request and response ({} bytes) does not verify with {}'s key",
            signed.len(),
            common_name(leaf)
        )
    })?;
    Ok(format!(
        "ECDSA P-384/SHA-384 by {} over {} bytes",
        common_name(leaf),
        signed.len()
    ))
}

/// The FWID in the AK certificate's TCG DICE extension (OID 2.23.133.5.4.1). NVIDIA's Hopper AK
/// certificates encode it as `SEQUENCE { INTEGER, SubjectPublicKeyInfo, SEQUENCE { hashAlg OID,
/// digest OCTET STRING } }` (seen in both samples; nvtrust `extract_fwid` takes the last 48
/// bytes): the digest of the last element is returned. `None` without the extension.
pub fn leaf_fwid(leaf: &ChainCert) -> Result<Option<Vec<u8>>, String> {
    let Some(ext) = leaf
        .cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_TCG_DICE_TCB_INFO)
    else {
        return Ok(None);
    };
    let items: Vec<x509_cert::der::Any> =
        Vec::from_der(ext.extn_value.as_bytes()).map_err(|e| format!("FWID extension: {e}"))?;
    let last = items.last().ok_or("FWID extension: empty")?;
    let last_der =
        x509_cert::der::Encode::to_der(last).map_err(|e| format!("FWID extension: {e}"))?;
    let mut r = SliceReader::new(&last_der).map_err(|e| format!("FWID extension: {e}"))?;
    let digest = r
        .sequence(|r| {
            ObjectIdentifier::decode(r)?;
            Ok(OctetStringRef::decode(r)?.as_bytes().to_vec())
        })
        .map_err(|e| format!("FWID extension: {e}"))?;
    Ok(Some(digest))
}
