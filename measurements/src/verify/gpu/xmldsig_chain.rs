//! The certificate chain of a RIM's signature: the `X509Data` certificates of its `KeyInfo`
//! (xmldsig-core1 §4.5.4), signer first, up to NVIDIA's RIM root, which is pinned by the caller.
//!
//! Rules (RFC 5280 §6.1, reduced to what NVIDIA's RIM chains use):
//! - at most [`MAX_CHAIN`] certificates, each strict DER (it must re-encode to its own bytes,
//!   so the signed `tbsCertificate` is exactly the one read);
//! - the first certificate signs the RIM; each is issued by the next (issuer name equal to the
//!   next one's subject, ECDSA P-384/SHA-384 signature by its key); the last one either *is*
//!   the pinned root (byte-equal; then the pinned copy is used) or is issued by it;
//! - every issuer, the root included, is a CA (basicConstraints cA, keyUsage keyCertSign if
//!   present); the signer's keyUsage, if present, allows digitalSignature;
//! - every certificate, the root included, is valid at `now` (notBefore ≤ now ≤ notAfter).
//!
//! Revocation (OCSP) is not checked here: it needs collateral the RIM does not carry.

use p384::ecdsa::signature::Verifier;
use p384::ecdsa::{Signature, VerifyingKey};
use time::OffsetDateTime;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, DecodePem, Encode};
use x509_cert::ext::pkix::{BasicConstraints, KeyUsage};
use x509_cert::Certificate;

use super::rim::RimError;

/// At most this many certificates in `KeyInfo` (NVIDIA's local verifier uses the same bound,
/// `MAX_CERT_CHAIN_LENGTH = 5` in nvtrust's `verifier/config.py`).
pub const MAX_CHAIN: usize = 5;

/// ecdsa-with-SHA384 (RFC 5758 §3.2).
const ECDSA_WITH_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
/// id-ecPublicKey (RFC 5480 §2.1.1).
const ID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
/// secp384r1 (RFC 5480 §2.1.1.1).
const SECP384R1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");

/// Verifies `certs` (DER, signer first) up to the pinned root (PEM) at `now`, and returns the
/// signer's P-384 key.
pub(crate) fn verify_chain(
    certs: &[Vec<u8>],
    root_pem: &[u8],
    now: OffsetDateTime,
) -> Result<VerifyingKey, RimError> {
    let root = Certificate::from_pem(root_pem).map_err(|e| RimError::BadRoot(e.to_string()))?;
    let root_der = root
        .to_der()
        .map_err(|e| RimError::BadRoot(e.to_string()))?;
    if certs.is_empty() {
        return Err(RimError::Missing("X509Certificate"));
    }
    if certs.len() > MAX_CHAIN {
        return Err(RimError::ChainTooLong {
            count: certs.len(),
            max: MAX_CHAIN,
        });
    }
    let mut chain = Vec::with_capacity(certs.len());
    for (index, der) in certs.iter().enumerate() {
        chain.push(parse_strict(index, der)?);
    }
    // The file may carry a copy of the root; the pinned one stands in for it.
    if certs.last() == Some(&root_der) {
        chain.pop();
    }
    if chain.is_empty() {
        return Err(RimError::BadCertificate {
            index: 0,
            reason: "the RIM is signed by the root itself, not by a signing certificate".into(),
        });
    }
    for (index, cert) in chain.iter().enumerate() {
        let issuer = chain.get(index + 1).unwrap_or(&root);
        check_issued_by(index, cert, issuer, index + 1 == chain.len())?;
        check_validity(cert, now)?;
    }
    check_validity(&root, now)?;
    let signer = chain.first().ok_or(RimError::Missing("X509Certificate"))?;
    check_signer_usage(signer)?;
    p384_key(signer).map_err(|reason| RimError::BadCertificate { index: 0, reason })
}

/// Parses one certificate and insists that it is in DER (re-encodes to the same bytes).
fn parse_strict(index: usize, der: &[u8]) -> Result<Certificate, RimError> {
    let bad = |reason: String| RimError::BadCertificate { index, reason };
    let cert = Certificate::from_der(der).map_err(|e| bad(e.to_string()))?;
    if cert.to_der().map_err(|e| bad(e.to_string()))? != der {
        return Err(bad("not in distinguished encoding (DER)".into()));
    }
    Ok(cert)
}

