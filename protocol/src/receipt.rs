//! The per-job statement: an Ed25519-signed record of one job's work for one client reply
//! key. It comes with every result; the payable receipt is the TON cell of [`crate::ton`]
//! (sent alongside when the job carried a voucher).
//!
//! Cumulative, like a payment channel: for each client reply key the guest keeps a rising
//! sequence number and a running total of units, so a client can check it was not charged for
//! jobs it did not send. Signed message (fixed layout, 160 bytes):
//! `"pupa/receipt/v1\0" ‖ guest_key ‖ client_key ‖ job_hash ‖ seq ‖ units ‖ total_units`
//! with the integers as u64 little-endian.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const RECEIPT_DOMAIN: &[u8; 16] = b"pupa/receipt/v1\0";
const JOB_HASH_DOMAIN: &[u8] = b"pupa/job-hash/v1";

/// Length of [`Receipt::signed_bytes`].
pub const SIGNED_LEN: usize = 16 + 32 * 3 + 8 * 3;

/// `SHA-256("pupa/job-hash/v1" ‖ enc ‖ ciphertext)` of a sealed job: the host, the client and
/// the guest can all compute it without seeing the job.
pub fn job_hash(enc: &[u8; 32], ciphertext: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(JOB_HASH_DOMAIN)
        .chain_update(enc)
        .chain_update(ciphertext)
        .finalize()
        .into()
}

/// What a receipt states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The guest's Ed25519 receipt key.
    pub guest_key: [u8; 32],
    /// The client's X25519 reply key.
    pub client_key: [u8; 32],
    /// [`job_hash`] of the sealed job.
    pub job_hash: [u8; 32],
    /// Rises by one per receipt for this client (first is 1).
    pub seq: u64,
    /// Units of this job.
    pub units: u64,
    /// Running total of units for this client, this one included.
    pub total_units: u64,
}

/// A receipt and its signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReceipt {
    /// The statement.
    pub receipt: Receipt,
    /// Ed25519 over [`Receipt::signed_bytes`] by `receipt.guest_key`.
    #[serde(with = "serde_bytes")]
    pub signature: [u8; 64],
}

/// Why a receipt does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The guest key is not the expected one.
    #[error("receipt names another guest key")]
    WrongGuest,
    /// The guest key is not a valid Ed25519 point.
    #[error("receipt guest key is not a valid Ed25519 key")]
    BadKey,
    /// The signature does not verify.
    #[error("receipt signature does not verify")]
    BadSignature,
}

impl Receipt {
    /// The exact bytes signed.
    pub fn signed_bytes(&self) -> [u8; SIGNED_LEN] {
        let mut b = [0u8; SIGNED_LEN];
        let parts: [&[u8]; 7] = [
            RECEIPT_DOMAIN,
            &self.guest_key,
            &self.client_key,
            &self.job_hash,
            &self.seq.to_le_bytes(),
            &self.units.to_le_bytes(),
            &self.total_units.to_le_bytes(),
        ];
        let mut at = 0;
        for p in parts {
            b[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        b
    }

    /// Signs with the guest's key (whose public half must be `guest_key`).
    pub fn sign(self, key: &SigningKey) -> SignedReceipt {
        SignedReceipt {
            receipt: self,
            signature: key.sign(&self.signed_bytes()).to_bytes(),
        }
    }
}

impl SignedReceipt {
    /// Verifies the signature, and that the signer is `expected_guest` (the key the client
    /// saw bound in the evidence).
    pub fn verify(&self, expected_guest: &[u8; 32]) -> Result<(), ReceiptError> {
        if &self.receipt.guest_key != expected_guest {
            return Err(ReceiptError::WrongGuest);
        }
        let vk =
            VerifyingKey::from_bytes(&self.receipt.guest_key).map_err(|_| ReceiptError::BadKey)?;
        vk.verify(
            &self.receipt.signed_bytes(),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| ReceiptError::BadSignature)
    }
}
