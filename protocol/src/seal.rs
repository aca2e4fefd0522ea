//! HPKE (RFC 9180) as pupa uses it: base mode (§5.1.1), KEM DHKEM(X25519, HKDF-SHA256)
//! (0x0020, §7.1), KDF HKDF-SHA256 (0x0001), AEAD AES-256-GCM (0x0002) or ChaCha20-Poly1305
//! (0x0003), single-shot Seal/Open (§6.1). The HPKE itself is the `hpke` crate's.
//!
//! Bindings (pupa's choice, checked by both ends):
//! - a sealed job: `info = "pupa/job/v1" ‖ guest_hpke_pk`, so it opens only under the guest key
//!   it was sealed to; `aad = "pupa/aad/v1" ‖ version ‖ kind(SealedJob) ‖ aead_id(u16 BE)`;
//! - a sealed result: `info = "pupa/result/v1" ‖ guest_hpke_pk ‖ client_reply_pk`;
//!   `aad = "pupa/aad/v1" ‖ version ‖ kind(SealedResult) ‖ aead_id ‖ job_enc`, so a result
//!   answers exactly one sealed job (its encapsulated key) and cannot pass as a job.
//!
//! Randomness: sealing takes the 32 bytes of ephemeral input keying material (`ikmE`, §7.1.3
//! DeriveKeyPair) from the caller, who draws them from a CSPRNG. This keeps fallible entropy
//! out of this crate and makes the RFC vectors directly testable.

use alloc::vec::Vec;

use hpke::aead::{AesGcm256, ChaCha20Poly1305};
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem as _, OpModeR, OpModeS, Serializable};
use serde::{Deserialize, Serialize};

use crate::frame::Kind;
use crate::PROTOCOL_VERSION;

/// RFC 9180 §7.1 KEM id of DHKEM(X25519, HKDF-SHA256).
pub const KEM_ID: u16 = 0x0020;
/// RFC 9180 §7.2 KDF id of HKDF-SHA256.
pub const KDF_ID: u16 = 0x0001;
/// Bytes of an X25519 public key, private key or encapsulated key (`Npk`, `Nsk`, `Nenc`).
pub const KEY_LEN: usize = 32;

const JOB_INFO: &[u8] = b"pupa/job/v1";
const RESULT_INFO: &[u8] = b"pupa/result/v1";
const AAD_DOMAIN: &[u8] = b"pupa/aad/v1";

/// The AEAD of a sealed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Aead {
    /// AES-256-GCM (RFC 9180 aead id 0x0002).
    Aes256Gcm,
    /// ChaCha20-Poly1305 (RFC 9180 aead id 0x0003).
    ChaCha20Poly1305,
}

impl Aead {
    /// The RFC 9180 §7.3 AEAD id.
    pub fn id(self) -> u16 {
        match self {
            Aead::Aes256Gcm => 0x0002,
            Aead::ChaCha20Poly1305 => 0x0003,
        }
    }

    /// The AEAD for an RFC 9180 id, if pupa supports it.
    pub fn from_id(id: u16) -> Option<Aead> {
        match id {
            0x0002 => Some(Aead::Aes256Gcm),
            0x0003 => Some(Aead::ChaCha20Poly1305),
            _ => None,
        }
    }
}

/// Why sealing or opening failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// A public or encapsulated key is not a valid X25519 point encoding, or the DH result
    /// was all-zero (RFC 9180 §7.1.4).
    #[error("invalid X25519 key or encapsulation")]
    BadKey,
    /// Authentication failed: tampered, truncated, or sealed under another key, `info` or AAD.
    #[error("ciphertext does not authenticate under this key and binding")]
    OpenFailed,
    /// Encryption failed (message limit; cannot happen for single-shot use).
    #[error("HPKE seal failed")]
    SealFailed,
}

/// An X25519 key pair as raw bytes (the private key is the 32-byte scalar `skRm`).
#[derive(Clone)]
pub struct KeyPair {
    /// Private key bytes.
    pub sk: [u8; KEY_LEN],
    /// Public key bytes.
    pub pk: [u8; KEY_LEN],
}

impl core::fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyPair")
            .field("pk", &self.pk)
            .finish_non_exhaustive()
    }
}

impl KeyPair {
    /// RFC 9180 §7.1.3 DeriveKeyPair(ikm) for DHKEM(X25519, HKDF-SHA256).
    pub fn derive(ikm: &[u8; 32]) -> KeyPair {
        let (sk, pk) = X25519HkdfSha256::derive_keypair(ikm);
        let mut out = KeyPair {
            sk: [0; KEY_LEN],
            pk: [0; KEY_LEN],
        };
        out.sk.copy_from_slice(&sk.to_bytes());
        out.pk.copy_from_slice(&pk.to_bytes());
        out
    }
}

/// An RNG that yields the caller's 32 bytes of `ikmE` once; `hpke`'s GenerateKeyPair reads
/// exactly `Nsk` = 32 bytes from it and runs DeriveKeyPair on them. Later reads give zeros,
/// which no code path performs (the round-trip tests check `enc` = DeriveKeyPair(ikmE).pk).
struct IkmRng {
    ikm: [u8; 32],
    used: usize,
}

impl rand_core::RngCore for IkmRng {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        for d in dst {
            *d = self.ikm.get(self.used).copied().unwrap_or(0);
            self.used = self.used.saturating_add(1);
        }
    }
}
impl rand_core::CryptoRng for IkmRng {}

