//! Revocation of the GPU's certificate chain from OCSP responses passed as collateral files
//! (`--gpu-ocsp`, policy key `gpu_ocsp`): DER `OCSPResponse`s (RFC 6960 §4.2.1) whose
//! `responseBytes` is an `id-pkix-ocsp-basic` `BasicOCSPResponse`, parsed with RustCrypto's
//! `x509-ocsp` (no DER by hand).
//!
//! For every certificate of the chain from index `first` up to, not including, the root (the
//! root is pinned, not revocable here), some `SingleResponse` must carry its `CertID` (RFC 6960 §4.1.1: SHA-1, SHA-256 or SHA-384 of
//! the issuer's subject name DER and of the issuer's subjectPublicKey bits, and the serial), and
//! that response must be:
//! - signed with ECDSA P-384 / SHA-384 over the *raw* `tbsResponseData` bytes, by the issuer
//!   itself or by a delegated responder (RFC 6960 §4.2.2.2): a certificate in `certs`, issued
//!   and signed by the issuer, with extendedKeyUsage id-kp-OCSPSigning, valid at `now`, and
//!   named by `responderID` (by name, or by the SHA-1 of its key). NVIDIA's verifier (nvtrust
//!   `CcAdminUtils.verify_ocsp_signature`) verifies the signature with SHA-384 and the first
//!   certificate in `certs`, i.e. NVIDIA's OCSP service uses a delegated responder;
//! - `responseStatus` successful, `certStatus` good;
//! - current: `thisUpdate ≤ now < nextUpdate`, `nextUpdate` required (RFC 6960 §4.2.2.1).
//!
//! For the GPU chain `first` is [`GPU_CHAIN_FIRST_CHECKED`] = 1: the leaf, the attestation-key
//! certificate, is issued by the GPU itself (its BROM key), not by an NVIDIA CA, so NVIDIA's OCSP
//! service has no status for it; nvtrust (`CcAdminUtils.ocsp_certificate_chain_validation`,
//! `start_index = 1` in GPU_ATTESTATION mode) checks the certificates from index 1 to the one
//! below the root, and so does this.
//!
//! A matching response that says *revoked* fails the check, naming the certificate and the
//! revocation time and reason; a certificate with no matching response fails it, named; a file
//! that is not such a DER response fails it with the parse error. Nothing panics on input.

use p384::ecdsa::signature::Verifier as _;
use p384::ecdsa::Signature;
use sha2::Digest as _;
use time::OffsetDateTime;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode, Encode, Header, Reader, SliceReader};
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_ocsp::{
    BasicOcspResponse, CertId, CertStatus, OcspGeneralizedTime, OcspResponse, OcspResponseStatus,
    ResponderId, SingleResponse,
};

use super::certs::{check_signed_by, check_validity, common_name, p384_key, ChainCert};

/// Largest OCSP response file accepted.
pub const MAX_OCSP_RESPONSE: usize = 64 * 1024;
/// Most response files accepted.
pub const MAX_OCSP_FILES: usize = 32;
/// The first certificate of a GPU chain that needs a response: index 1, the one above the
/// device-issued attestation-key leaf (see the module documentation).
pub const GPU_CHAIN_FIRST_CHECKED: usize = 1;

const OID_OCSP_BASIC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.48.1.1");
const OID_KP_OCSP_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.9");
const OID_EKU: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.37");
const OID_ECDSA_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
const OID_SHA1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
const OID_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");
const OID_SHA384: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.2");

/// One parsed response file: the `BasicOCSPResponse` and its raw `tbsResponseData` bytes.
#[derive(Debug, Clone)]
pub struct ParsedOcsp {
    /// The basic response.
    pub basic: BasicOcspResponse,
    /// The `tbsResponseData` as received (what the signature covers).
    pub tbs_raw: Vec<u8>,
}

/// Parses one DER `OCSPResponse`: status successful, type `id-pkix-ocsp-basic`, the basic
/// response decoded (and its raw `tbsResponseData` kept).
pub fn parse_response(der: &[u8]) -> Result<ParsedOcsp, String> {
    if der.len() > MAX_OCSP_RESPONSE {
        return Err(format!("{} bytes exceeds {MAX_OCSP_RESPONSE}", der.len()));
    }
    let resp = OcspResponse::from_der(der).map_err(|e| format!("not a DER OCSPResponse: {e}"))?;
    if resp.response_status != OcspResponseStatus::Successful {
        return Err(format!(
            "responseStatus {:?}, not successful",
            resp.response_status
        ));
    }
    let bytes = resp
        .response_bytes
        .ok_or("successful response without responseBytes")?;
    if bytes.response_type != OID_OCSP_BASIC {
        return Err(format!(
            "responseType {}, not id-pkix-ocsp-basic",
            bytes.response_type
        ));
    }
    let inner = bytes.response.as_bytes();
    let basic = BasicOcspResponse::from_der(inner)
        .map_err(|e| format!("not a DER BasicOCSPResponse: {e}"))?;
    let tbs_raw = first_element(inner).map_err(|e| format!("BasicOCSPResponse: {e}"))?;
    Ok(ParsedOcsp {
        basic,
        tbs_raw: tbs_raw.to_vec(),
    })
}

