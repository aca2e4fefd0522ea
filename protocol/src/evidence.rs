//! Evidence: what binds the guest's keys to a TEE report.
//!
//! `REPORT_DATA = SHA-512("pupa/evidence/v1" ‖ hpke_pk ‖ receipt_pk ‖ nonce)`
//! (docs/DESIGN.md, "Keys and sessions"): the 64 bytes go into the SNP report's REPORT_DATA
//! field or the TDX TDREPORT's REPORTDATA, so a verified report vouches for exactly these keys
//! and this nonce.
//!
//! The development report ([`DevReport`]) is for machines without a TEE. It is **insecure by
//! design**: it carries the in-band marker `PUPA-INSECURE-DEV`, the image's SHA-384 (the
//! guest hashes its own ROM) and REPORT_DATA, signed with an Ed25519 key whose seed is
//! `SHA-256("pupa/dev-report-key/v1" ‖ image_sha384)` — anyone can recompute that key, so the
//! report proves nothing about confidentiality, only that it came from that image's code path.
//! Verifiers refuse it unless told `--allow-insecure-dev` (policy in the verifier/client).
//! Signed message: `"PUPA-INSECURE-DEV/v1" ‖ image_sha384 ‖ report_data`.

use alloc::string::String;
use alloc::vec::Vec;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier};
pub use pupa_spec::tee::TeeKind;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

/// Domain separator of the `REPORT_DATA` binding.
pub const REPORT_DATA_DOMAIN: &[u8] = b"pupa/evidence/v1";
/// In-band marker of the insecure development report.
pub const DEV_MARKER: &str = "PUPA-INSECURE-DEV";
const DEV_SIGNED_DOMAIN: &[u8] = b"PUPA-INSECURE-DEV/v1";
const DEV_KEY_DOMAIN: &[u8] = b"pupa/dev-report-key/v1";

/// Domain separator of [`gpu_nonce`].
pub const GPU_NONCE_DOMAIN: &[u8] = b"pupa/gpu-nonce/v1\0";

/// The 32-byte SPDM nonce GPU `gpu_index` signs in its attestation report, derived from the
/// same 64-byte REPORT_DATA that the CPU report carries (which binds the guest's keys and the
/// client's nonce):
///
/// `SHA-256("pupa/gpu-nonce/v1" ‖ 0x00 ‖ report_data ‖ gpu_index as u32 little-endian)`
///
/// One client nonce freshens the CPU report and every GPU report, and a GPU report cannot be
/// moved to another guest, session or GPU slot: its nonce would differ (docs/PROTOCOL.md,
/// "GPU evidence").
pub fn gpu_nonce(report_data: &[u8; 64], gpu_index: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GPU_NONCE_DOMAIN);
    h.update(report_data);
    h.update(gpu_index.to_le_bytes());
    h.finalize().into()
}

/// `SHA-512("pupa/evidence/v1" ‖ hpke_pk ‖ receipt_pk ‖ nonce)`.
pub fn report_data(hpke_pk: &[u8; 32], receipt_pk: &[u8; 32], nonce: &[u8; 32]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(REPORT_DATA_DOMAIN);
    h.update(hpke_pk);
    h.update(receipt_pk);
    h.update(nonce);
    h.finalize().into()
}

/// The software report of a guest running without a TEE (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevReport {
    /// Must be [`DEV_MARKER`].
    pub marker: String,
    /// SHA-384 of the guest image.
    #[serde(with = "serde_bytes")]
    pub image_sha384: [u8; 48],
    /// The REPORT_DATA the report vouches for.
    #[serde(with = "serde_bytes")]
    pub report_data: [u8; 64],
    /// Ed25519 signature by [`dev_signing_key`]`(image_sha384)`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// The TEE-specific part of evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TeeEvidence {
    /// Insecure development report.
    Dev(DevReport),
    /// AMD SEV-SNP attestation report (1184 bytes), optionally with the VCEK (DER).
    Snp {
        /// The raw report.
        #[serde(with = "serde_bytes")]
        report: Vec<u8>,
        /// The VCEK certificate, if the guest has it.
        vcek: Option<serde_bytes::ByteBuf>,
    },
    /// Intel TDX quote (v4 or v5).
    Tdx {
        /// The raw quote.
        #[serde(with = "serde_bytes")]
        quote: Vec<u8>,
        /// The guest's RTMR event log (TCG2 crypto-agile, SHA-384; CCEL index = RTMR + 1), to be
        /// replayed against the quote: the built-in runtime's boot configuration in RTMR[2];
        /// for the Linux payload, QEMU's ACPI tables in RTMR[0], the kernel in RTMR[1], the
        /// initrd and command line in RTMR[2] (pupa-worker sends the firmware's CCEL log).
        event_log: Option<serde_bytes::ByteBuf>,
    },
}