/// Name chaining and the issuer's signature over `cert` (RFC 5280 §6.1.3 (a)(1), (a)(4)).
fn check_issued_by(
    index: usize,
    cert: &Certificate,
    issuer: &Certificate,
    issuer_is_root: bool,
) -> Result<(), RimError> {
    let tbs = &cert.tbs_certificate;
    if tbs.issuer != issuer.tbs_certificate.subject {
        return Err(if issuer_is_root {
            RimError::UntrustedRoot {
                issuer: tbs.issuer.to_string(),
                root: issuer.tbs_certificate.subject.to_string(),
            }
        } else {
            RimError::ChainBroken {
                index,
                issuer: tbs.issuer.to_string(),
                next: issuer.tbs_certificate.subject.to_string(),
            }
        });
    }
    check_ca(issuer, index + 1)?;
    if cert.signature_algorithm.oid != ECDSA_WITH_SHA384 || tbs.signature.oid != ECDSA_WITH_SHA384 {
        return Err(RimError::UnsupportedAlgorithm {
            what: "certificate signature",
            uri: cert.signature_algorithm.oid.to_string(),
        });
    }
    let invalid = || RimError::CertSignatureInvalid {
        index,
        subject: tbs.subject.to_string(),
    };
    let key = p384_key(issuer).map_err(|reason| RimError::BadCertificate {
        index: index + 1,
        reason,
    })?;
    let sig_der = cert.signature.as_bytes().ok_or_else(invalid)?;
    let sig = Signature::from_der(sig_der).map_err(|_| invalid())?;
    let tbs_der = tbs.to_der().map_err(|_| invalid())?;
    key.verify(&tbs_der, &sig).map_err(|_| invalid())
}

/// The issuer at `index` in the chain (the root after the last) may issue certificates.
fn check_ca(cert: &Certificate, index: usize) -> Result<(), RimError> {
    let tbs = &cert.tbs_certificate;
    let not_ca = |why: &str| RimError::NotACa {
        index,
        subject: tbs.subject.to_string(),
        why: why.into(),
    };
    match tbs.get::<BasicConstraints>() {
        Ok(Some((_, bc))) if bc.ca => {}
        Ok(_) => return Err(not_ca("basicConstraints does not say cA")),
        Err(e) => return Err(not_ca(&format!("basicConstraints unreadable: {e}"))),
    }
    match tbs.get::<KeyUsage>() {
        Ok(Some((_, ku))) if !ku.key_cert_sign() => Err(not_ca("keyUsage lacks keyCertSign")),
        Ok(_) => Ok(()),
        Err(e) => Err(not_ca(&format!("keyUsage unreadable: {e}"))),
    }
}

/// The signing certificate's keyUsage, if present, allows digitalSignature.
fn check_signer_usage(cert: &Certificate) -> Result<(), RimError> {
    let bad = |reason: String| RimError::BadCertificate { index: 0, reason };
    match cert.tbs_certificate.get::<KeyUsage>() {
        Ok(Some((_, ku))) if !ku.digital_signature() => {
            Err(bad("keyUsage lacks digitalSignature".into()))
        }
        Ok(_) => Ok(()),
        Err(e) => Err(bad(format!("keyUsage unreadable: {e}"))),
    }
}

/// notBefore ≤ now ≤ notAfter (RFC 5280 §4.1.2.5, §6.1.3 (a)(2)).
fn check_validity(cert: &Certificate, now: OffsetDateTime) -> Result<(), RimError> {
    let validity = &cert.tbs_certificate.validity;
    let at = |t: x509_cert::time::Time| {
        let secs = i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX);
        OffsetDateTime::from_unix_timestamp(secs).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    };
    let (not_before, not_after) = (at(validity.not_before), at(validity.not_after));
    let subject = cert.tbs_certificate.subject.to_string();
    if now < not_before {
        return Err(RimError::CertificateNotYetValid {
            subject,
            not_before,
            now,
        });
    }
    if now > not_after {
        return Err(RimError::CertificateExpired {
            subject,
            not_after,
            now,
        });
    }
    Ok(())
}

/// The certificate's public key, which must be an EC key on P-384.
fn p384_key(cert: &Certificate) -> Result<VerifyingKey, String> {
    let spki = &cert.tbs_certificate.subject_public_key_info;
    if spki.algorithm.oid != ID_EC_PUBLIC_KEY {
        return Err(format!(
            "public key algorithm {} is not EC",
            spki.algorithm.oid
        ));
    }
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
    if curve != Some(SECP384R1) {
        return Err("EC public key is not on P-384 (secp384r1)".into());
    }
    let point = spki
        .subject_public_key
        .as_bytes()
        .ok_or("public key bit string")?;
    VerifyingKey::from_sec1_bytes(point).map_err(|_| "invalid P-384 public key".into())
}
