//! pupa's wire protocol, shared by the guest, the host loader and the client.
//!
//! Layers, bottom up:
//! - [`frame`]: length-prefixed frames `u32 len ‖ u8 version ‖ u8 kind ‖ body` with per-kind hard
//!   size limits and a streaming [`frame::FrameDecoder`];
//! - [`msg`]: the postcard-encoded message carried in each frame kind;
//! - [`seal`]: HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256) + HKDF-SHA256 with
//!   AES-256-GCM or ChaCha20-Poly1305, and the `info`/AAD that bind a sealed job to the guest
//!   key and to the message kind;
//! - [`job`]: the job schema (matmul, attention) and its validation;
//! - [`evidence`]: the `REPORT_DATA` binding and the insecure development report;
//! - [`receipt`]: the per-job signed statement (Ed25519 over a domain-separated encoding);
//! - [`ton`]: TON cells, vouchers and the payable cumulative receipts.
//!
//! A session, client's view: `Hello` (or `EvidenceRequest{nonce}`) → `Evidence`; verify it
//! (TEE report, REPORT_DATA binding, measurement; dev reports only when allowed); then per
//! job `SealedJob` (HPKE to `Evidence::hpke_pk`) → `SealedResult` (HPKE to the job's reply key,
//! bound to the job's `enc`) + `Receipt` ([`msg::ReceiptReply`]), or one `Error` frame with a
//! specific [`msg::ErrorCode`].
#![cfg_attr(not(any(test, feature = "std")), no_std)]
extern crate alloc;

pub mod boot_digests;
pub mod canonical;
pub mod evidence;
pub mod frame;
pub mod job;
pub mod msg;
pub mod receipt;
pub mod seal;
pub mod ton;

/// Re-exported so users name the byte-buffer type of the messages without their own dependency.
pub use serde_bytes;

/// The protocol version carried in every frame header; frames with any other version are
/// refused with [`frame::FrameError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;
