//! Spec structures shared by the firmware (`pupa-guest`), the image builder (`pupa-image`) and
//! the verifier (`pupa-measurements`), so that each layout is written down once.
//!
//! Every structure is a `#[repr(C)]` type deriving `zerocopy`'s `FromBytes`/`IntoBytes`/
//! `KnownLayout`/`Immutable`, with `const` assertions of its size and of the offsets the spec
//! names, and a doc comment naming the spec section it follows. Parsing outside bytes goes
//! through `zerocopy`'s checked `ref_from_bytes`/`read_from_bytes` (length checked, no
//! `unsafe`). `no_std`, no allocation.
#![no_std]
#![forbid(unsafe_code)]

pub mod snp;
pub mod tdx;
pub mod tee;
pub mod virtio;
