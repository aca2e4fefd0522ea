//! The insecure development "TEE": signs REPORT_DATA with the key derived from the image hash
//! (`pupa_protocol::evidence::sign_dev`). Anyone can forge it; verifiers refuse it unless told
//! `--allow-insecure-dev`.

use pupa_protocol::evidence::{sign_dev, TeeEvidence};

use super::{Tee, TeeFailure};

/// Development evidence for an image whose SHA-384 is `image_sha384` (the guest hashes its own
/// ROM at boot).
#[derive(Debug, Clone)]
pub struct DevTee {
    /// SHA-384 of the running image.
    pub image_sha384: [u8; 48],
}

impl Tee for DevTee {
    fn evidence(&mut self, report_data: &[u8; 64]) -> Result<TeeEvidence, TeeFailure> {
        Ok(TeeEvidence::Dev(sign_dev(&self.image_sha384, report_data)))
    }
}
