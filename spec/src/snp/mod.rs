//! AMD SEV-SNP structures.

pub mod ghcb;
pub mod vmsa;

pub use ghcb::{Ghcb, GhcbSaveArea};
pub use vmsa::{VmcbSegment, Vmsa};
