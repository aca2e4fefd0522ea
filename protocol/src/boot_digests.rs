//! What pupa's firmware tells a Linux payload about the boot it measured: the SHA-384s of
//! the firmware image and of the kernel, initrd and command line it loaded, in a `setup_data`
//! node of type [`SETUP_PUPA_BOOT_DIGESTS`] (Linux keeps nodes of types it does not know and
//! lists every node under `/sys/kernel/boot_params/setup_data/N/{type,data}`,
//! `arch/x86/kernel/ksysfs.c`).
//!
//! Nothing vouches for these bytes by themselves: under SNP and TDX the hardware evidence
//! covers the payload (the launch digest with kernel hashes, the RTMRs). On a plain VM they
//! give pupa-worker's *development* evidence the same meaning as the firmware's own: the dev
//! report's `image_sha384` becomes [`BootDigests::dev_measurement`], which the image build
//! writes into the manifest (`payload.measurements.dev`) for the verifier.

use sha2::{Digest, Sha384};

/// The `setup_data` type of the node ("pupa" read as a little-endian u32; not one of Linux's
/// `SETUP_*` types, which are small numbers or have bit 31 set).
pub const SETUP_PUPA_BOOT_DIGESTS: u32 = u32::from_le_bytes(*b"pupa");

/// The node's payload (after `struct setup_data`'s `next`, `type`, `len`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BootDigests {
    /// [`BootDigests::MAGIC`]: the layout's version.
    pub magic: [u8; 8],
    /// SHA-384 of the firmware image (the ROM), as in its banner and `manifest.image.sha384`.
    pub firmware: [u8; 48],
    /// SHA-384 of the kernel (the bzImage) with the boot-loader fields zeroed (what the
    /// firmware measures under TDX; the same whatever the VMM patched).
    pub kernel: [u8; 48],
    /// SHA-384 of the initrd.
    pub initrd: [u8; 48],
    /// SHA-384 of the command line with its NUL (as QEMU hands it over).
    pub cmdline: [u8; 48],
}

const _: () = assert!(core::mem::size_of::<BootDigests>() == BootDigests::LEN);

impl BootDigests {
    /// Version 1 of this layout.
    pub const MAGIC: [u8; 8] = *b"PUPABD\x00\x01";
    /// Bytes of the payload.
    pub const LEN: usize = 8 + 4 * 48;

    /// The node payload's bytes.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        let parts: [&[u8]; 5] = [
            &self.magic,
            &self.firmware,
            &self.kernel,
            &self.initrd,
            &self.cmdline,
        ];
        let mut at = 0;
        for p in parts {
            b[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        b
    }

    /// Parses a node's payload: exactly [`Self::LEN`] bytes with [`Self::MAGIC`].
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        let b: &[u8; Self::LEN] = b.try_into().ok()?;
        let d48 = |i: usize| -> [u8; 48] {
            let mut d = [0u8; 48];
            d.copy_from_slice(&b[8 + 48 * i..8 + 48 * (i + 1)]);
            d
        };
        let d = BootDigests {
            magic: b[..8].try_into().ok()?,
            firmware: d48(0),
            kernel: d48(1),
            initrd: d48(2),
            cmdline: d48(3),
        };
        (d.magic == Self::MAGIC).then_some(d)
    }

    /// The `image_sha384` of a development report made under this boot: SHA-384 of the
    /// payload's bytes (the magic separates it from any image's own SHA-384).
    pub fn dev_measurement(&self) -> [u8; 48] {
        Sha384::digest(self.to_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let d = BootDigests {
            magic: BootDigests::MAGIC,
            firmware: [1; 48],
            kernel: [2; 48],
            initrd: [3; 48],
            cmdline: [4; 48],
        };
        let b = d.to_bytes();
        assert_eq!(&b[..8], b"PUPABD\x00\x01");
        assert_eq!(b[8], 1);
        assert_eq!(b[8 + 48 * 3], 4);
        assert_eq!(BootDigests::from_bytes(&b), Some(d));
        assert_eq!(BootDigests::from_bytes(&b[..199]), None, "short");
        let mut bad = b;
        bad[7] = 2;
        assert_eq!(BootDigests::from_bytes(&bad), None, "other version");
        assert_eq!(SETUP_PUPA_BOOT_DIGESTS, 0x6170_7570);
        assert_ne!(d.dev_measurement(), d.firmware);
    }
}