fn pk_from(b: &[u8; KEY_LEN]) -> Result<<X25519HkdfSha256 as hpke::Kem>::PublicKey, SealError> {
    <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(b).map_err(|_| SealError::BadKey)
}

/// RFC 9180 §6.1 single-shot Seal in base mode: returns `(enc, ciphertext ‖ tag)`.
pub fn seal_raw(
    aead: Aead,
    pk_r: &[u8; KEY_LEN],
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    ikm_e: &[u8; 32],
) -> Result<([u8; KEY_LEN], Vec<u8>), SealError> {
    let pk = pk_from(pk_r)?;
    let mut rng = IkmRng {
        ikm: *ikm_e,
        used: 0,
    };
    let mode = OpModeS::Base;
    let r = match aead {
        Aead::Aes256Gcm => hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
            &mode, &pk, info, plaintext, aad, &mut rng,
        ),
        Aead::ChaCha20Poly1305 => {
            hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
                &mode, &pk, info, plaintext, aad, &mut rng,
            )
        }
    };
    let (enc, ct) = r.map_err(|e| match e {
        hpke::HpkeError::EncapError => SealError::BadKey,
        _ => SealError::SealFailed,
    })?;
    let mut out = [0; KEY_LEN];
    out.copy_from_slice(&enc.to_bytes());
    Ok((out, ct))
}

/// RFC 9180 §6.1 single-shot Open in base mode.
pub fn open_raw(
    aead: Aead,
    sk_r: &[u8; KEY_LEN],
    enc: &[u8; KEY_LEN],
    info: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
) -> Result<Vec<u8>, SealError> {
    let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(sk_r)
        .map_err(|_| SealError::BadKey)?;
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| SealError::BadKey)?;
    let mode = OpModeR::Base;
    let r = match aead {
        Aead::Aes256Gcm => hpke::single_shot_open::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
            &mode, &sk, &enc, info, ciphertext, aad,
        ),
        Aead::ChaCha20Poly1305 => {
            hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
                &mode, &sk, &enc, info, ciphertext, aad,
            )
        }
    };
    r.map_err(|e| match e {
        hpke::HpkeError::DecapError => SealError::BadKey,
        _ => SealError::OpenFailed,
    })
}

/// Bytes of the AEAD tag at the end of every ciphertext (`Nt`, RFC 9180 §7.3: 16 for both).
pub const TAG_LEN: usize = 16;

/// [`open_raw`] in place: `buf` holds `ciphertext ‖ tag` and is left holding the plaintext
/// (no second copy of a large job). On error the contents of `buf` are unspecified.
pub fn open_in_place(
    aead: Aead,
    sk_r: &[u8; KEY_LEN],
    enc: &[u8; KEY_LEN],
    info: &[u8],
    aad: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), SealError> {
    let Some(ct_len) = buf.len().checked_sub(TAG_LEN) else {
        return Err(SealError::OpenFailed);
    };
    let sk = <X25519HkdfSha256 as hpke::Kem>::PrivateKey::from_bytes(sk_r)
        .map_err(|_| SealError::BadKey)?;
    let enc = <X25519HkdfSha256 as hpke::Kem>::EncappedKey::from_bytes(enc)
        .map_err(|_| SealError::BadKey)?;
    let mode = OpModeR::Base;
    let (ct, tag) = buf.split_at_mut(ct_len);
    let r = match aead {
        Aead::Aes256Gcm => hpke::aead::AeadTag::<AesGcm256>::from_bytes(tag).and_then(|t| {
            hpke::single_shot_open_in_place_detached::<AesGcm256, HkdfSha256, X25519HkdfSha256>(
                &mode, &sk, &enc, info, ct, aad, &t,
            )
        }),
        Aead::ChaCha20Poly1305 => hpke::aead::AeadTag::<ChaCha20Poly1305>::from_bytes(tag)
            .and_then(|t| {
                hpke::single_shot_open_in_place_detached::<
                    ChaCha20Poly1305,
                    HkdfSha256,
                    X25519HkdfSha256,
                >(&mode, &sk, &enc, info, ct, aad, &t)
            }),
    };
    r.map_err(|e| match e {
        hpke::HpkeError::DecapError => SealError::BadKey,
        _ => SealError::OpenFailed,
    })?;
    buf.truncate(ct_len);
    Ok(())
}

/// `info` of a job sealed to `guest_pk`.
pub fn job_info(guest_pk: &[u8; KEY_LEN]) -> Vec<u8> {
    [JOB_INFO, guest_pk].concat()
}

/// AAD of a job sealed with `aead`.
pub fn job_aad(aead: Aead) -> Vec<u8> {
    let mut a = AAD_DOMAIN.to_vec();
    a.extend_from_slice(&[PROTOCOL_VERSION, Kind::SealedJob as u8]);
    a.extend_from_slice(&aead.id().to_be_bytes());
    a
}

/// `info` of a result sealed by `guest_pk` to `client_pk`.
pub fn result_info(guest_pk: &[u8; KEY_LEN], client_pk: &[u8; KEY_LEN]) -> Vec<u8> {
    [RESULT_INFO, guest_pk, client_pk].concat()
}

/// AAD of a result answering the job whose encapsulated key was `job_enc`.
pub fn result_aad(aead: Aead, job_enc: &[u8; KEY_LEN]) -> Vec<u8> {
    let mut a = AAD_DOMAIN.to_vec();
    a.extend_from_slice(&[PROTOCOL_VERSION, Kind::SealedResult as u8]);
    a.extend_from_slice(&aead.id().to_be_bytes());
    a.extend_from_slice(job_enc);
    a
}