/// The first element of a DER SEQUENCE, as received.
fn first_element(der: &[u8]) -> Result<&[u8], String> {
    let mut r = SliceReader::new(der).map_err(|e| e.to_string())?;
    Header::decode(&mut r).map_err(|e| e.to_string())?;
    r.tlv_bytes().map_err(|e| e.to_string())
}

/// The revocation check of `chain` (leaf first, root last) against the response files at
/// `now`: `Ok` with a summary when every certificate from index `first` to the one below the
/// root has a current, properly signed *good* response, else `Err` with why (the first
/// certificate that fails, by its index in the chain).
pub fn check_chain_revocation(
    chain: &[ChainCert],
    first: usize,
    responses: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<String, String> {
    if responses.is_empty() {
        return Err("no OCSP response given".into());
    }
    if responses.len() > MAX_OCSP_FILES {
        return Err(format!(
            "{} OCSP responses, at most {MAX_OCSP_FILES}",
            responses.len()
        ));
    }
    if chain.len() < first + 2 {
        return Err(format!(
            "{} certificate(s): none to check from index {first} below the root",
            chain.len()
        ));
    }
    let parsed = responses
        .iter()
        .enumerate()
        .map(|(i, r)| parse_response(r).map_err(|e| format!("OCSP response #{}: {e}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut names = Vec::new();
    for (i, pair) in chain.windows(2).enumerate().skip(first) {
        let (cert, issuer) = (&pair[0], &pair[1]);
        check_one_cert(cert, issuer, &parsed, now)
            .map_err(|e| format!("certificate {i} ({}): {e}", common_name(cert)))?;
        names.push(common_name(cert));
    }
    let skipped = match first {
        0 => String::new(),
        n => format!(
            " (not the first {n}: issued by the device, without OCSP status, as for nvtrust)"
        ),
    };
    Ok(format!(
        "OCSP good and current for {} certificate(s): {}{skipped}",
        names.len(),
        names.join(", ")
    ))
}

/// One certificate: a matching response, and that it says good.
fn check_one_cert(
    cert: &ChainCert,
    issuer: &ChainCert,
    parsed: &[ParsedOcsp],
    now: OffsetDateTime,
) -> Result<(), String> {
    let mut errors = Vec::new();
    let mut good = false;
    for (k, p) in parsed.iter().enumerate() {
        for s in &p.basic.tbs_response_data.responses {
            if !cert_id_matches(&s.cert_id, cert, issuer)? {
                continue;
            }
            match check_single(p, s, issuer, now) {
                Ok(()) => good = true,
                Err(Refusal::Revoked(e)) => return Err(e),
                Err(Refusal::Other(e)) => errors.push(format!("response #{}: {e}", k + 1)),
            }
        }
    }
    if good {
        return Ok(());
    }
    if errors.is_empty() {
        return Err(format!(
            "no OCSP response for it (serial {})",
            hex::encode(cert.cert.tbs_certificate.serial_number.as_bytes())
        ));
    }
    Err(errors.join("; "))
}

/// Why a matching response is not accepted; `Revoked` wins over every other outcome.
#[derive(Debug)]
enum Refusal {
    /// A properly signed response says revoked.
    Revoked(String),
    /// Anything else (signature, responder, status unknown, times).
    Other(String),
}

/// The response's signature and responder, then the status and the times.
fn check_single(
    p: &ParsedOcsp,
    s: &SingleResponse,
    issuer: &ChainCert,
    now: OffsetDateTime,
) -> Result<(), Refusal> {
    let other = Refusal::Other;
    let signer = authorized_signer(p, issuer, now).map_err(other)?;
    verify_signature(p, &signer).map_err(other)?;
    if let CertStatus::Revoked(info) = &s.cert_status {
        let reason = info
            .revocation_reason
            .map_or("no reason given".to_string(), |r| format!("reason {r:?}"));
        return Err(Refusal::Revoked(format!(
            "REVOKED at {} ({reason}), by a response signed by {}",
            fmt_time(&info.revocation_time),
            common_name(&signer)
        )));
    }
    if let CertStatus::Unknown(_) = s.cert_status {
        return Err(other("certStatus unknown".into()));
    }
    let now_s = now.unix_timestamp();
    let this = secs(&s.this_update);
    if this > now_s {
        return Err(other(format!(
            "thisUpdate {} is after now",
            fmt_time(&s.this_update)
        )));
    }
    let next = s
        .next_update
        .as_ref()
        .ok_or_else(|| other("no nextUpdate (required)".into()))?;
    if now_s >= secs(next) {
        return Err(other(format!(
            "expired: nextUpdate {} is not after now",
            fmt_time(next)
        )));
    }
    Ok(())
}

/// The certificate that signed the response: the issuer, or a delegated responder in `certs`
/// issued by it (signed by its key, id-kp-OCSPSigning, valid at `now`). Either must be the one
/// `responderID` names.
fn authorized_signer(
    p: &ParsedOcsp,
    issuer: &ChainCert,
    now: OffsetDateTime,
) -> Result<ChainCert, String> {
    let rid = &p.basic.tbs_response_data.responder_id;
    if names(rid, issuer) {
        return Ok(issuer.clone());
    }
    let mut why = Vec::new();
    for c in p.basic.certs.iter().flatten() {
        let der = c
            .to_der()
            .map_err(|e| format!("responder certificate: {e}"))?;
        let c = ChainCert::from_der(der)?;
        if !names(rid, &c) {
            continue;
        }
        match delegated(&c, issuer, now) {
            Ok(()) => return Ok(c),
            Err(e) => why.push(format!("responder {} not authorized: {e}", c.subject())),
        }
    }
    if why.is_empty() {
        why.push(format!(
            "responder not authorized: the responderID names neither the issuer ({}) nor a \
             certificate in the response",
            issuer.subject()
        ));
    }
    Err(why.join("; "))
}

/// A delegated OCSP responder of `issuer` (RFC 6960 §4.2.2.2).
fn delegated(c: &ChainCert, issuer: &ChainCert, now: OffsetDateTime) -> Result<(), String> {
    check_signed_by(c, issuer)?;
    let eku = c
        .cert
        .tbs_certificate
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == OID_EKU)
        .ok_or("no extendedKeyUsage")?;
    let eku = ExtendedKeyUsage::from_der(eku.extn_value.as_bytes())
        .map_err(|e| format!("extendedKeyUsage: {e}"))?;
    if !eku.0.contains(&OID_KP_OCSP_SIGNING) {
        return Err("extendedKeyUsage without id-kp-OCSPSigning".into());
    }
    check_validity(std::slice::from_ref(c), now).map(|_| ())
}

/// Whether `rid` names `c`: by subject, or by the SHA-1 of its subjectPublicKey bits.
fn names(rid: &ResponderId, c: &ChainCert) -> bool {
    let tbs = &c.cert.tbs_certificate;
    match rid {
        ResponderId::ByName(n) => *n == tbs.subject,
        ResponderId::ByKey(h) => {
            let key = tbs.subject_public_key_info.subject_public_key.raw_bytes();
            h.as_bytes() == sha1::Sha1::digest(key).as_slice()
        }
    }
}

/// ecdsa-with-SHA384 (parameters absent) over the raw `tbsResponseData` with `signer`'s P-384
/// key.
fn verify_signature(p: &ParsedOcsp, signer: &ChainCert) -> Result<(), String> {
    let alg = &p.basic.signature_algorithm;
    if alg.oid != OID_ECDSA_SHA384 || alg.parameters.is_some() {
        return Err(format!(
            "signature algorithm {} is not ecdsa-with-SHA384",
            alg.oid
        ));
    }
    let key = p384_key(signer)?;
    let sig = p
        .basic
        .signature
        .as_bytes()
        .and_then(|b| Signature::from_der(b).ok())
        .ok_or("signature is not a DER ECDSA-Sig-Value")?;
    key.verify(&p.tbs_raw, &sig).map_err(|_| {
        format!(
            "signature does not verify with {}'s key",
            common_name(signer)
        )
    })
}

/// Whether `id` is the CertID of `cert` issued by `issuer` (RFC 6960 §4.1.1). An unsupported
/// hash algorithm never matches.
fn cert_id_matches(id: &CertId, cert: &ChainCert, issuer: &ChainCert) -> Result<bool, String> {
    if id.serial_number != cert.cert.tbs_certificate.serial_number {
        return Ok(false);
    }
    let itbs = &issuer.cert.tbs_certificate;
    let name = itbs
        .subject
        .to_der()
        .map_err(|e| format!("issuer name: {e}"))?;
    let key = itbs.subject_public_key_info.subject_public_key.raw_bytes();
    let (nh, kh): (Vec<u8>, Vec<u8>) = match id.hash_algorithm.oid {
        OID_SHA1 => (
            sha1::Sha1::digest(&name).to_vec(),
            sha1::Sha1::digest(key).to_vec(),
        ),
        OID_SHA256 => (
            sha2::Sha256::digest(&name).to_vec(),
            sha2::Sha256::digest(key).to_vec(),
        ),
        OID_SHA384 => (
            sha2::Sha384::digest(&name).to_vec(),
            sha2::Sha384::digest(key).to_vec(),
        ),
        _ => return Ok(false),
    };
    Ok(id.issuer_name_hash.as_bytes() == nh && id.issuer_key_hash.as_bytes() == kh)
}

fn secs(t: &OcspGeneralizedTime) -> i64 {
    i64::try_from(t.0.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

fn fmt_time(t: &OcspGeneralizedTime) -> String {
    t.0.to_date_time().to_string()
}