impl TeeEvidence {
    /// The TEE this evidence comes from.
    pub fn kind(&self) -> TeeKind {
        match self {
            TeeEvidence::Dev(_) => TeeKind::Dev,
            TeeEvidence::Snp { .. } => TeeKind::Snp,
            TeeEvidence::Tdx { .. } => TeeKind::Tdx,
        }
    }
}

/// Evidence message: the guest's public keys, the nonce, and the TEE report over their binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    /// X25519 HPKE public key jobs are sealed to.
    pub hpke_pk: [u8; 32],
    /// Ed25519 key that signs receipts.
    pub receipt_pk: [u8; 32],
    /// The client's nonce (all zero for the boot evidence).
    pub nonce: [u8; 32],
    /// The report.
    pub tee: TeeEvidence,
    /// One attestation report per GPU the worker computes on, GPU `i` over
    /// [`gpu_nonce`]`(REPORT_DATA, i)`; empty when it has none (the firmware's CPU runtime).
    pub gpus: Vec<GpuEvidence>,
}

impl Evidence {
    /// The REPORT_DATA these keys and nonce must appear under.
    pub fn expected_report_data(&self) -> [u8; 64] {
        report_data(&self.hpke_pk, &self.receipt_pk, &self.nonce)
    }

    /// The SPDM nonce GPU `index`'s report must carry.
    pub fn expected_gpu_nonce(&self, index: u32) -> [u8; 32] {
        gpu_nonce(&self.expected_report_data(), index)
    }
}

/// Most GPUs one evidence message may describe (an HGX board has 8).
pub const MAX_GPUS: usize = 8;

/// An NVIDIA GPU's confidential-computing evidence, as NVML returns it
/// (`nvmlDeviceGetConfComputeGpuAttestationReport`, `nvmlDeviceGetConfComputeGpuCertificate`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuEvidence {
    /// The SPDM 1.1 GET_MEASUREMENTS request followed by the signed MEASUREMENTS response
    /// (DMTF DSP0274 §10.11), whose nonce is this GPU's [`gpu_nonce`].
    #[serde(with = "serde_bytes")]
    pub report: Vec<u8>,
    /// The attestation key's certificate chain, PEM, leaf first, up to NVIDIA's device root.
    #[serde(with = "serde_bytes")]
    pub cert_chain: Vec<u8>,
}

/// Why evidence does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EvidenceError {
    /// Not a development report.
    #[error("evidence is not a development report")]
    NotDev,
    /// The marker is missing or wrong.
    #[error("development report lacks the PUPA-INSECURE-DEV marker")]
    BadMarker,
    /// The signature does not verify under the image's dev key.
    #[error("development report signature does not verify for its image hash")]
    BadSignature,
    /// REPORT_DATA does not bind the evidence's keys and nonce.
    #[error("REPORT_DATA does not match SHA-512(domain ‖ hpke_pk ‖ receipt_pk ‖ nonce)")]
    BindingMismatch,
}

/// The (public, recomputable) Ed25519 key of development reports for an image.
pub fn dev_signing_key(image_sha384: &[u8; 48]) -> SigningKey {
    let seed: [u8; 32] = Sha256::new()
        .chain_update(DEV_KEY_DOMAIN)
        .chain_update(image_sha384)
        .finalize()
        .into();
    SigningKey::from_bytes(&seed)
}

fn dev_message(image_sha384: &[u8; 48], report_data: &[u8; 64]) -> Vec<u8> {
    [DEV_SIGNED_DOMAIN, image_sha384, report_data].concat()
}

/// Produces the development report for `report_data` of the image `image_sha384`.
pub fn sign_dev(image_sha384: &[u8; 48], report_data: &[u8; 64]) -> DevReport {
    let sig = dev_signing_key(image_sha384).sign(&dev_message(image_sha384, report_data));
    DevReport {
        marker: DEV_MARKER.into(),
        image_sha384: *image_sha384,
        report_data: *report_data,
        signature: sig.to_bytes(),
    }
}

/// Checks a development report: marker, signature under the image's dev key, and that its
/// REPORT_DATA binds the evidence's keys and nonce. Returns the image SHA-384. Says nothing
/// about confidentiality: callers must refuse dev evidence unless insecure dev is allowed.
pub fn verify_dev(ev: &Evidence) -> Result<[u8; 48], EvidenceError> {
    let TeeEvidence::Dev(r) = &ev.tee else {
        return Err(EvidenceError::NotDev);
    };
    if r.marker != DEV_MARKER {
        return Err(EvidenceError::BadMarker);
    }
    let vk = dev_signing_key(&r.image_sha384).verifying_key();
    vk.verify(
        &dev_message(&r.image_sha384, &r.report_data),
        &Signature::from_bytes(&r.signature),
    )
    .map_err(|_| EvidenceError::BadSignature)?;
    if r.report_data != ev.expected_report_data() {
        return Err(EvidenceError::BindingMismatch);
    }
    Ok(r.image_sha384)
}
