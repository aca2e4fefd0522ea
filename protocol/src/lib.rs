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
//! - [`receipt`]: the interim signed receipt (Ed25519 over a domain-separated encoding);
//! - [`ton`]: TON cells and receipts.
#![cfg_attr(not(any(test, feature = "std")), no_std)]
extern crate alloc;

pub mod evidence;
pub mod frame;
pub mod job;
pub mod msg;
pub mod receipt;
pub mod seal;
pub mod ton;

/// The protocol version carried in every frame header; frames with any other version are
/// refused with [`frame::FrameError::UnsupportedVersion`].
pub const PROTOCOL_VERSION: u8 = 1;
