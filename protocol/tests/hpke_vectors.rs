//! RFC 9180 Appendix A base-mode vectors for the two suites pupa uses:
//! DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 with AES-256-GCM and with ChaCha20Poly1305 (A.2.1).
//! Source: tests/data/SOURCE.

use pupa_protocol::seal::{open_in_place, open_raw, seal_raw, Aead, KeyPair};
use serde::Deserialize;

#[derive(Deserialize)]
struct Vector {
    mode: u8,
    kem_id: u16,
    kdf_id: u16,
    aead_id: u16,
    info: String,
    #[serde(rename = "ikmR")]
    ikm_r: String,
    #[serde(rename = "ikmE")]
    ikm_e: String,
    #[serde(rename = "skRm")]
    sk_rm: String,
    #[serde(rename = "pkRm")]
    pk_rm: String,
    #[serde(rename = "pkEm")]
    pk_em: String,
    enc: String,
    encryptions: Vec<Encryption>,
}

#[derive(Deserialize)]
struct Encryption {
    aad: String,
    ct: String,
    pt: String,
}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}
fn h32(s: &str) -> [u8; 32] {
    h(s).try_into().unwrap()
}

fn vectors() -> Vec<Vector> {
    let v: Vec<Vector> =
        serde_json::from_str(include_str!("data/hpke-rfc9180-base-x25519-sha256.json")).unwrap();
    assert_eq!(v.len(), 2, "one vector per suite");
    v
}

#[test]
fn derive_keypair_matches_rfc() {
    for v in vectors() {
        let r = KeyPair::derive(&h32(&v.ikm_r));
        assert_eq!(r.sk.to_vec(), h(&v.sk_rm));
        assert_eq!(r.pk.to_vec(), h(&v.pk_rm));
        let e = KeyPair::derive(&h32(&v.ikm_e));
        assert_eq!(e.pk.to_vec(), h(&v.pk_em));
    }
}

#[test]
fn seal_and_open_match_rfc_sequence_zero() {
    let mut seen = Vec::new();
    for v in vectors() {
        assert_eq!((v.mode, v.kem_id, v.kdf_id), (0, 0x20, 1));
        let aead = Aead::from_id(v.aead_id).expect("suite we use");
        seen.push(aead);
        assert_eq!(aead.id(), v.aead_id);
        let e = &v.encryptions[0];
        // Single-shot Seal is the context's first encryption (sequence number 0).
        let (enc, ct) = seal_raw(
            aead,
            &h32(&v.pk_rm),
            &h(&v.info),
            &h(&e.aad),
            &h(&e.pt),
            &h32(&v.ikm_e),
        )
        .unwrap();
        assert_eq!(enc.to_vec(), h(&v.enc));
        assert_eq!(ct, h(&e.ct));
        let pt = open_raw(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            &h(&e.aad),
            &h(&e.ct),
        )
        .unwrap();
        assert_eq!(pt, h(&e.pt));
        let mut buf = h(&e.ct);
        open_in_place(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            &h(&e.aad),
            &mut buf,
        )
        .unwrap();
        assert_eq!(buf, h(&e.pt));
        let mut short = vec![0u8; 15];
        assert!(open_in_place(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            &h(&e.aad),
            &mut short
        )
        .is_err());
        // Later sequence numbers use another nonce: single-shot Open must refuse them.
        let e1 = &v.encryptions[1];
        assert!(open_raw(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            &h(&e1.aad),
            &h(&e1.ct)
        )
        .is_err());
        // Any flipped bit, other info or other AAD fails.
        let mut bad = h(&e.ct);
        bad[3] ^= 1;
        assert!(open_raw(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            &h(&e.aad),
            &bad
        )
        .is_err());
        assert!(open_raw(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            b"other",
            &h(&e.aad),
            &h(&e.ct)
        )
        .is_err());
        assert!(open_raw(
            aead,
            &h32(&v.sk_rm),
            &h32(&v.enc),
            &h(&v.info),
            b"other",
            &h(&e.ct)
        )
        .is_err());
    }
    assert_eq!(seen, [Aead::Aes256Gcm, Aead::ChaCha20Poly1305]);
}
